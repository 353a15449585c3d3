"""A run's result record, metrics.json in its run directory: written whole, once, by rank 0.

train_nll, val_nll, test_nll              learned model, data NLL per split (null: empty split)
mle_train_nll, mle_val_nll, mle_test_nll  counted model (smoothing mle.alpha)
gap_val, kl_train, tv_train, max_abs_diff the comparison (bigramlab.comparison.metrics.compare)
final_loss                                train NLL + reg · mean(W²) at the final W
steps, status ("ok", "failed", "diverged"), reason (why it did not finish)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bigramlab.comparison.metrics import COMPARISON_KEYS
from bigramlab.data.vocab import SPLITS
from bigramlab.plumbing.atomic import write_atomically

METRIC_KEYS = (
    [f"{split}_nll" for split in SPLITS]
    + [f"mle_{split}_nll" for split in SPLITS]
    + [*COMPARISON_KEYS, "final_loss"]
)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    text = json.dumps(metrics, indent=2) + "\n"
    write_atomically(Path(run_dir) / "metrics.json", lambda tmp: tmp.write_text(text))


def failed_metrics(status: str, reason: str, steps: int | None) -> dict[str, Any]:
    """The record of a run that did not finish: every metric null, and why."""
    return {**dict.fromkeys(METRIC_KEYS), "steps": steps, "status": status, "reason": reason}
