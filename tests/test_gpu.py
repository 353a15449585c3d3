"""On a CUDA GPU: the same models as on the CPU, and no host sync in the training step.

Marked `gpu`; skipped, with the reason shown, where torch sees no CUDA device. scripts/gpu_check.sh
runs them (`pytest -m gpu`) with a 1000-step names run and the benchmark on the GPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from bigramlab.train import train
from tests.helpers import run_train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: run scripts/gpu_check.sh on a machine with one",
    ),
]


# The fixture's trainer.accelerator=cpu outranks the choice of trainer=gpu: name it again.
GPU = ["trainer=gpu", "trainer.accelerator=gpu"]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param([], id="full-batch-counts"),
        pytest.param(["data.batch_size=37"], id="mini-batch-counts"),
        pytest.param(["data.batch_size=37", "model.loss_form=index"], id="mini-batch-index"),
        pytest.param(["model.loss_form=onehot"], id="full-batch-onehot"),
    ],
)
def test_gpu_gives_the_cpu_model(train_config, tmp_path: Path, overrides: list[str]) -> None:
    assert train_config(*GPU, *overrides).trainer.accelerator == "gpu"
    cpu = run_train(train_config, tmp_path / "cpu", *overrides)
    gpu = run_train(train_config, tmp_path / "gpu", *GPU, *overrides)
    # Float32 sums run in another order on the GPU: equal to rounding, not bit for bit.
    torch.testing.assert_close(gpu[1], cpu[1], rtol=0, atol=1e-4)
    for key in ("train_nll", "val_nll", "final_loss"):
        assert gpu[0][key] == pytest.approx(cpu[0][key], abs=1e-5)


def host_syncs(train_config, out: Path, steps: int, *overrides: str) -> int:
    """Synchronizing CUDA calls during a whole run of `steps` steps (torch's sync debug mode)."""
    cfg = train_config(
        *GPU,
        f"trainer.max_steps={steps}",
        # Nothing periodic within the run: validation, logging, checks and checkpoints at the end.
        "trainer.val_check_interval=100000",
        "trainer.log_every_n_steps=100000",
        "callbacks.checkpoint.every_n_train_steps=100000",
        *overrides,
    )
    assert cfg.trainer.accelerator == "gpu"
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    "overrides",
    [pytest.param([], id="full-batch-counts"), pytest.param(["data.batch_size=37"], id="mini")],
)
def test_training_steps_do_not_wait_for_the_gpu(train_config, tmp_path: Path, overrides) -> None:
    short = host_syncs(train_config, tmp_path / "short", 20, *overrides)
    long = host_syncs(train_config, tmp_path / "long", 80, *overrides)
    # A sync in every step would add 60; the run's fixed work (setup, the final validation,
    # report and checkpoint) syncs the same number of times in both.
    assert short > 0  # the final validation reads its metrics back: the run was on the GPU
    assert long - short < 10, f"{short} syncs in 20 steps, {long} in 80"
