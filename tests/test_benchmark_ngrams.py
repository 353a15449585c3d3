"""scripts/benchmark_ngrams.py's training measurement (`--training`), on a small words file: it
runs `python -m bigramlab.train` in a process of its own and reports that process's peak RSS,
its wall time and the NLLs of the run's metrics.json."""

from __future__ import annotations

import importlib.util
import json
import math
import string
from pathlib import Path

import pytest
import torch

from tests.conftest import make_words

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_ngrams.py"


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_ngrams", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_measurement_reports_the_runs_peak_rss_and_nlls(tmp_path: Path) -> None:
    benchmark = load_script()
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(400, seed=5, alphabet=string.ascii_lowercase)) + "\n")
    settings = (
        f"dataset=text_file dataset.path={words} model.context=3 optim=lbfgs "
        "optim.history_size=1 model.reg=0.0003 trainer.max_steps=2"
    )
    found = benchmark.peak_rss_of_training("skipgram", tmp_path / "logs", settings)
    (metrics_path,) = (tmp_path / "logs" / "train" / "runs").glob("*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["steps"] == 2
    assert found["val_nll"] == metrics["val_nll"] and found["test_nll"] == metrics["test_nll"]
    assert math.isfinite(found["val_nll"]) and math.isfinite(found["test_nll"])
    # The child's own peak: torch and Lightning alone take a few hundred MiB, and it is no more
    # than the whole machine's memory.
    assert 200 * 1024 < found["peak_rss_kib"] < 64 * 1024 * 1024
    assert found["peak_rss_gb"] == pytest.approx(found["peak_rss_kib"] * 1024 / 1e9)
    assert found["command"].endswith(f"{settings} model.features=skipgram")
    assert found["seconds"] > 0


def test_counting_measurement_times_one_and_two_processes_and_checks_their_counts(
    tmp_path: Path,
) -> None:
    benchmark = load_script()
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(3000, seed=6, alphabet=string.ascii_lowercase)) + "\n")
    rows = benchmark.counting(words, repeats=1)
    assert [row["k"] for row in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        assert row["bitwise_equal"] is True
        assert row["seconds"] > 0 and row["seconds_2"] > 0
        assert row["speedup_2"] == pytest.approx(row["seconds"] / row["seconds_2"])
        assert row["MB/s"] == pytest.approx(words.stat().st_size / 1e6 / row["seconds"])
    assert rows[-1]["contexts"] > rows[0]["contexts"]


def test_counts_changed_by_one_are_not_the_same_counts(tmp_path: Path) -> None:
    benchmark = load_script()
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(300, seed=7)) + "\n")
    expected = benchmark.count_ngrams(benchmark.TextFile(str(words)), 2, benchmark.SPLIT, 42)
    found = (expected.vocab.itos, expected.n_words, expected.contexts, dict(expected.counts))
    assert benchmark.same_counts(found, expected)
    train = expected.counts["train"].coalesce()
    values = train.values().clone()
    values[0] += 1
    changed = torch.sparse_coo_tensor(
        train.indices(), values, train.shape, check_invariants=True
    ).coalesce()
    assert not benchmark.same_counts((*found[:3], {**found[3], "train": changed}), expected)
