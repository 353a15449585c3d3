"""ARPA export: KenLM scores every held-out word as bigramlab does (round trip), and bad input is
one error line with nothing written."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bigramlab.arpa import arpa_token
from bigramlab.counting.ngrams import count_ngrams
from bigramlab.data.corpora import TextFile
from bigramlab.data.vocab import Vocab, split_words
from bigramlab.keys import event_keys
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.smoothing import counted_model
from tests.conftest import make_words, train_and_load
from tests.helpers import run_in_process as run_module

kenlm = pytest.importorskip("kenlm")
pytestmark = pytest.mark.slow  # trains, and exports with KenLM

SPLIT = [0.8, 0.1, 0.1]


def kenlm_nll(model: kenlm.Model, word: str) -> float:
    """Minus KenLM's log probability of a word, in nats: its characters as tokens, <s> and </s>."""
    return -model.score(" ".join(arpa_token(ch) for ch in word), bos=True, eos=True) * math.log(10)


def bigramlab_nll(probs, vocab: Vocab, context: int, word: str) -> float:
    """Minus bigramlab's log probability of a word: `probs(context keys) -> P (n, V)`."""
    ids = vocab.encode_words([word]).numpy()
    contexts, tokens = (torch.from_numpy(a) for a in event_keys(ids, context, len(vocab)))
    return float(-probs(contexts)[torch.arange(len(tokens)), tokens].double().log().sum())


def assert_round_trip(arpa: Path, probs, vocab: Vocab, context: int, words: list[str]) -> None:
    model = kenlm.Model(str(arpa))
    assert model.order == context + 1
    for word in words:
        expected = bigramlab_nll(probs, vocab, context, word)
        assert kenlm_nll(model, word) == pytest.approx(expected, rel=1e-4), word


@pytest.fixture
def spaced_words(tmp_path: Path) -> Path:
    """Names-like words, some with a space inside (a character ARPA needs a stand-in for)."""
    words = [w if i % 7 else f"{w} {w[::-1]}" for i, w in enumerate(make_words(400, seed=4))]
    path = tmp_path / "spaced.txt"
    path.write_text("\n".join(words) + "\n")
    return path


@pytest.mark.parametrize(
    ("k", "features"), [(1, "onehot"), (3, "onehot"), (1, "interpolated"), (3, "interpolated")]
)
def test_learned_model_round_trip(
    train_config, tmp_path: Path, spaced_words: Path, k: int, features: str
) -> None:
    optim = "lbfgs" if features == "interpolated" else "sgd"
    cfg = train_config(
        "dataset=text_file",
        f"dataset.path={spaced_words}",
        f"model.context={k}",
        f"model.features={features}",
        f"optim={optim}",
        "trainer.max_steps=5",
    )
    train_and_load(cfg, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = run_module(
        "bigramlab.export", f"ckpt={ckpt}", f"out={tmp_path / 'learned.arpa'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    model = load_checkpoint(ckpt).model
    words = TextFile(str(spaced_words)).load()
    held_out = split_words(words, SPLIT, 42)[1]
    assert any(" " in w for w in held_out)
    # Words the data never had: contexts with no row of their own.
    held_out += ["jjjjjjj", "a b c", "ihgfedcba"]
    assert_round_trip(
        tmp_path / "learned.arpa",
        lambda keys: model.log_probs(keys).exp(),
        Vocab(model.itos),
        k,
        held_out,
    )


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("smoothing", ["additive", "kneser_ney"])
def test_counted_model_round_trip(tmp_path: Path, spaced_words: Path, smoothing: str, k: int):
    out = tmp_path / f"{smoothing}.arpa"
    alpha = ["counted.alpha=0.5"] if smoothing == "additive" else []  # Kneser–Ney refuses one
    result = run_module(
        "bigramlab.export",
        "source=counted",
        "dataset=text_file",
        f"dataset.path={spaced_words}",
        f"counted.smoothing={smoothing}",
        *alpha,
        f"model.context={k}",
        f"out={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    counted = count_ngrams(TextFile(str(spaced_words)), k, SPLIT, 42)
    model = counted_model(
        counted.dense_counts(), 0.5, smoothing, counted.contexts, k, itos=counted.vocab.itos
    )

    probs = model.next_probs

    words = TextFile(str(spaced_words)).load()
    # The test words, and words whose contexts the data never had.
    unseen = ["jjjjjjj", "a b c", "ihgfedcba"]
    assert_round_trip(out, probs, counted.vocab, k, split_words(words, SPLIT, 42)[2] + unseen)


def test_bad_output_and_checkpoint_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("\n".join(make_words(50)) + "\n")
    counted = ["source=counted", "dataset=text_file", "dataset.path=words.txt"]
    missing_dir = run_module("bigramlab.export", *counted, "out=nowhere/m.arpa", cwd=tmp_path)
    assert missing_dir.returncode == 2 and "directory nowhere does not exist" in missing_dir.stderr
    (tmp_path / "m.arpa").write_text("keep me")
    exists = run_module("bigramlab.export", *counted, "out=m.arpa", cwd=tmp_path)
    assert exists.returncode == 2 and "add overwrite=true" in exists.stderr
    assert (tmp_path / "m.arpa").read_text() == "keep me"
    (tmp_path / "not.ckpt").write_bytes(b"not a checkpoint")
    bad = run_module("bigramlab.export", "ckpt=not.ckpt", "out=n.arpa", cwd=tmp_path)
    assert bad.returncode == 2 and "is not a PyTorch checkpoint file" in bad.stderr
    for result in (missing_dir, exists, bad):
        assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.arpa", "not.ckpt", "words.txt"]
    overwritten = run_module(
        "bigramlab.export", *counted, "out=m.arpa", "overwrite=true", cwd=tmp_path
    )
    assert overwritten.returncode == 0 and (tmp_path / "m.arpa").read_text().startswith(
        "\n\\data\\"
    )
