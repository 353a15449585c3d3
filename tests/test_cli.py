"""The commands as a user runs them (in the test's process: tests/test_readme.py runs each
documented command in its own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_words_file
from tests.helpers import run_in_process as run_module

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def words_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_words_file(tmp_path_factory.mktemp("words"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, words_file: Path) -> Path:
    """One run that the tests of this module only read."""
    tmp_path = tmp_path_factory.mktemp("trained")
    result = run_module(
        "bigramlab.train",
        "dataset=text_file",
        f"dataset.path={words_file}",
        "trainer.max_steps=60",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert f"run directory: {run_dir}" in result.stdout
    return run_dir


def test_train_writes_a_complete_run_directory(trained_run: Path) -> None:
    names = {p.name for p in trained_run.iterdir()}
    assert {".hydra", "tensorboard", "checkpoints", "metrics.json", "train.log"} <= names
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["status"] == "ok"
    assert metrics["val_nll"] < 3.0
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))


def test_sample_is_seeded_and_uses_the_checkpoint_vocabulary(trained_run: Path, words_file):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    first = run_module("bigramlab.sample", f"ckpt={ckpt}", "n=20", "seed=0", cwd=trained_run)
    again = run_module("bigramlab.sample", f"ckpt={ckpt}", "n=20", "seed=0", cwd=trained_run)
    other = run_module("bigramlab.sample", f"ckpt={ckpt}", "n=20", "seed=1", cwd=trained_run)
    assert first.returncode == 0, first.stderr
    words = first.stdout.splitlines()
    assert len(words) == 20 and first.stdout == again.stdout != other.stdout
    assert set("".join(words)) <= set(words_file.read_text())


def test_evaluate_splits_and_words(trained_run: Path, words_file: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    result = run_module(
        "bigramlab.evaluate",
        f"ckpt={ckpt}",
        "dataset=text_file",
        f"dataset.path={words_file}",
        cwd=trained_run,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((trained_run / "metrics.json").read_text())
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    for split in ("train", "val", "test"):
        assert float(rows[split][3]) == pytest.approx(metrics[f"{split}_nll"], abs=1e-6)
        # The counted model beside it: training's, with the same α.
        assert float(rows[split][5]) == pytest.approx(metrics[f"counted_{split}_nll"], abs=1e-6)
    # Unsmoothed, the counted model calls a bigram train never had impossible, and says so.
    letters = tmp_path / "letters.txt"
    letters.write_text("\n".join(sorted(set(words_file.read_text()) - {"\n"})[:10]) + "\n")
    impossible = run_module(
        "bigramlab.evaluate",
        f"ckpt={ckpt}",
        "dataset=text_file",
        f"dataset.path={letters}",
        "counted.alpha=0",
        cwd=trained_run,
    )
    assert impossible.returncode == 0, impossible.stderr
    assert "inf*" in impossible.stdout and "set counted.alpha above 0" in impossible.stdout
    per_word = run_module("bigramlab.evaluate", f"ckpt={ckpt}", "words=[abc,ja]", cwd=trained_run)
    assert per_word.returncode == 0, per_word.stderr
    assert [line.split()[0] for line in per_word.stdout.splitlines()[2:]] == ["abc", "ja"]
    unknown = run_module("bigramlab.evaluate", f"ckpt={ckpt}", "words=[abz]", cwd=trained_run)
    assert unknown.returncode == 2
    assert "character 'z'" in unknown.stderr and "'abz'" in unknown.stderr


def test_default_run_trains_on_english_words(tmp_path: Path) -> None:
    result = run_module("bigramlab.train", "trainer.max_steps=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["train_nll"] < 3.3


def test_unknown_dataset_is_refused_by_hydra_with_the_options(tmp_path: Path) -> None:
    result = run_module("bigramlab.train", "dataset=nope", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'dataset/nope'" in result.stderr and "text_file" in result.stderr


def test_bad_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    result = run_module("bigramlab.sample", f"ckpt={bad}", cwd=tmp_path)
    assert result.returncode == 2 and "is not a PyTorch checkpoint file" in result.stderr


def test_no_checkpoint_is_one_line_with_the_fix(tmp_path: Path) -> None:
    result = run_module("bigramlab.evaluate", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: no checkpoint given: add ckpt=<run dir>/checkpoints/last.ckpt"
    )
