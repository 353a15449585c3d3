"""Summarise a sweep: a ranked table, report.md, results.csv and figures.

    python scripts/sweep_report.py logs/train/multiruns/<time>

Reads every job directory's .hydra/ config and metrics.json (failed and diverged jobs are listed
with their reason), ranks the jobs by validation NLL, and draws the validation NLL of the learned
model against reg for each lr, beside the counted model's validation NLL against its smoothing α
when the sweep varied α.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from bigramlab.config import register_resolvers

COLUMNS = ["job", "status", "dataset", "lr", "reg", "alpha", "steps", "batch_size", "impl",
           "train_nll", "val_nll", "test_nll", "mle_train_nll", "mle_val_nll", "mle_test_nll",
           "gap_val", "reason"]  # fmt: skip


def read_job(job_dir: Path) -> dict[str, Any]:
    """One row: the job's hyperparameters from .hydra/, its results from metrics.json."""
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    choices = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices
    row: dict[str, Any] = {
        "job": job_dir.name,
        "dataset": choices.get("dataset"),
        "lr": OmegaConf.select(cfg, "optim.lr"),
        "reg": OmegaConf.select(cfg, "model.reg"),
        "alpha": OmegaConf.select(cfg, "mle.alpha"),
        "steps": OmegaConf.select(cfg, "trainer.max_steps"),
        "batch_size": OmegaConf.select(cfg, "data.batch_size"),
        "impl": OmegaConf.select(cfg, "model.impl"),
    }
    metrics_path = job_dir / "metrics.json"
    if not metrics_path.is_file():
        return {**row, "status": "missing", "reason": "no metrics.json: the job did not finish"}
    metrics = json.loads(metrics_path.read_text())
    row |= {key: metrics.get(key) for key in COLUMNS if key in metrics}
    if row.get("val_nll") is not None and row.get("mle_val_nll") is not None:
        row["gap_val"] = row["val_nll"] - row["mle_val_nll"]
    return row


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished jobs by validation NLL (then train NLL), then the rest."""

    def key(row: dict[str, Any]) -> tuple[float, float, str]:
        ok = row.get("status") == "ok"
        val = row.get("val_nll")
        train = row.get("train_nll")
        return (
            val if ok and val is not None else math.inf,
            train if ok and train is not None else math.inf,
            row["job"],
        )

    return sorted(rows, key=key)


def fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if 1e-3 <= abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="sweep, ranked by validation NLL")
    shown = [
        "job",
        "status",
        "lr",
        "reg",
        "alpha",
        "train_nll",
        "val_nll",
        "mle_val_nll",
        "gap_val",
    ]
    for column in ["#", *shown]:
        table.add_column(column, justify="right" if column not in ("job", "status") else "left")
    for i, row in enumerate(rows, start=1):
        style = None if row.get("status") == "ok" else "red"
        table.add_row(str(i), *(fmt(row.get(c), digits=4) for c in shown), style=style)
    console.print(table)
    for row in rows:
        if row.get("status") != "ok":
            console.print(f"[red]{row['job']}: {row.get('status')}: {row.get('reason')}[/red]")


def figure_nll_against_reg(rows: list[dict[str, Any]]) -> Figure:
    """Validation NLL against reg, one line per lr; the MLE's against α on the same axes."""
    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ok = [r for r in rows if r.get("status") == "ok" and r.get("val_nll") is not None]
    for lr in sorted({r["lr"] for r in ok}):
        points = sorted((r["reg"], r["val_nll"]) for r in ok if r["lr"] == lr)
        ax.plot(*zip(*points), marker="o", label=f"learned, lr={lr:g}")
    alphas = sorted(
        {(r["alpha"], r["mle_val_nll"]) for r in ok if r.get("mle_val_nll") is not None}
    )
    if len({a for a, _ in alphas}) > 1:
        ax.plot(*zip(*alphas), marker="s", linestyle="--", color="black", label="counted (MLE), α")
    positive = [x for r in ok for x in (r["reg"], r["alpha"]) if x and x > 0]
    # symlog keeps reg = 0 and α = 0 on the axis; log-scale above the smallest positive value.
    ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    ax.set_xlabel("reg (learned model)  /  α (counted model)")
    ax.set_ylabel("validation NLL (nats)")
    ax.set_title("Regularisation against smoothing")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def write_report(sweep_dir: Path, rows: list[dict[str, Any]], figure_name: str) -> None:
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shown = ["job", "status", "lr", "reg", "alpha", "train_nll", "val_nll", "test_nll",
             "mle_val_nll", "gap_val"]  # fmt: skip
    lines = [f"# Sweep {sweep_dir.name}", "", f"{len(rows)} jobs, ranked by validation NLL.", ""]
    lines.append("| # | " + " | ".join(shown) + " |")
    lines.append("|---" * (len(shown) + 1) + "|")
    for i, row in enumerate(rows, start=1):
        lines.append(f"| {i} | " + " | ".join(fmt(row.get(c)) for c in shown) + " |")
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- `{r['job']}`: {r.get('status')}: {r.get('reason')}" for r in failed]
    lines += ["", f"![validation NLL against reg and α]({figure_name})", ""]
    (sweep_dir / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory: logs/train/multiruns/…")
    args = parser.parse_args()
    register_resolvers()
    job_dirs = sorted(p.parent.parent for p in args.sweep_dir.glob("*/.hydra/config.yaml"))
    if not job_dirs:
        sys.exit(f"error: no job directories (*/.hydra/config.yaml) in {args.sweep_dir}: "
                 "pass a sweep directory such as logs/train/multiruns/<time>")  # fmt: skip
    rows = rank([read_job(d) for d in job_dirs])
    # Piped output (a file, CI) gets a wide table instead of rich's 80-column default.
    print_table(rows, Console() if sys.stdout.isatty() else Console(width=200))
    figure_name = "val_nll_vs_reg.png"
    figure_nll_against_reg(rows).savefig(args.sweep_dir / figure_name)
    write_report(args.sweep_dir, rows, figure_name)
    for name in ("report.md", "results.csv", figure_name):
        print(f"wrote {args.sweep_dir / name}")


if __name__ == "__main__":
    main()
