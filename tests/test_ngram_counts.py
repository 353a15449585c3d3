"""(k+1)-gram counting (bigramlab.counting.ngrams) against a loop over the words, and its memory:
the estimate before counting, the merge of pieces, the refusal of an order too large to train."""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

import pytest
import torch

from bigramlab.counting import ngrams
from bigramlab.counting.ngrams import count_ngrams, ngram_counts_of_words
from bigramlab.data.corpora import TextFile
from bigramlab.data.vocab import SPLITS, Vocab, split_words
from bigramlab.errors import UserError
from bigramlab.keys import context_tokens
from bigramlab.training.datamodule import ngram_data
from tests.conftest import assert_same_counts, make_words
from tests.helpers import events_by_loop

SPLIT = [0.7, 0.2, 0.1]


SPLIT = [0.7, 0.2, 0.1]


def as_strings(vocab: Vocab, k: int, contexts: torch.Tensor, N: torch.Tensor) -> Counter:
    tokens = context_tokens(contexts, k, len(vocab))
    found: Counter = Counter()
    for row, col in torch.nonzero(N).tolist():
        found["".join(vocab.itos[t] for t in tokens[row].tolist()), vocab.itos[col]] = int(
            N[row, col]
        )
    return found


@pytest.mark.parametrize("accent", ["", "é"], ids=["ascii", "decoded"])
@pytest.mark.parametrize(
    "k,tally", [(1, "bincount"), (1, "sort"), (2, "bincount"), (3, "sort"), (6, "sort")]
)
def test_count_ngrams_equals_a_loop_over_the_split_words(
    tmp_path: Path, k: int, accent: str, tally: str, monkeypatch
) -> None:
    # One table of every key (np.bincount), or each piece's keys sorted and the pieces merged.
    monkeypatch.setattr(
        "bigramlab.counting.ngrams.SMALL_TABLE", 1 << 22 if tally == "bincount" else 0
    )
    # Keys made in blocks of 7 events, so that contexts straddle blocks as well as pieces.
    monkeypatch.setattr("bigramlab.keys.BLOCK", 7)
    # Mixed case, lower-cased when read; pieces of a few hundred bytes, so that words of every
    # split meet in a piece and one word count carries over from piece to piece.
    words = [w.upper() if i % 3 == 0 else w for i, w in enumerate(make_words(400, seed=3))]
    words = [w + accent for w in words]
    path = tmp_path / "w.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 300)
    counted = count_ngrams(TextFile(str(path), lowercase=True), k, SPLIT, 7)
    words = [w.lower() for w in words]
    parts = split_words(words, SPLIT, 7)
    assert counted.n_words == {s: len(p) for s, p in zip(SPLITS, parts)}
    dense = counted.dense_counts()
    for split, part in zip(SPLITS, parts):
        assert as_strings(counted.vocab, k, counted.contexts, dense[split]) == (
            events_by_loop(part, k)
        )
    table, counts = ngram_counts_of_words(dict(zip(SPLITS, parts)), counted.vocab, k)
    assert torch.equal(table, counted.contexts)
    assert all(torch.equal(counts[s], dense[s]) for s in SPLITS)


def test_a_corpus_too_big_to_count_is_refused_with_its_estimate_before_its_split_is_drawn(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(3000, alphabet=string.ascii_lowercase)) + "\n")
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 4000)  # a sample of ~4,000 events
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 2**19)

    def drawn(*args, **kwargs):
        raise AssertionError("the splits were drawn before the memory was checked")

    monkeypatch.setattr("bigramlab.counting.ngrams.split_assignment", drawn)
    # Random letters: nearly every 6-gram is new, so the sample's Heaps exponent is near 1 and
    # the estimate near one pair an event (about 16,500 events, 48 bytes each): 0.8 MB.
    with pytest.raises(
        UserError,
        match=r"^counting .*w.txt at model.context=5 needs more than this machine's 512.0 KiB: "
        r"about [0-9.]+ KiB for the splits of 3,000 words and about 1[0-9],[0-9]{3} distinct "
        r"n-grams \(Heaps' law from the first 4,[0-9]{3} events\): use a shorter model.context or "
        r"less data$",
    ):
        count_ngrams(TextFile(str(path)), 5, SPLIT, 0)


def test_a_repetitive_corpus_over_the_bound_is_counted_when_its_estimate_fits(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(20, seed=4) * 1500) + "\n")
    expected = count_ngrams(TextFile(str(path)), 5, SPLIT, 0)
    events = sum(expected.n_words.values()) + sum(int(N.sum()) for N in expected.counts.values())
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 4000)
    # Memory for half of one pair an event: the bound (one pair an event) does not fit, the
    # estimate of a corpus of 20 words repeated (a few hundred pairs) does.
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 32 * events)
    sampled = []
    real_sample = ngrams._sample_heaps
    monkeypatch.setattr(
        "bigramlab.counting.ngrams._sample_heaps",
        lambda *args: sampled.append(real_sample(*args)) or sampled[-1],
    )
    found = count_ngrams(TextFile(str(path)), 5, SPLIT, 0)
    assert len(sampled) == 1 and 0 < sampled[0][0] <= sampled[0][1] < 200
    assert_same_counts(found, expected)


def test_a_count_whose_start_misleads_its_estimate_stops_before_the_merge(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    # The first pieces one word repeated, the rest random: the sample sees one n-gram in
    # every event and the estimate is far too low.
    path.write_text(
        "\n".join(["abc"] * 2000 + make_words(3000, alphabet="abcdefghijklmnop")) + "\n"
    )
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 4000)
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 400 * 2**10)
    with pytest.raises(
        UserError,
        match=r"counting .*w.txt at model.context=5 needs more than this machine's 400.0 KiB: the "
        r"[0-9,]+ distinct n-grams found before the end of the file already need [0-9.]+ KiB: use "
        r"a shorter model.context",
    ):
        count_ngrams(TextFile(str(path)), 5, SPLIT, 0)
    count_ngrams(TextFile(str(path)), 2, SPLIT, 0)  # 3 x 17^3 keys: within the bound


def test_pieces_merged_as_they_come_give_the_counts_of_one_piece(tmp_path: Path, monkeypatch):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(3000, seed=9)) + "\n")
    whole = count_ngrams(TextFile(str(path)), 5, SPLIT, 3)
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 300)  # about 70 pieces
    pieces = count_ngrams(TextFile(str(path)), 5, SPLIT, 3)
    assert_same_counts(pieces, whole)


def test_an_order_too_large_to_train_in_memory_is_refused_before_its_dense_counts(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(2000)) + "\n")
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 2**20)
    contexts = len(count_ngrams(TextFile(str(path)), 4, SPLIT, 0).contexts)
    with pytest.raises(
        UserError,
        match=rf"model.context=4 on .*w.txt needs about .*MiB to train \({contexts:,} contexts x "
        r"11 tokens\), more than this machine's 1.0 MiB: use a shorter model.context",
    ):
        ngram_data(TextFile(str(path)), SPLIT, 0, with_pairs=False, context=4)
    ngram_data(TextFile(str(path)), SPLIT, 0, with_pairs=False, context=2)
