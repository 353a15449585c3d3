"""Training on awkward data: a single word, Unicode, a huge line, tiny data; determinism and
divergence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bigramlab.data.corpora import TextFile
from bigramlab.data.vocab import split_words
from bigramlab.train import train
from bigramlab.training.datamodule import ngram_data
from tests.helpers import run_in_process


def test_single_word_unicode_and_a_huge_line_train(train_config, tmp_path: Path) -> None:
    cases = {
        "single.txt": "emma\n",
        "unicode.txt": "zoë\nrenée\nдима\n李明\nchloé\n" * 10,
        "huge.txt": "ab" * 500_000 + "\nba\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        metrics = train(
            train_config(
                f"dataset.path={path}",
                "trainer.max_steps=5",
                f"hydra.run.dir={tmp_path / name}-run",
            )
        )
        assert metrics["status"] == "ok" and metrics["train_nll"] is not None, name


def test_characters_seen_only_outside_train_are_in_the_vocabulary(tmp_path: Path) -> None:
    words = ["ab"] * 30 + ["aq"]
    split = (0.5, 0.5, 0.0)
    seed = next(s for s in range(100) if "aq" not in split_words(words, split, s)[0])
    path = tmp_path / "w.txt"
    path.write_text("\n".join(words) + "\n")
    data = ngram_data(TextFile(str(path)), split, seed, with_pairs=False)
    q = data.vocab.stoi["q"]
    val = data.counts["val"].to_dense()
    assert data.counts["train"][:, q].sum() == 0 and val[:, q].sum() == 1


def test_tiny_data_gives_null_val_and_test(train_config, tmp_path: Path) -> None:
    path = tmp_path / "two.txt"
    path.write_text("emma\nava\n")
    metrics = train(train_config(f"dataset.path={path}"))
    assert metrics["val_nll"] is None and metrics["test_nll"] is None
    saved = json.loads(Path(train_config().paths.output_dir, "metrics.json").read_text())
    assert saved["val_nll"] is None and saved["counted_val_nll"] is None


def test_same_config_and_seed_give_bitwise_identical_W(train_config, tmp_path: Path) -> None:
    weights = []
    for name in ("a", "b"):
        cfg = train_config(
            "data.batch_size=16", "trainer.max_steps=15", f"hydra.run.dir={tmp_path / name}"
        )
        cfg.paths.output_dir = str(tmp_path / name)
        train(cfg)
        ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        weights.append(ckpt["state_dict"]["net.W"])
    assert torch.equal(weights[0], weights[1])


@pytest.mark.slow
def test_divergence_stops_the_run_and_keeps_no_nan_checkpoint(tmp_path: Path, words_file: Path):
    result = run_in_process(
        "bigramlab.train",
        "dataset=text_file",
        f"dataset.path={words_file}",
        "optim.lr=1e9",
        "model.reg=0.01",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: training diverged at step ")
    assert "optim.lr=1e+09" in result.stderr and "model.reg=0.01" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["train_nll"] is None
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
