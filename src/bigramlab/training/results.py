"""A run's result record, metrics.json in its run directory: written whole, once, by rank 0.

train_nll, val_nll, test_nll          learned model, data NLL per split (null: empty split)
counted_train_nll, counted_val_nll,   counted model (counted.smoothing, counted.alpha); files
counted_test_nll                      written before name them mle_<split>_nll (read_metrics)
gap_val, kl_train, tv_train,          the comparison (bigramlab.comparison.metrics.compare)
max_abs_diff
final_loss                            train NLL + reg · mean(W²) at the final W
steps, status ("ok", "failed", "diverged"), reason (why it did not finish)
threads                               torch's CPU threads in each process (the NLLs' last
                                      digits depend on it)
version                               bigramlab's version (bigramlab.__version__)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bigramlab.comparison.metrics import COMPARISON_KEYS
from bigramlab.data.vocab import SPLITS
from bigramlab.writers.atomic import write_atomically

METRIC_KEYS = (
    [f"{split}_nll" for split in SPLITS]
    + [f"counted_{split}_nll" for split in SPLITS]
    + [*COMPARISON_KEYS, "final_loss"]
)


# Keys renamed since metrics.json files were written: old -> new.
RENAMED_METRICS = {f"mle_{split}_nll": f"counted_{split}_nll" for split in SPLITS}


def read_metrics(path: Path) -> dict[str, Any]:
    """A metrics.json, written now or before (its old keys under their new names)."""
    metrics = json.loads(Path(path).read_text())
    return {RENAMED_METRICS.get(key, key): value for key, value in metrics.items()}


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    text = json.dumps(metrics, indent=2) + "\n"
    write_atomically(Path(run_dir) / "metrics.json", lambda tmp: tmp.write_text(text))


def failed_metrics(status: str, reason: str, steps: int | None) -> dict[str, Any]:
    """The record of a run that did not finish: every metric null, and why."""
    return {**dict.fromkeys(METRIC_KEYS), "steps": steps, "status": status, "reason": reason}
