"""Summarise one or more sweeps: a ranked table, report.md, results.csv, jobs.csv and a figure.

    python scripts/sweep_report.py logs/train/multiruns/<time> [more sweep dirs ...] [--out DIR]
                                   [--repeat-keys model.init_seed,data.split_seed,...]

Reads every job directory's .hydra/ config and metrics.json (failed and diverged jobs are listed
with their reason). Jobs whose configs differ only in their repeat keys (by default the seeds:
seed, model.init_seed, data.split_seed, data.shuffle_seed) are repeats of one configuration: each
configuration is one row, with the mean, the standard deviation (n − 1 in the denominator; none
for a single run) and the number n of its finished jobs. Configurations are ranked by mean
validation NLL; jobs of several sweeps are ranked together, each row naming its sweep(s). The
figure draws the mean validation NLL of the learned model against reg for each lr, with error bars
of one standard deviation, beside the counted model's validation NLL against its smoothing α when
the sweep varied α.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from bigramlab.config import HYPERPARAMETERS, hyperparameters
from bigramlab.results import METRIC_KEYS

DEFAULT_REPEAT_KEYS = ("seed", "model.init_seed", "data.split_seed", "data.shuffle_seed")
JOB_COLUMNS = ["sweep", "job", "status", *HYPERPARAMETERS, *METRIC_KEYS, "reason"]
SHOWN_METRICS = ["train_nll", "val_nll", "test_nll", "mle_val_nll", "gap_val"]


def read_job(job_dir: Path, sweep: str, repeat_keys: Sequence[str]) -> dict[str, Any]:
    """One job: its hyperparameters from .hydra/, its results from metrics.json, and `config`,
    its whole config without the repeat keys (what makes jobs repeats of one configuration)."""
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    choices = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices
    row: dict[str, Any] = {"sweep": sweep, "job": job_dir.name,
                           **hyperparameters(cfg, dict(choices))}  # fmt: skip
    row["repeat"] = {key: OmegaConf.select(cfg, key) for key in repeat_keys}
    for key in repeat_keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if node is not None and leaf in node:
            del node[leaf]
    row["config"] = OmegaConf.to_yaml(cfg, sort_keys=True)
    overrides_path = job_dir / ".hydra" / "overrides.yaml"
    given = OmegaConf.load(overrides_path) if overrides_path.is_file() else []
    row["overrides"] = {
        key.lstrip("+~"): yaml.safe_load(value) if value else None
        for key, _, value in (str(o).partition("=") for o in given)
    }
    metrics_path = job_dir / "metrics.json"
    if not metrics_path.is_file():
        return {**row, "status": "missing", "reason": "no metrics.json: the job did not finish"}
    metrics = json.loads(metrics_path.read_text())
    row |= {key: metrics.get(key) for key in JOB_COLUMNS if key in metrics}
    if row.get("gap_val") is None and None not in (row.get("val_nll"), row.get("mle_val_nll")):
        row["gap_val"] = row["val_nll"] - row["mle_val_nll"]
    return row


def group_repeats(jobs: list[dict[str, Any]], repeat_keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per configuration: its hyperparameters, `n` finished jobs, and per metric the mean
    (under the metric's name) and the standard deviation (`<metric>_std`, None where n < 2) over
    those jobs. `repeats`: the repeat keys' values of its jobs; failed jobs count in `failed`."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        groups.setdefault(job["config"], []).append(job)
    rows = []
    for members in groups.values():
        ok = [j for j in members if j.get("status") == "ok"]
        first = (ok or members)[0]
        row: dict[str, Any] = {
            "sweep": ", ".join(sorted({j["sweep"] for j in members})),
            "jobs": " ".join(j["job"] for j in members),
            "status": "ok" if ok else first.get("status"),
            "n": len(ok),
            "failed": len(members) - len(ok),
            **{name: first.get(name) for name in HYPERPARAMETERS},
            "overrides": first["overrides"],
            "repeats": ", ".join(
                f"{key.rpartition('.')[2]}={','.join(str(j['repeat'][key]) for j in members)}"
                for key in repeat_keys
                if len({str(j["repeat"][key]) for j in members}) > 1
            ),
            "reason": None if ok else first.get("reason"),
        }
        for key in METRIC_KEYS:
            values = [j[key] for j in ok if isinstance(j.get(key), int | float)]
            row[key] = statistics.fmean(values) if values else None
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    return rows


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished configurations by (mean) validation NLL, then train NLL, then the rest."""

    def key(row: dict[str, Any]) -> tuple[float, float, str]:
        ok = row.get("status") == "ok"
        val = row.get("val_nll")
        train = row.get("train_nll")
        return (
            val if ok and val is not None else math.inf,
            train if ok and train is not None else math.inf,
            row.get("jobs", row.get("job", "")),
        )

    return sorted(rows, key=key)


def varying_keys(rows: list[dict[str, Any]], repeat_keys: Sequence[str]) -> list[str]:
    """The command-line keys whose values differ between the configurations (the keys a sweep
    varies, whatever they are), in the order the jobs give them; a key of the hyperparameter
    table by its short name (`optim.lr` -> `lr`). Each row gets the value under that name."""
    short = {key: name for name, key in HYPERPARAMETERS.items()}
    # The repeats' seeds are grouped over; hparams_search says how a sweep ran, not what a job is.
    ignored = {*repeat_keys, "hparams_search"}
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["overrides"] if k not in keys and k not in ignored]
    varying = [k for k in keys if len({repr(r["overrides"].get(k)) for r in rows}) > 1]
    for row in rows:
        for key in varying:
            if key not in short:
                row[key] = row["overrides"].get(key)
    return [short.get(key, key) for key in varying]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def formatter(values: list[Any], digits: int) -> Callable[[Any], str]:
    """One number format for a whole column of results: numbers spanning more than two decades,
    or below 0.001, in scientific notation; others with `digits` decimals."""
    numbers = [abs(v) for v in values if _is_number(v) and math.isfinite(v) and v != 0]

    def show(value: Any) -> str:
        if value is None:
            return "—"
        if not _is_number(value) or not math.isfinite(value):
            return str(value)
        if numbers and (min(numbers) < 1e-3 or max(numbers) / min(numbers) > 100):
            return f"{value:.3e}"
        return f"{value:.{digits}f}"

    return show


def show_setting(value: Any) -> str:
    """A setting as it would be typed: 0.01, 1, 3, 10 (4 significant digits at most)."""
    if value is None:
        return "—"
    return f"{value:.4g}" if _is_number(value) else str(value)


def formatted(
    rows: list[dict[str, Any]], columns: list[str], digits: int, settings: Sequence[str] = ()
) -> list[list[str]]:
    """The rows' cells in `columns`: a setting (in `settings`) as typed, a result in one format
    per column; a metric with a standard deviation in the row (`<metric>_std`) is shown as
    mean ± std."""
    shows = {c: show_setting if c in settings else formatter([r.get(c) for r in rows], digits)
             for c in columns}  # fmt: skip
    stds = {c: formatter([r.get(f"{c}_std") for r in rows], digits) for c in columns}
    return [
        [
            shows[c](r.get(c))
            + (f" ± {stds[c](r[f'{c}_std'])}" if r.get(f"{c}_std") is not None else "")
            for c in columns
        ]
        for r in rows
    ]


def shown_columns(
    rows: list[dict[str, Any]], settings: list[str], several_sweeps: bool
) -> list[str]:
    """The table's columns: the sweep where there are several, the settings that vary, n where
    there are repeats, then the results."""
    columns = ["sweep"] if several_sweeps else []
    columns += ["jobs", "status", *settings]
    if any(r["n"] > 1 or r["repeats"] for r in rows):
        columns += ["n", "repeats"]
    return columns + SHOWN_METRICS


def print_table(
    rows: list[dict[str, Any]], columns: list[str], settings: list[str], console: Console
) -> None:
    table = Table(title="sweep, ranked by validation NLL (mean ± standard deviation over repeats)")
    left = ("sweep", "jobs", "status", "repeats")
    for column in ["#", *columns]:
        table.add_column(column, justify="left" if column in left else "right")
    for i, (row, cells) in enumerate(zip(rows, formatted(rows, columns, 4, settings)), start=1):
        style = None if row.get("status") == "ok" else "red"
        table.add_row(str(i), *cells, style=style)
    console.print(table)
    for row in rows:
        if row.get("status") != "ok":
            console.print(f"[red]{row['jobs']}: {row.get('status')}: {row.get('reason')}[/red]")


# The x axis of the figure: the first of these that varies and is a number, else any numeric key.
X_PREFERENCE = ("reg", "lr", "alpha", "context", "steps", "batch_size")
LOG_SCALED = ("reg", "lr", "alpha", "batch_size")


def figure_val_nll(rows: list[dict[str, Any]], settings: list[str]) -> Figure:
    """Mean validation NLL against a numeric setting that varies (reg, lr, α, context, ... in that
    order of preference), one line for each combination of the other varying settings, with
    error bars of one standard deviation where there are repeats; with no numeric setting, one
    point per configuration. Where reg is the axis and α varied too, the counted model's
    validation NLL against α on the same axis."""
    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ok = [r for r in rows if r.get("status") == "ok" and r.get("val_nll") is not None]
    numeric = [k for k in settings if ok and all(_is_number(r.get(k)) for r in ok)]
    numeric.sort(key=lambda k: X_PREFERENCE.index(k) if k in X_PREFERENCE else len(X_PREFERENCE))
    x = numeric[0] if numeric else None
    others = [k for k in settings if k != x]

    def label(row: dict[str, Any]) -> str:
        return ", ".join(f"{k}={show_setting(row.get(k))}" for k in others) or "learned"

    if x is None:  # nothing numeric varies: one point per configuration
        names = [label(r) for r in ok]
        ax.errorbar(range(len(ok)), [r["val_nll"] for r in ok],
                    yerr=[r.get("val_nll_std") or 0.0 for r in ok], marker="o", linestyle="",
                    capsize=3)  # fmt: skip
        ax.set_xticks(range(len(ok)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title("Validation NLL of each configuration")
    else:
        lines: dict[str, list[tuple[float, float, float]]] = {}
        for r in ok:
            lines.setdefault(label(r), []).append((r[x], r["val_nll"], r.get("val_nll_std") or 0.0))
        for name, points in lines.items():
            xs, means, stds = zip(*sorted(points))
            ax.errorbar(xs, means, yerr=stds if any(stds) else None, marker="o", capsize=3,
                        label=name)  # fmt: skip
        alphas = sorted(
            {(r["alpha"], r["mle_val_nll"]) for r in ok if r.get("mle_val_nll") is not None}
        )
        with_alpha = x == "reg" and "alpha" in settings and len({a for a, _ in alphas}) > 1
        if with_alpha:
            ax.plot(*zip(*alphas), marker="s", linestyle="--", color="black",
                    label="counted (MLE), α")  # fmt: skip
        values = [r[x] for r in ok] + ([a for a, _ in alphas] if with_alpha else [])
        positive = [v for v in values if v > 0]
        if x in LOG_SCALED or (positive and max(positive) / min(positive) > 100):
            # symlog keeps reg = 0 and α = 0 on the axis; log-scale above the smallest positive.
            ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        if all(isinstance(v, int) for v in values):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{x} (learned model)  /  α (counted model)" if with_alpha else x)
        ax.set_title("Regularisation against smoothing" if with_alpha
                     else f"Validation NLL against {x}")  # fmt: skip
        ax.legend()
    ax.set_ylabel("validation NLL (nats)")
    ax.grid(alpha=0.3)
    return fig


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_report(
    out_dir: Path,
    title: str,
    rows: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    columns: list[str],
    settings: list[str],
    figure_name: str,
) -> None:
    stats = [c for key in METRIC_KEYS for c in (key, f"{key}_std")]
    extra = [c for c in settings if c not in HYPERPARAMETERS]
    group_columns = ["sweep", "jobs", "status", "n", "failed", *HYPERPARAMETERS, *extra,
                     "repeats", *stats, "reason"]  # fmt: skip
    write_csv(out_dir / "results.csv", rows, group_columns)
    for job in jobs:
        job.update({key: job["overrides"].get(key) for key in extra})
    write_csv(out_dir / "jobs.csv", jobs, [*JOB_COLUMNS[:-1], *extra, JOB_COLUMNS[-1]])
    lines = [f"# {title}", "", f"{len(jobs)} jobs, {len(rows)} configurations, ranked by "
             "validation NLL (mean ± standard deviation over repeats).", ""]  # fmt: skip
    lines.append("| # | " + " | ".join(columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for i, cells in enumerate(formatted(rows, columns, 6, settings), start=1):
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    failed = [j for j in jobs if j.get("status") != "ok"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- `{j['sweep']}/{j['job']}`: {j.get('status')}: {j.get('reason')}"
                  for j in failed]  # fmt: skip
    lines += ["", f"![validation NLL]({figure_name})", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


def fail(message: str) -> NoReturn:
    """The commands' failure policy: one `error: ...` line, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", type=Path, nargs="+",
                        help="multirun directories: logs/train/multiruns/<time>")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None,
        help="the report's directory (default: the sweep directory, if only one)",
    )  # fmt: skip
    parser.add_argument("--repeat-keys", default=",".join(DEFAULT_REPEAT_KEYS),
                        help="config keys whose values make repeats of one configuration, "
                             "comma-separated ('' for none); default: %(default)s")  # fmt: skip
    args = parser.parse_args(argv)
    repeat_keys = [k for k in args.repeat_keys.split(",") if k]
    if args.out is None and len(args.sweep_dirs) > 1:
        fail("several sweeps and no --out: pass --out DIR for the combined report")
    out_dir = args.out or args.sweep_dirs[0]
    jobs = []
    for sweep_dir in args.sweep_dirs:
        if not sweep_dir.exists():
            fail(f"sweep directory {sweep_dir} is missing: pass a sweep directory such as "
                 "logs/train/multiruns/<time> (a multirun prints its own last)")  # fmt: skip
        if not sweep_dir.is_dir():
            fail(f"{sweep_dir} is not a directory: pass a sweep directory such as "
                 "logs/train/multiruns/<time>")  # fmt: skip
        job_dirs = sorted(p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml"))
        if not job_dirs:
            what = "has no job directories"
            if (sweep_dir / ".hydra").is_dir():
                what = "is a single run's directory"
            elif not any(sweep_dir.iterdir()):
                what = "is empty"
            fail(f"{sweep_dir} {what} (no */.hydra/config.yaml): pass a sweep directory such as "
                 "logs/train/multiruns/<time>")  # fmt: skip
        jobs += [read_job(d, sweep_dir.name, repeat_keys) for d in job_dirs]
    rows = rank(group_repeats(jobs, repeat_keys))
    settings = varying_keys(rows, repeat_keys)
    columns = shown_columns(rows, settings, several_sweeps=len(args.sweep_dirs) > 1)
    # Piped output (a file, CI) gets a wide table instead of rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=220)
    print_table(rows, columns, settings, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_name = "val_nll.png"
    figure_val_nll(rows, settings).savefig(out_dir / figure_name)
    title = "Sweep " + ", ".join(d.name for d in args.sweep_dirs)
    write_report(out_dir, title, rows, jobs, columns, settings, figure_name)
    for name in ("report.md", "results.csv", "jobs.csv", figure_name):
        print(f"wrote {out_dir / name}")


if __name__ == "__main__":
    main()
