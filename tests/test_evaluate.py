"""evaluate's splits: the corpus counted in pieces gives each split's NLL as its words do."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bigramlab.counting.bigrams import bigram_counts
from bigramlab.data.corpora import TextFile
from bigramlab.data.vocab import Vocab, bigram_pairs, split_words
from bigramlab.errors import UserError
from bigramlab.evaluate import split_rows
from bigramlab.models.counted import mle_probs
from bigramlab.models.learned import LearnedLM
from bigramlab.models.nll import mean_nll
from tests.conftest import make_words

SPLIT = [0.7, 0.2, 0.1]


@pytest.mark.parametrize("accent", ["", "é"], ids=["ascii", "decoded"])
def test_split_rows_equal_those_of_the_split_words(tmp_path: Path, accent: str) -> None:
    words = [w + accent for w in make_words(300, seed=2)]
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    # The checkpoint's vocabulary may hold more characters than the data, in another order.
    vocab = Vocab("." + "".join(sorted(set("".join(words)) | set("xyz"), reverse=True)))
    V = len(vocab.itos)
    g = torch.Generator().manual_seed(0)
    log_probs = torch.randn(V, V, generator=g, dtype=torch.float64).log_softmax(dim=1)
    model = LearnedLM(vocab.itos, 1, "onehot", torch.arange(V), log_probs)
    rows = split_rows(model, TextFile(str(path)), SPLIT, 5, alpha=0.5)
    assert [row[0] for row in rows] == ["train", "val", "test"]
    parts = split_words(words, SPLIT, 5)
    # The counted model of training: over the data's own vocabulary, fitted on train.
    data_vocab = Vocab.from_words(words)
    P = mle_probs(bigram_counts(*bigram_pairs(parts[0], data_vocab), len(data_vocab)), 0.5)
    for (_, n_words, n_bigrams, value, counted, rowless), part in zip(rows, parts):
        counts = bigram_counts(*bigram_pairs(part, vocab), V)
        assert (n_words, n_bigrams) == (len(part), int(counts.sum()))
        assert value == pytest.approx(mean_nll(log_probs, counts), rel=1e-12)
        own = bigram_counts(*bigram_pairs(part, data_vocab), len(data_vocab))
        assert counted == pytest.approx(mean_nll(P.log(), own), rel=1e-12)
        assert rowless == 0


def test_the_unsmoothed_counted_model_calls_unseen_bigrams_impossible(tmp_path: Path) -> None:
    # One-letter words: each word's bigrams (.a, a.) are its own, so val and test have bigrams
    # train never saw.
    path = tmp_path / "words.txt"
    path.write_text("\n".join("abcdefghij") + "\n")
    model = LearnedLM(".abcdefghij", 1, "onehot", torch.arange(11), torch.zeros(11, 11))
    rows = split_rows(model, TextFile(str(path)), [0.6, 0.2, 0.2], 0, alpha=0.0)
    counted = {row.split: row.counted_nll for row in rows}
    assert math.isfinite(counted["train"]) and math.isinf(counted["val"])


def test_a_character_the_checkpoint_lacks_is_named(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("abc\nabd\n")
    with pytest.raises(UserError, match=r"character 'd' \(in .*words.txt\) is not in the vocab"):
        model = LearnedLM(".abc", 1, "onehot", torch.arange(4), torch.zeros(4, 4))
        split_rows(model, TextFile(str(path)), SPLIT, 0)
