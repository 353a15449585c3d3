"""On the real names.txt (../shared/data/names.txt beside the repository; skipped where absent):
the lecture's numbers, end to end through the CLI's code path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigramlab.train import train
from tests.conftest import compose_config

NAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not NAMES.is_file(), reason=f"no reference names.txt at {NAMES}"),
]


def makemore_run(tmp_path: Path, *overrides: str) -> tuple[dict, EventAccumulator]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(NAMES, data_dir / "names.txt")  # the cache: checksum-verified, no network
    cfg = compose_config(
        "train",
        [
            "experiment=makemore",
            f"paths.data_dir={data_dir}",
            "callbacks.progress_bar.refresh_rate=0",
            "callbacks.report.figures_every_n_steps=1000",
            *overrides,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tensorboard"), {"scalars": 0})
    events.Reload()
    return metrics, events


def test_makemore_experiment_reproduces_the_lecture(tmp_path: Path) -> None:
    metrics, events = makemore_run(tmp_path)
    loss = {e.step: e.value for e in events.Scalars("loss/total")}
    # What the lecture's loop (the reference code, run verbatim on names.txt) prints.
    for step, reference in ((0, 3.768618583679199), (99, 2.4901304244995117), (999, 2.4804470539)):
        assert loss[step] == pytest.approx(reference, abs=1e-4)
    assert metrics["counted_train_nll"] == pytest.approx(2.454577, abs=1e-5)
    assert metrics["val_nll"] is None and metrics["counted_val_nll"] is None


def test_without_regularisation_gradient_descent_reaches_the_mle(tmp_path: Path) -> None:
    metrics, events = makemore_run(
        tmp_path, "model.reg=0", "trainer.max_steps=2000", "counted.alpha=0"
    )
    kl = [e.value for e in events.Scalars("compare/kl_train")]
    assert all(later <= earlier for earlier, later in zip(kl, kl[1:]))
    assert metrics["counted_train_nll"] == pytest.approx(2.454014, abs=1e-5)
    assert metrics["train_nll"] - 2.454014 < 2e-3
