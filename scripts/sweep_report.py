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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from bigramlab.config import HYPERPARAMETERS, hyperparameters
from bigramlab.results import METRIC_KEYS

COLUMNS = ["job", "status", *HYPERPARAMETERS, *METRIC_KEYS, "reason"]


def read_job(job_dir: Path) -> dict[str, Any]:
    """One row: the job's hyperparameters from .hydra/, its results from metrics.json."""
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    choices = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices
    row: dict[str, Any] = {"job": job_dir.name, **hyperparameters(cfg, dict(choices))}
    metrics_path = job_dir / "metrics.json"
    if not metrics_path.is_file():
        return {**row, "status": "missing", "reason": "no metrics.json: the job did not finish"}
    metrics = json.loads(metrics_path.read_text())
    row |= {key: metrics.get(key) for key in COLUMNS if key in metrics}
    if row.get("gap_val") is None and None not in (row.get("val_nll"), row.get("mle_val_nll")):
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


def formatter(values: list[Any], digits: int) -> Callable[[Any], str]:
    """One number format for a whole column: integers as they are; numbers spanning more than
    two decades, or below 0.001, in scientific notation; others with `digits` decimals."""
    numbers = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v) and v != 0]

    def show(value: Any) -> str:
        if value is None:
            return "—"
        if not isinstance(value, float) or not math.isfinite(value):
            return str(value)
        if numbers and (min(numbers) < 1e-3 or max(numbers) / min(numbers) > 100):
            return f"{value:.3e}"
        return f"{value:.{digits}f}"

    return show


def formatted(rows: list[dict[str, Any]], columns: list[str], digits: int) -> list[list[str]]:
    """The rows' cells in `columns`, each column in one format."""
    shows = {c: formatter([r.get(c) for r in rows], digits) for c in columns}
    return [[shows[c](r.get(c)) for c in columns] for r in rows]


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
    for i, (row, cells) in enumerate(zip(rows, formatted(rows, shown, 4)), start=1):
        style = None if row.get("status") == "ok" else "red"
        table.add_row(str(i), *cells, style=style)
    console.print(table)
    for row in rows:
        if row.get("status") != "ok":
            console.print(f"[red]{row['job']}: {row.get('status')}: {row.get('reason')}[/red]")


def figure_val_nll(rows: list[dict[str, Any]]) -> Figure:
    """Validation NLL against reg (or lr, where reg did not vary), one line for each value of the
    other; where α varied too, the counted model's validation NLL against α on the same axis."""
    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ok = [r for r in rows if r.get("status") == "ok" and r.get("val_nll") is not None]
    x, line = ("reg", "lr") if len({r["reg"] for r in ok}) > 1 else ("lr", "reg")
    for value in sorted({r[line] for r in ok}):
        points = sorted((r[x], r["val_nll"]) for r in ok if r[line] == value)
        ax.plot(*zip(*points), marker="o", label=f"learned, {line}={value:g}")
    alphas = sorted(
        {(r["alpha"], r["mle_val_nll"]) for r in ok if r.get("mle_val_nll") is not None}
    )
    with_alpha = x == "reg" and len({a for a, _ in alphas}) > 1
    if with_alpha:
        ax.plot(*zip(*alphas), marker="s", linestyle="--", color="black", label="counted (MLE), α")
    positive = [v for r in ok for v in (r[x], r["alpha"] if with_alpha else None) if v and v > 0]
    # symlog keeps reg = 0 and α = 0 on the axis; log-scale above the smallest positive value.
    ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    ax.set_xlabel(f"{x} (learned model)  /  α (counted model)" if with_alpha else x)
    ax.set_ylabel("validation NLL (nats)")
    ax.set_title(
        "Regularisation against smoothing" if with_alpha else f"Validation NLL against {x}"
    )
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
    for i, cells in enumerate(formatted(rows, shown, 6), start=1):
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- `{r['job']}`: {r.get('status')}: {r.get('reason')}" for r in failed]
    lines += ["", f"![validation NLL]({figure_name})", ""]
    (sweep_dir / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory: logs/train/multiruns/…")
    args = parser.parse_args()
    job_dirs = sorted(p.parent.parent for p in args.sweep_dir.glob("*/.hydra/config.yaml"))
    if not job_dirs:
        sys.exit(f"error: no job directories (*/.hydra/config.yaml) in {args.sweep_dir}: "
                 "pass a sweep directory such as logs/train/multiruns/<time>")  # fmt: skip
    rows = rank([read_job(d) for d in job_dirs])
    # Piped output (a file, CI) gets a wide table instead of rich's 80-column default.
    print_table(rows, Console() if sys.stdout.isatty() else Console(width=200))
    figure_name = "val_nll.png"
    figure_val_nll(rows).savefig(args.sweep_dir / figure_name)
    write_report(args.sweep_dir, rows, figure_name)
    for name in ("report.md", "results.csv", figure_name):
        print(f"wrote {args.sweep_dir / name}")


if __name__ == "__main__":
    main()
