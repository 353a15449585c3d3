"""Resuming a run from its last checkpoint: the same W as an uninterrupted run, each step once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigramlab.errors import UserError
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.train import train
from tests.conftest import make_words
from tests.helpers import run_in_process, run_module

STEPS = 1200  # killed at a checkpoint from step 200 on: 1000 steps of margin before the end


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_W_without_duplicate_steps(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(2000, seed=9)) + "\n")
    common = [
        "dataset=text_file",
        f"dataset.path={words}",
        f"trainer.max_steps={STEPS}",
        "callbacks.checkpoint.every_n_train_steps=100",
        "callbacks.report.figures_every_n_steps=100000",
    ]
    run_dir = tmp_path / "killed"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigramlab.train", *common, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (ckpt.exists() and torch.load(ckpt, weights_only=True)["global_step"] >= 200):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 200 <= killed_at < STEPS and not (run_dir / "metrics.json").exists()

    # Resumed as a user resumes, in a new process: TensorBoard reads a run's event files in the
    # order of their names, the second each was opened, then the pid; a run resumed in this
    # process within the killed run's second (its steps take a millisecond) would sort first.
    resumed = run_module("bigramlab.train", *common, f"ckpt_path={ckpt}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"run directory: {run_dir}" in resumed.stdout
    straight = run_in_process(
        "bigramlab.train", *common, f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    W_resumed = torch.load(ckpt, weights_only=True)["state_dict"]["net.W"]
    W_straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)[
        "state_dict"
    ]["net.W"]
    assert torch.equal(W_resumed, W_straight)
    events = EventAccumulator(str(run_dir / "tensorboard"), {"scalars": 0, "images": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("loss/total")]
    assert steps == list(range(STEPS))
    # What a run writes once, at its start, the resumed run does not write again.
    assert [e.step for e in events.Images("compare/heatmap_counted")] == [0]
    # Every validation point once: the interrupted run's point at the checkpoint's step is purged
    # with the rest after it, and the resumed run writes it again before its first step.
    val_steps = [e.step for e in events.Scalars("nll/val")]
    assert val_steps == list(range(0, STEPS + 1, 50))
    straight_events = EventAccumulator(str(tmp_path / "straight" / "tensorboard"), {"scalars": 0})
    straight_events.Reload()
    at_resume = {e.step: e.value for e in straight_events.Scalars("nll/val")}[killed_at]
    assert {e.step: e.value for e in events.Scalars("nll/val")}[killed_at] == pytest.approx(
        at_resume, abs=1e-6
    )


def test_resume_on_data_of_another_vocabulary_is_refused(train_config, tmp_path: Path) -> None:
    """The checkpoint's record of its run's data refuses other data; where there is no record (a
    checkpoint written before it, moved out of its run), the data's vocabulary against the
    checkpoint's still does."""
    first = train_config("trainer.max_steps=5")
    train(first)
    other = tmp_path / "other.txt"
    other.write_text("xyz\nzyx\n" * 10)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match=f"other data \\(dataset.path was .*, is {other}\\)"):
        train(train_config(f"dataset.path={other}", f"ckpt_path={ckpt}"))
    state = torch.load(ckpt, weights_only=True)
    del state["run_settings"]
    torch.save(state, ckpt)
    with pytest.raises(UserError, match="trained on another vocabulary"):
        train(train_config(f"dataset.path={other}", f"ckpt_path={ckpt}"))


def test_last_ckpt_is_the_only_default_checkpoint_and_a_users_model_checkpoint_works(
    train_config, tmp_path: Path
) -> None:
    cfg = train_config(
        "+callbacks.best._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.best.dirpath={tmp_path / 'best'}",
        "+callbacks.best.monitor=nll/val",
    )
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["last.ckpt"]
    assert not list((run_dir / "tensorboard").rglob("*.ckpt"))  # no Lightning default beside it
    (best,) = (tmp_path / "best").iterdir()
    assert torch.load(best, weights_only=True)["global_step"] > 0


def test_a_weights_only_final_checkpoint_is_small_scored_alike_and_not_resumed(
    train_config, tmp_path: Path
) -> None:
    """L-BFGS's state (2 x history_size copies of W) is left out of the end's checkpoint with
    callbacks.checkpoint.final_state=weights; evaluate reads what remains."""
    lbfgs = ["optim=lbfgs", "model.features=interpolated", "model.context=2", "trainer.max_steps=4"]
    sizes, settings = {}, {}
    for state in ("full", "weights"):
        cfg = train_config(*lbfgs, f"callbacks.checkpoint.final_state={state}")
        cfg.paths.output_dir = str(tmp_path / state)
        train(cfg)
        ckpt = tmp_path / state / "checkpoints" / "last.ckpt"
        sizes[state] = ckpt.stat().st_size
        loaded = load_checkpoint(ckpt)
        settings[state] = loaded.run_settings
        assert loaded.resumable == (state == "full")
    W_full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt").model.W
    W_weights = load_checkpoint(tmp_path / "weights" / "checkpoints" / "last.ckpt").model.W
    assert torch.equal(W_full, W_weights)
    assert sizes["weights"] * 10 < sizes["full"]
    assert settings["weights"] == settings["full"] is not None
    resume = train_config(
        *lbfgs,
        "trainer.max_steps=8",
        f"ckpt_path={tmp_path / 'weights' / 'checkpoints' / 'last.ckpt'}",
    )
    with pytest.raises(UserError, match="holds the model's weights only"):
        train(resume)
