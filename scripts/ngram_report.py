"""Issue 13's table: counted and learned models of each order, tuned on dev, tested once.

    python scripts/ngram_report.py [SWEEP_DIR ...] [--data data/names.txt] [--orders 1-6]
                                   [--split 0.8,0.1,0.1] [--split-seed 42] [--split-rule lecture]
                                   [--out ngram_report.md]

Counted rows are computed here from the data file: for each order (tokens of context) 1..6, the
additive model with α chosen on dev from a log grid, and interpolated modified Kneser–Ney (which has
nothing to tune). Learned rows come from sweeps of bigramlab.train (`experiment=ngram_orders`, or
`experiment=ngram_best`'s run): for each feature set and order, the job with the lowest dev (val)
NLL, its test NLL read once. Nats per character, the end of a word included.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import OmegaConf

from bigramlab.corpora import TextFile
from bigramlab.estimators import counted_model
from bigramlab.ngrams import count_ngrams

ALPHAS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]


def counted_rows(
    path: str, orders: Sequence[int], split: Sequence[float], seed: int, rule: str
) -> list[dict[str, Any]]:
    """Additive (α tuned on dev) and Kneser–Ney rows for each order."""
    rows = []
    for k in orders:
        counted = count_ngrams(TextFile(path), k, split, seed, rule)
        fits = [counted_model(counted.counts, a, "additive", counted.contexts, k) for a in ALPHAS]
        best = min(fits, key=lambda m: m.nll["val"])
        rows.append({"model": f"counted, additive (α = {best.alpha:g}, tuned on dev)", "k": k,
                     "dev": best.nll["val"], "test": best.nll.get("test")})  # fmt: skip
        kn = counted_model(counted.counts, 0.0, "kneser_ney", counted.contexts, k)
        rows.append({"model": "counted, interpolated modified Kneser–Ney", "k": k,
                     "dev": kn.nll["val"], "test": kn.nll.get("test")})  # fmt: skip
    return rows


def penalty_label(model: Any) -> str:
    """The job's penalty as its config gives it: reg, and any multipliers per row kind."""
    label = f"reg {model.reg:g}"
    by_length = OmegaConf.select(model, "reg_by_length")
    if by_length is not None:
        label += " × [" + ", ".join(f"{m:g}" for m in by_length) + "] by suffix length"
    skip = OmegaConf.select(model, "reg_skip", default=1.0)
    if model.features == "skipgram" and skip != 1:
        label += f", × {skip:g} for skips"
    return label


def fail(message: str) -> NoReturn:
    """The commands' failure policy: one `error: ...` line, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_split(job: Path, cfg: Any, split: Sequence[float], seed: int, rule: str) -> None:
    """Refuse a job whose dev and test words are not those of the counted rows: its numbers
    would stand beside theirs under the same labels."""
    rule_then = OmegaConf.select(cfg, "data.split_rule", default="randperm")
    # (the job's value, the report's, as the option is written)
    values = {
        "--split": (",".join(f"{float(f):g}" for f in cfg.data.split),
                    ",".join(f"{f:g}" for f in split)),
        "--split-seed": (str(cfg.data.split_seed), str(seed)),
        "--split-rule": (str(rule_then), rule),
    }  # fmt: skip
    if changed := [option for option, (then, now) in values.items() if then != now]:
        fail(
            f"{job} was trained on another split of the words ("
            + ", ".join(f"{o} {values[o][0]}, the report's {values[o][1]}" for o in changed)
            + "): its dev/test NLL cannot stand beside the counted models; pass "
            + " ".join(f"{o} {values[o][0]}" for o in changed)
            + ", or train on the lecture split (experiment=ngram_orders)"
        )


def learned_rows(
    sweeps: Sequence[Path], split: Sequence[float], seed: int, rule: str
) -> list[dict[str, Any]]:
    """Per (features, order): the finished job of the lowest val NLL, with its test NLL (every
    job on the report's split)."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for sweep in sweeps:
        for metrics_path in sorted(sweep.glob("**/metrics.json")):
            job = metrics_path.parent
            metrics = json.loads(metrics_path.read_text())
            if metrics.get("status") != "ok" or metrics.get("val_nll") is None:
                continue
            cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
            check_split(job, cfg, split, seed, rule)
            model = cfg.model
            key = (str(model.features), int(model.context))
            row = {"model": f"learned, {model.features} ({penalty_label(model)}, tuned on dev)",
                   "k": key[1], "dev": metrics["val_nll"], "test": metrics["test_nll"],
                   "job": str(job)}  # fmt: skip
            if key not in best or row["dev"] < best[key]["dev"]:
                best[key] = row
    return [best[key] for key in sorted(best)]


def _nats(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | k | dev | test |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['k']} | {_nats(r['dev'])} | {_nats(r['test'])} |" for r in rows]
    by_dev = {}
    for r in rows:
        kind = r["model"].split(" (")[0]
        if kind not in by_dev or r["dev"] < by_dev[kind]["dev"]:
            by_dev[kind] = r
    lines += ["", "Best order of each model, chosen on dev:", "",
              "| model | k | dev | test |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['model']} | {r['k']} | {_nats(r['dev'])} | {_nats(r['test'])} |"
              for r in sorted(by_dev.values(), key=lambda r: r["dev"])]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep or run directories")
    parser.add_argument("--data", default="data/names.txt", help="the text file, a word a line")
    parser.add_argument("--orders", default="1-6", help="orders as first-last")
    parser.add_argument("--split", default="0.8,0.1,0.1")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--split-rule", default="lecture")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if not Path(args.data).is_file():
        fail(f"{args.data} does not exist: pass --data <file>, e.g. data/names.txt")
    first, _, last = args.orders.partition("-")
    orders = range(int(first), int(last or first) + 1)
    split = [float(f) for f in args.split.split(",")]
    if len(split) != 3 or split[1] <= 0:
        fail(f"--split {args.split} leaves no dev words to tune on: give three fractions with a "
             "dev share, e.g. --split 0.8,0.1,0.1")  # fmt: skip
    for sweep in args.sweeps:
        if not sweep.is_dir():
            fail(f"{sweep} is not a directory: pass the sweep's (or run's) directory")
    learned = learned_rows(args.sweeps, split, args.split_seed, args.split_rule)
    rows = counted_rows(args.data, orders, split, args.split_seed, args.split_rule) + learned
    table = markdown(rows)
    print(table, end="")
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
