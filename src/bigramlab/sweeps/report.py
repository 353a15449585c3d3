"""The report of one or more sweeps (or runs): `python -m bigramlab.report <dir> [<dir> ...]`.

    python -m bigramlab.report logs/train/multiruns/<time> [more dirs ...] [--out DIR]
                               [--repeat-keys model.init_seed,data.split_seed,...]
    python -m bigramlab.report logs/train/multiruns/<time> [runs ...] --by-order [--data FILE]

Every view reads the job directories one way (`read_job`: a job's .hydra/ config and its
metrics.json; a directory holding a run is one job). Failed and diverged jobs are listed with
their reason.

The default view ranks configurations: jobs whose configs differ only in their repeat keys (by
default the seeds: seed, model.init_seed, data.split_seed, data.shuffle_seed) are repeats of one
configuration, one row with the mean, the standard deviation (n − 1 in the denominator; none for
a single run) and the number n of its finished jobs, ranked by mean validation NLL; the jobs of
several sweeps are ranked together, each row naming its sweep(s). It writes report.md,
results.csv, jobs.csv and val_nll.png (the mean validation NLL against a setting the sweep varied)
into the sweep directory or --out.

`--by-order` is the table of every order (tokens of context, k): for each feature set and k, the
learned job with the lowest dev (val) NLL and its test NLL, read once, beside the counted models
of each k fitted on the same split of `--data`: additive with α chosen on dev from a log grid,
and interpolated modified Kneser–Ney. Nats per character, the end of a word included. It writes
ngram_report.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from bigramlab.counting.ngrams import count_ngrams
from bigramlab.data.corpora import Corpus
from bigramlab.errors import UserError
from bigramlab.models.features import longest_span, parse_features
from bigramlab.models.smoothing import counted_model
from bigramlab.plumbing.config import HYPERPARAMETERS, hyperparameters, run_data_settings
from bigramlab.training.results import METRIC_KEYS, read_metrics

DEFAULT_REPEAT_KEYS = ("seed", "model.init_seed", "data.split_seed", "data.shuffle_seed")
JOB_COLUMNS = ["sweep", "job", "status", *HYPERPARAMETERS, *METRIC_KEYS, "reason"]
SHOWN_METRICS = ["train_nll", "val_nll", "test_nll", "counted_val_nll", "gap_val"]


def read_job(job_dir: Path, sweep: str, repeat_keys: Sequence[str] = ()) -> dict[str, Any]:
    """One job: its hyperparameters from .hydra/, its results from metrics.json, `cfg` its
    config, and `config`, its whole config as text without the repeat keys (what makes jobs
    repeats of one configuration)."""
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    runtime = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.runtime
    choices = runtime.choices
    row: dict[str, Any] = {
        "sweep": sweep,
        "job": job_dir.name,
        "dir": job_dir,
        "cwd": OmegaConf.select(runtime, "cwd"),
        **hyperparameters(cfg, dict(choices)),
    }
    settings = run_data_settings(cfg, choices.get("dataset"), row["cwd"])
    data = {k: v for k, v in settings.items() if not k.startswith("counted.")}
    row["data_key"] = repr(sorted(data.items()))
    row["data"] = data_label(data)
    row["cfg"] = cfg.copy()
    row["repeat"] = {key: OmegaConf.select(cfg, key) for key in repeat_keys}
    for key in repeat_keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if node is not None and leaf in node:
            del node[leaf]
    row["config"] = OmegaConf.to_yaml(cfg, sort_keys=True)
    overrides_path = job_dir / ".hydra" / "overrides.yaml"
    given = OmegaConf.load(overrides_path) if overrides_path.is_file() else []
    row["overrides"] = override_values([str(o) for o in given])
    metrics_path = job_dir / "metrics.json"
    if not metrics_path.is_file():
        return {**row, "status": "missing", "reason": "no metrics.json: the job did not finish"}
    metrics = read_metrics(metrics_path)
    row |= {key: metrics.get(key) for key in JOB_COLUMNS if key in metrics}
    if row.get("gap_val") is None and None not in (row.get("val_nll"), row.get("counted_val_nll")):
        row["gap_val"] = row["val_nll"] - row["counted_val_nll"]
    return row


def override_values(overrides: Sequence[str]) -> dict[str, Any]:
    """Command-line overrides as Hydra reads them, key -> value; a dict value
    (`pair={reg:0.01,alpha:1}`) as one key per entry (`pair.reg`, `pair.alpha`)."""
    values: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        value = override.value() if not override.is_delete() else None
        if isinstance(value, dict):
            values |= {f"{key}.{k}": v for k, v in value.items()}
        else:
            values[key] = value
    return values


def data_label(data: dict[str, Any]) -> str:
    """The words a job was trained and scored on, as the command line gives them: the data set,
    its file, and the split."""
    parts = [f"dataset={data.get('dataset') or data.get('dataset._target_')}"]
    for key in ("dataset.path", "dataset.lowercase"):
        if data.get(key) not in (None, False):
            parts.append(f"{key}={data[key]}")
    split = ",".join(f"{f:g}" for f in data["data.split"])
    parts.append(
        f"data.split=[{split}] data.split_seed={data['data.split_seed']} "
        f"data.split_rule={data['data.split_rule']}"
    )
    return " ".join(parts)


def check_one_data(jobs: list[dict[str, Any]], mixed: bool = False) -> None:
    """Refuse jobs of different data (data set, its file or settings, split: other words, and
    so other vocabularies) in one ranking, unless `mixed` asks for one ranking per data."""
    labels: dict[str, dict[str, Any]] = {}
    for job in jobs:
        labels.setdefault(job["data_key"], job)
    if len(labels) > 1 and not mixed:
        first, second = list(labels.values())[:2]
        fail(
            f"{first['dir']} and {second['dir']} were trained on different data ({first['data']}; "
            f"{second['data']}): NLLs of other words do not rank; report them separately, or add "
            "--mixed to rank each data's jobs apart"
        )


def group_repeats(jobs: list[dict[str, Any]], repeat_keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per configuration: its hyperparameters, `n` finished jobs, and per metric the mean
    (under the metric's name) and the standard deviation (`<metric>_std`, None where n < 2) over
    those jobs. `repeats`: the repeat keys' values of its jobs; failed jobs count in `failed`."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        groups.setdefault(job["data_key"] + job["config"], []).append(job)
    rows = []
    for members in groups.values():
        ok = [j for j in members if j.get("status") == "ok"]
        first = (ok or members)[0]
        row: dict[str, Any] = {
            "data": first["data"],
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
    """Finished configurations by (mean) validation NLL, then train NLL, then the rest; those of
    each data apart (in the order the data first appear)."""
    data_order = {data: i for i, data in enumerate(dict.fromkeys(r.get("data") for r in rows))}

    def key(row: dict[str, Any]) -> tuple[int, float, float, str]:
        ok = row.get("status") == "ok"
        val = row.get("val_nll")
        train = row.get("train_nll")
        return (
            data_order[row.get("data")],
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
    # A table setting that differs between jobs varies, however it was set (an override, an
    # experiment's sweep, an interpolation such as model.reg: ${pair.reg}).
    keys += [
        key
        for name, key in HYPERPARAMETERS.items()
        if key not in keys and key not in ignored and len({repr(r.get(name)) for r in rows}) > 1
    ]
    varying = [k for k in keys if len({repr(_setting(r, k, short)) for r in rows}) > 1]
    # An override whose values are those of a table setting row by row (pair.reg and reg) says
    # nothing more: the table's name is shown.
    table = [k for k in varying if k in short]
    varying = [
        k
        for k in varying
        if k in short
        or not any(all(_setting(r, k, short) == _setting(r, t, short) for r in rows) for t in table)
    ]
    for row in rows:
        for key in varying:
            if key not in short:
                row[key] = row["overrides"].get(key)
    return [short.get(key, key) for key in varying]


def _setting(row: dict[str, Any], key: str, short: dict[str, str]) -> Any:
    """A row's value of a config key: the table's (resolved) where the key is in it, else the
    override's."""
    return row.get(short[key]) if key in short else row["overrides"].get(key)


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
    shows = {
        c: show_setting if c in settings else formatter([r.get(c) for r in rows], digits)
        for c in columns
    }
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
    """The table's columns: the data where there are several (--mixed), the sweep where there
    are several, the settings that vary, n where there are repeats, then the results."""
    columns = ["data"] if len({r["data"] for r in rows}) > 1 else []
    columns += ["sweep"] if several_sweeps else []
    columns += ["jobs", "status", *settings]
    if any(r["n"] > 1 or r["repeats"] for r in rows):
        columns += ["n", "repeats"]
    return columns + SHOWN_METRICS


def print_table(
    rows: list[dict[str, Any]], columns: list[str], settings: list[str], console: Console
) -> None:
    table = Table(title="sweep, ranked by validation NLL (mean ± standard deviation over repeats)")
    left = ("data", "sweep", "jobs", "status", "repeats")
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
    # The counted model's settings do not change the learned model's validation NLL: they are
    # no line of their own (α is drawn as the counted model's curve, below).
    others = [k for k in settings if k != x and k not in ("alpha", "smoothing")]

    def label(row: dict[str, Any]) -> str:
        return ", ".join(f"{k}={show_setting(row.get(k))}" for k in others) or "learned"

    if x is None:  # nothing numeric varies: one point per configuration
        names = [label(r) for r in ok]
        ax.errorbar(
            range(len(ok)),
            [r["val_nll"] for r in ok],
            yerr=[r.get("val_nll_std") or 0.0 for r in ok],
            marker="o",
            linestyle="",
            capsize=3,
        )
        ax.set_xticks(range(len(ok)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title("Validation NLL of each configuration")
    else:
        lines: dict[str, list[tuple[float, float, float]]] = {}
        for r in ok:
            lines.setdefault(label(r), []).append((r[x], r["val_nll"], r.get("val_nll_std") or 0.0))
        for name, points in lines.items():
            xs, means, stds = zip(*sorted(points))
            ax.errorbar(
                xs, means, yerr=stds if any(stds) else None, marker="o", capsize=3, label=name
            )
        alphas = sorted(
            {(r["alpha"], r["counted_val_nll"]) for r in ok if r.get("counted_val_nll") is not None}
        )
        with_alpha = x == "reg" and "alpha" in settings and len({a for a, _ in alphas}) > 1
        if with_alpha:
            ax.plot(
                *zip(*alphas), marker="s", linestyle="--", color="black", label="counted (MLE), α"
            )
        values = [r[x] for r in ok] + ([a for a, _ in alphas] if with_alpha else [])
        positive = [v for v in values if v > 0]
        if x in LOG_SCALED or (positive and max(positive) / min(positive) > 100):
            # symlog keeps reg = 0 and α = 0 on the axis; log-scale above the smallest positive.
            ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        if all(isinstance(v, int) for v in values):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{x} (learned model)  /  α (counted model)" if with_alpha else x)
        ax.set_title(
            "Regularisation against smoothing" if with_alpha else f"Validation NLL against {x}"
        )
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
    group_columns = [
        "data",
        "sweep",
        "jobs",
        "status",
        "n",
        "failed",
        *HYPERPARAMETERS,
        *extra,
        "repeats",
        *stats,
        "reason",
    ]
    write_csv(out_dir / "results.csv", rows, group_columns)
    for job in jobs:
        job.update({key: job["overrides"].get(key) for key in extra})
    job_columns = ["data", *JOB_COLUMNS[:-1], *extra, JOB_COLUMNS[-1]]
    write_csv(out_dir / "jobs.csv", jobs, job_columns)
    lines = [
        f"# {title}",
        "",
        f"{len(jobs)} jobs, {len(rows)} configurations, ranked by "
        "validation NLL (mean ± standard deviation over repeats).",
        "",
    ]
    lines.append("| # | " + " | ".join(columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for i, cells in enumerate(formatted(rows, columns, 6, settings), start=1):
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    failed = [j for j in jobs if j.get("status") != "ok"]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [
            f"- `{j['sweep']}/{j['job']}`: {j.get('status')}: {j.get('reason')}" for j in failed
        ]
    lines += ["", f"![validation NLL]({figure_name})", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


def fail(message: str) -> NoReturn:
    """The commands' failure policy: one `error: ...` line, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def job_dirs(directory: Path) -> list[Path]:
    """The jobs of a sweep directory (its */.hydra/config.yaml), or a run's directory as its one
    job; a directory that holds neither is an error."""
    if not directory.exists():
        fail(
            f"sweep directory {directory} is missing: pass a sweep directory such as "
            "logs/train/multiruns/<time> (a multirun prints its own last)"
        )
    if not directory.is_dir():
        fail(
            f"{directory} is not a directory: pass a sweep directory such as "
            "logs/train/multiruns/<time>"
        )
    if (directory / ".hydra" / "config.yaml").is_file():
        return [directory]
    found = sorted(p.parent.parent for p in directory.glob("*/.hydra/config.yaml"))
    if not found:
        what = "is empty" if not any(directory.iterdir()) else "has no job directories"
        fail(
            f"{directory} {what} (no */.hydra/config.yaml): pass a sweep directory such as "
            "logs/train/multiruns/<time>, or a run's"
        )
    return found


# --- the table of every order (--by-order) ------------------------------------------------------

ALPHAS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]


def the_split(jobs: list[dict[str, Any]]) -> tuple[list[float], int, str]:
    """The split every job was trained on, (fractions, seed, rule); an error if they differ,
    since the rows of one table must read the same dev and test words."""
    splits = {}
    for job in jobs:
        data = job["cfg"].data
        rule = OmegaConf.select(job["cfg"], "data.split_rule", default="randperm")
        split = ([float(f) for f in data.split], int(data.split_seed), str(rule))
        splits.setdefault(repr(split), (split, job["dir"]))
    if len(splits) > 1:
        (one, first), (other, second) = list(splits.values())[:2]
        fail(
            f"{first} and {second} were trained on different splits of the words "
            f"(data.split, split_seed, split_rule: {one} and {other}): a table of dev and "
            "test NLLs needs one split; report them separately"
        )
    split, _ = next(iter(splits.values()))
    if split[0][1] <= 0:
        fail(f"the jobs' split {split[0]} has no dev words to choose on: train with a val share")
    return split


def jobs_corpus(job: dict[str, Any]) -> Corpus:
    """The corpus a job was trained on, as its config built it, from the directory it ran in
    (its data cache, a relative file path)."""
    cfg = job["cfg"].copy()
    if job.get("cwd") is not None and "paths" in cfg:
        cfg.paths.root_dir = job["cwd"]
    return instantiate(cfg.dataset)


def file_digest(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def check_data_file(data: Path, corpus: Corpus, job: dict[str, Any]) -> None:
    """`--data` must hold the jobs' words, byte for byte: counted rows of other words would sit
    beside learned rows they cannot be compared with."""
    if not data.is_file():
        fail(f"--data {data} does not exist: leave --data out to count the jobs' own data")
    try:
        corpus.prepare()
        theirs = file_digest(corpus.byte_chunks())
    except UserError as e:
        fail(f"the jobs' data cannot be read ({e}): pass their words file, or fetch it first")
    with open(data, "rb") as f:
        mine = file_digest(iter(lambda: f.read(1 << 20), b""))
    if mine != theirs:
        fail(
            f"--data {data} is not the jobs' data (they trained on {job['data'].split(' data.')[0]}"
            f", {corpus.name}): leave --data out to count the jobs' own data"
        )


def counted_rows(
    corpus: Corpus, orders: Sequence[int], split: Sequence[float], seed: int, rule: str
) -> list[dict[str, Any]]:
    """Additive (α tuned on dev) and Kneser–Ney rows for each order, fitted on the corpus's
    train words of the split."""
    rows = []
    for k in orders:
        counted = count_ngrams(corpus, k, split, seed, rule)
        if counted.n_words["val"] == 0:
            fail(
                f"{corpus.name} has {sum(counted.n_words.values())} words: the split {list(split)} "
                "leaves dev empty, so nothing can be chosen on dev: use more words, or a larger "
                "val share (data.split)"
            )
        counts, itos = counted.counts, counted.vocab.itos
        fits = [
            counted_model(counts, a, "additive", counted.contexts, k, itos=itos) for a in ALPHAS
        ]
        best = min(fits, key=lambda m: m.nll["val"])
        rows.append(
            {
                "model": f"counted, additive (α = {best.alpha:g}, tuned on dev)",
                "k": k,
                "dev": best.nll["val"],
                "test": best.nll.get("test"),
            }
        )
        kn = counted_model(counts, 0.0, "kneser_ney", counted.contexts, k, itos=itos)
        rows.append(
            {
                "model": "counted, interpolated modified Kneser–Ney",
                "k": k,
                "dev": kn.nll["val"],
                "test": kn.nll.get("test"),
            }
        )
    return rows


def parse_orders(orders: str) -> list[int]:
    """`--orders`: `3`, `1-3` or `1,2,5` (orders k >= 1, ranges first-last, first <= last)."""
    ks: list[int] = []
    for part in orders.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last) if dash else int(first)
        except ValueError:
            fail(f"--orders {orders}: give orders as 3, 1-3 or 1,2,5 (whole numbers)")
        if low < 1 or high < low:
            fail(
                f"--orders {orders}: orders are whole numbers from 1 and a range runs from its "
                "first to its last, e.g. --orders 1-3"
            )
        ks += [k for k in range(low, high + 1) if k not in ks]
    return sorted(ks)


def penalty_label(model: Any) -> str:
    """The job's penalty as its config gives it: reg, and any multipliers per row kind."""
    label = f"reg {model.reg:g}"
    by_length = OmegaConf.select(model, "reg_by_length")
    if by_length is not None:
        label += " × [" + ", ".join(f"{m:g}" for m in by_length) + "] by suffix length"
    base, families = parse_features(model.features)
    kinds = [("skip", base == "skipgram")] + [(family, True) for family in families]
    for kind, present in kinds:
        multiplier = OmegaConf.select(model, f"reg_{kind}", default=1.0)
        if present and multiplier != 1:
            label += f", × {multiplier:g} for {kind} rows"
    max_span = OmegaConf.select(model, "max_span")
    if max_span is not None:
        label = f"suffixes of at most {max_span}, " + label
    return label


def learned_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (features, order): the finished job of the lowest dev NLL, with its test NLL, labelled
    with its penalty and every other setting its group's jobs varied (lr, steps, ...), and which
    settings were chosen on dev."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for job in jobs:
        if job.get("status") != "ok" or job.get("val_nll") is None:
            continue
        model = job["cfg"].model
        # Jobs of other suffix bounds are other models (max_span null: the context).
        max_span = OmegaConf.select(model, "max_span", default=None)
        key = (str(model.features), int(model.context), longest_span(model.context, max_span))
        groups.setdefault(key, []).append(job)
    short = {key: name for name, key in HYPERPARAMETERS.items()}
    rows = []
    for key in sorted(groups):
        members = groups[key]
        best = min(members, key=lambda job: job["val_nll"])
        keys = dict.fromkeys(k for job in members for k in job["overrides"])
        varying = [
            k
            for k in keys
            if k not in ("model.context", "model.features")
            and len({repr(job["overrides"].get(k)) for job in members}) > 1
        ]
        label = penalty_label(best["cfg"].model)
        # The penalty's keys are in the label already; any other varied setting is named too.
        label += "".join(
            f", {short.get(k, k)} {show_setting(best['overrides'].get(k))}"
            for k in varying
            if not k.startswith("model.reg") and k != "model.max_span"
        )
        chosen = ", ".join(short.get(k, k) for k in varying)
        how = f"{chosen} tuned on dev" if chosen else "one setting"
        rows.append(
            {
                "model": f"learned, {key[0]} ({label}; {how})",
                "k": key[1],
                "dev": best["val_nll"],
                "test": best["test_nll"],
                "job": str(best["dir"]),
            }
        )
    return rows


def _nats(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def order_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: every row, then the best order of each model, chosen on dev."""
    lines = ["| model | k | dev | test |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['k']} | {_nats(r['dev'])} | {_nats(r['test'])} |" for r in rows]
    by_dev: dict[str, dict[str, Any]] = {}
    for r in rows:
        kind = r["model"].split(" (")[0]
        if kind not in by_dev or r["dev"] < by_dev[kind]["dev"]:
            by_dev[kind] = r
    lines += [
        "",
        "Best order of each model, chosen on dev:",
        "",
        "| model | k | dev | test |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['k']} | {_nats(r['dev'])} | {_nats(r['test'])} |"
        for r in sorted(by_dev.values(), key=lambda r: r["dev"])
    ]
    return "\n".join(lines) + "\n"


def by_order(
    jobs: list[dict[str, Any]], data: Path | None, orders: str | None, out_dir: Path
) -> None:
    ks = parse_orders(orders) if orders else None
    split, seed, rule = the_split(jobs)
    check_one_data(jobs)
    corpus = jobs_corpus(jobs[0])
    if data is not None:
        check_data_file(data, corpus, jobs[0])
    learned = learned_rows(jobs)
    if ks is None:
        ks = list(range(1, max([r["k"] for r in learned], default=1) + 1))
    try:
        counted = counted_rows(corpus, ks, split, seed, rule)
    except UserError as e:
        fail(str(e))
    table = order_table(counted + learned)
    print(table, end="")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ngram_report.md").write_text(table)
    print(f"wrote {out_dir / 'ngram_report.md'}")


# --- the command ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bigramlab.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "dirs",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="sweep directories (logs/train/multiruns/<time>) or runs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the report's directory (default: the directory given, if only one)",
    )
    parser.add_argument(
        "--repeat-keys",
        default=",".join(DEFAULT_REPEAT_KEYS),
        help="config keys whose values make repeats of one configuration, "
        "comma-separated ('' for none); default: %(default)s",
    )
    parser.add_argument(
        "--by-order",
        action="store_true",
        help="the table of every order: learned and counted models per k",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="--by-order: a words file that must be the jobs' data, byte for byte (default: the "
        "jobs' own data, as their config reads it)",
    )
    parser.add_argument(
        "--orders",
        default=None,
        help="--by-order: the counted rows' orders, 3, 1-3 or 1,2,5 (default: 1 to the jobs' "
        "largest)",
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="rank jobs of different data (data set, file, split) in one report, each data's "
        "apart (refused without it)",
    )
    args = parser.parse_args(argv)
    repeat_keys = [k for k in args.repeat_keys.split(",") if k]
    if args.out is None and len(args.dirs) > 1:
        fail("several directories and no --out: pass --out DIR for the combined report")
    out_dir = args.out or args.dirs[0]
    jobs = [
        read_job(d, directory.name, repeat_keys)
        for directory in args.dirs
        for d in job_dirs(directory)
    ]
    if args.by_order:
        if args.mixed:
            fail("--by-order reads one data's dev and test words: leave --mixed out")
        by_order(jobs, args.data, args.orders, out_dir)
        return
    check_one_data(jobs, args.mixed)
    rows = rank(group_repeats(jobs, repeat_keys))
    settings = varying_keys(rows, repeat_keys)
    columns = shown_columns(rows, settings, several_sweeps=len(args.dirs) > 1)
    # Piped output (a file, CI) gets a wide table instead of rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=220)
    print_table(rows, columns, settings, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_name = "val_nll.png"
    figure_val_nll(rows, settings).savefig(out_dir / figure_name)
    title = "Sweep " + ", ".join(d.name for d in args.dirs)
    write_report(out_dir, title, rows, jobs, columns, settings, figure_name)
    for name in ("report.md", "results.csv", "jobs.csv", figure_name):
        print(f"wrote {out_dir / name}")
