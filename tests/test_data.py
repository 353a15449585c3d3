"""Corpus sources, vocabulary, bigram pairs and splits."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigramlab.counting.bigrams import bigram_counts, count_corpus
from bigramlab.data.corpora import EnglishWords, Names, TextFile, read_lines
from bigramlab.data.vocab import Vocab, bigram_pairs, split_assignment, split_words
from bigramlab.errors import UserError
from bigramlab.training.datamodule import NgramDataModule, ngram_data
from tests.conftest import lecture_pairs, make_words


def test_vocab_is_boundary_then_sorted_characters() -> None:
    vocab = Vocab.from_words(["emma", "olivia", "ava"])
    assert vocab.itos == ".aeilmov"
    assert vocab.stoi["."] == 0 and vocab.stoi["v"] == 7


def test_pairs_equal_the_lecture_loop() -> None:
    words = make_words(200, seed=3)
    xs, ys = bigram_pairs(words, Vocab.from_words(words))
    ref_xs, ref_ys = lecture_pairs(words)
    assert xs.tolist() == ref_xs and ys.tolist() == ref_ys
    assert len(xs) == sum(len(w) + 1 for w in words)


def test_unicode_words_encode_and_unknown_characters_are_named() -> None:
    words = ["zoë", "renée", "дима", "李"]
    vocab = Vocab.from_words(words)
    _, ys = bigram_pairs(words, vocab)
    assert "".join(vocab.itos[i] for i in ys.tolist()) == "zoë.renée.дима.李."
    with pytest.raises(UserError, match="'q'.*'qi'"):
        bigram_pairs(["qi"], vocab)


def test_splits_are_disjoint_seeded_and_cover_the_corpus() -> None:
    words = [f"w{i}" for i in range(1000)]
    train, val, test = split_words(words, [0.8, 0.1, 0.1], seed=42)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert sorted(train + val + test) == sorted(words)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert split_words(words, [0.8, 0.1, 0.1], seed=42) == (train, val, test)
    assert split_words(words, [0.8, 0.1, 0.1], seed=43)[1] != val
    # Each part keeps corpus order; [1, 0, 0] is the corpus itself.
    assert train == sorted(train, key=words.index)
    assert split_words(words, [1.0, 0.0, 0.0], seed=7) == (words, [], [])


@pytest.mark.parametrize("n", [1, 7, 10, 1000, 32033])
def test_lecture_split_is_the_lectures_code(n: int) -> None:
    words = [f"w{i}" for i in range(n)]
    # The lecture (makemore part 2), verbatim but for the names.
    lecture = list(words)
    random.seed(42)
    random.shuffle(lecture)
    n1, n2 = int(0.8 * len(lecture)), int(0.9 * len(lecture))
    expected = (lecture[:n1], lecture[n1:n2], lecture[n2:])
    parts = split_words(words, [0.8, 0.1, 0.1], seed=42, rule="lecture")
    assert [sorted(p) for p in parts] == [sorted(p) for p in expected]
    assert parts != split_words(words, [0.8, 0.1, 0.1], seed=42) or n < 10


@pytest.mark.parametrize("n", [1, 7, 1000, 32033, 3_000_000])
def test_randperm_split_is_the_int64_permutations(n: int) -> None:
    """split_assignment draws its permutation in int32: torch gives the int64 one's numbers."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(42)).numpy()
    n1, n2 = round(n * 0.8), round(n * 0.9)
    expected = np.zeros(n, dtype=np.int8)
    expected[perm[n1:n2]], expected[perm[n2:]] = 1, 2
    assert np.array_equal(split_assignment(n, [0.8, 0.1, 0.1], 42), expected)


def test_count_corpus_splits_by_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    words = make_words(300, seed=5)
    path.write_text("\n".join(words) + "\n")
    for rule in ("randperm", "lecture"):
        _, n_words, counts = count_corpus(TextFile(str(path)), [0.8, 0.1, 0.1], 42, rule)
        for name, part in zip(
            ("train", "val", "test"), split_words(words, [0.8, 0.1, 0.1], 42, rule)
        ):
            vocab = Vocab.from_words(words)
            assert n_words[name] == len(part)
            assert torch.equal(counts[name], bigram_counts(*bigram_pairs(part, vocab), len(vocab)))
    with pytest.raises(UserError, match="data.split_rule='shuffle' is unknown"):
        split_words(words, [0.8, 0.1, 0.1], 42, "shuffle")


def test_text_file_skips_blank_lines_handles_crlf_and_lowercases(tmp_path: Path) -> None:
    path = tmp_path / "w.txt"
    path.write_bytes(b"Emma\r\n\r\n  \nOlivia\r\nava")
    assert read_lines(path) == ["Emma", "Olivia", "ava"]
    assert TextFile(str(path), lowercase=True).load() == ["emma", "olivia", "ava"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "has no words"),
        (b"\n\n \r\n", "has no words"),
        (b"emma\nol\xffivia\n", "line 2 is not valid UTF-8 .invalid start byte at byte 2 of"),
        (b"emma\nst. louis\n", "line 2 contains '.'"),
    ],
)
def test_bad_text_files_are_refused_with_the_reason(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "w.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_lines(path)


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="is not a file"):
        read_lines(tmp_path)


def test_english_words_is_the_web2_list() -> None:
    words = EnglishWords().load()
    assert 230_000 < len(words) < 240_000
    assert Vocab.from_words(words).itos == ".abcdefghijklmnopqrstuvwxyz"
    assert words == sorted(words)


def _names(served: Path, url: str, cache: Path, content: bytes, sha: str | None = None) -> Names:
    (served / "names.txt").write_bytes(content)
    digest = sha or hashlib.sha256(content).hexdigest()
    return Names(url=f"{url}/names.txt", sha256=digest, cache_dir=str(cache))


def test_names_downloads_verifies_and_then_uses_the_cache(http_server, tmp_path: Path) -> None:
    url, served = http_server
    cache = tmp_path / "cache"
    content = "\n".join(make_words(50)).encode()
    names = _names(served, url, cache, content)
    assert names.load() == content.decode().split("\n")
    assert (cache / "names.txt").read_bytes() == content
    assert sorted(p.name for p in cache.iterdir()) == ["names.txt", "names.txt.lock"]
    # A cached file with the right checksum needs no network at all.
    offline = Names(url="http://127.0.0.1:9/names.txt", sha256=names.sha256, cache_dir=str(cache))
    assert offline.load() == names.load()


def test_names_with_wrong_checksum_is_rejected_and_not_cached(http_server, tmp_path) -> None:
    url, served = http_server
    cache = tmp_path / "cache"
    names = _names(served, url, cache, b"emma\nolivia\n", sha="0" * 64)
    with pytest.raises(UserError, match="expected 0000.*nothing was saved"):
        names.load()
    assert not (cache / "names.txt").exists()
    assert not [p for p in cache.iterdir() if p.suffix == ".part"]


def test_names_offline_and_not_cached_names_the_url_and_the_place(tmp_path: Path) -> None:
    names = Names(url="http://127.0.0.1:9/names.txt", sha256="0" * 64, cache_dir=str(tmp_path))
    with pytest.raises(UserError) as excinfo:
        names.load()
    message = str(excinfo.value)
    assert "http://127.0.0.1:9/names.txt" in message and str(tmp_path / "names.txt") in message


def test_datamodule_counts_match_pairs_and_batches(words_file: Path) -> None:
    dm = NgramDataModule(TextFile(str(words_file)), batch_size=64, shuffle_seed=1)
    dm.setup()
    V = len(dm.vocab)
    xs, ys = dm.data.train_pairs
    assert torch.equal(dm.counts["train"], bigram_counts(xs, ys, V))
    total = sum(int(c.sum()) for c in dm.counts.values())
    assert total == sum(len(w) + 1 for w in words_file.read_text().split())
    batches = list(dm.train_dataloader())
    assert sum(len(b[0]) for b in batches) == len(xs) and len(batches[0][0]) == 64
    # Shuffled, and the same shuffle again from the same seed.
    again = list(dm.train_dataloader())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert not torch.equal(batches[0][0], xs[:64])
    (val_batch,) = list(dm.val_dataloader())
    assert set(val_batch) == {"train", "val", "test"}


def test_datamodule_with_empty_splits_validates_train_only(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("emma\n")
    dm = NgramDataModule(TextFile(str(path)))
    dm.setup()
    assert [dm.data.n_words[s] for s in ("train", "val", "test")] == [1, 0, 0]
    (val_batch,) = list(dm.val_dataloader())
    assert set(val_batch) == {"train"}


@st.composite
def messy_corpus(draw: st.DrawFn) -> str:
    """Lines of letters (some non-ASCII), with blank lines, spaces, tabs and \\r\\n thrown in."""
    alphabet = st.sampled_from([*list("abcdeé ж"), "ab", "ba"])
    lines = draw(st.lists(st.lists(alphabet, max_size=6).map("".join), min_size=1, max_size=60))
    ends = draw(
        st.lists(
            st.sampled_from(["\n", "\r\n", " \n", "\t\n"]), min_size=len(lines), max_size=len(lines)
        )
    )
    text = "".join(line + end for line, end in zip(lines, ends))
    return text if draw(st.booleans()) else text.rstrip("\n")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=messy_corpus(), chunk=st.sampled_from([8, 64, 1 << 20]), lowercase=st.booleans())
def test_counting_in_pieces_equals_counting_the_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, chunk: int, lowercase: bool
) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text(text.upper() if lowercase else text, encoding="utf-8")
    corpus = TextFile(str(path), lowercase=lowercase)
    try:
        words = corpus.load()
    except UserError:
        with pytest.raises(UserError, match="has no words"):
            count_corpus(corpus, [0.6, 0.2, 0.2], seed=3)
        return
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", chunk)
    vocab, n_words, counts = count_corpus(corpus, [0.6, 0.2, 0.2], seed=3)
    assert vocab == Vocab.from_words(words)
    for name, part in zip(("train", "val", "test"), split_words(words, [0.6, 0.2, 0.2], seed=3)):
        assert n_words[name] == len(part)
        expected = bigram_counts(*bigram_pairs(part, vocab), len(vocab)) if part else 0
        assert torch.equal(counts[name], expected + torch.zeros_like(counts[name]))


def test_english_words_count_in_pieces_like_the_whole() -> None:
    corpus = EnglishWords()
    vocab, n_words, counts = count_corpus(corpus, [0.8, 0.1, 0.1], seed=42)
    words = corpus.load()
    train = split_words(words, [0.8, 0.1, 0.1], seed=42)[0]
    assert n_words["train"] == len(train) and vocab == Vocab.from_words(words)
    assert torch.equal(counts["train"], bigram_counts(*bigram_pairs(train, vocab), len(vocab)))


@pytest.mark.slow
@pytest.mark.parametrize("accent", ["", "é"], ids=["ascii", "decoded"])
def test_counting_memory_does_not_grow_with_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accent: str
) -> None:
    """Peak traced memory of count_corpus on a corpus and on one 16 times larger: the difference
    is the split assignment (one byte a word), not the text or its bigrams. With an accent in
    every word each piece is decoded instead of counted from its bytes."""
    import tracemalloc

    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 1 << 16)
    text = ("\n".join(w + accent for w in make_words(100_000, seed=1)) + "\n").encode()
    peaks = {}
    for times in (1, 16):
        path = tmp_path / f"x{times}.txt"
        path.write_bytes(text * times)
        tracemalloc.start()
        count_corpus(TextFile(str(path)), [0.8, 0.1, 0.1], seed=0)
        peaks[times] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    extra_words = 15 * 100_000
    assert peaks[16] - peaks[1] < 2 * extra_words + (1 << 20)
    assert peaks[16] < 16 * len(text)  # less than the text itself, let alone its bigrams


def test_counts_without_the_byte_pair_view_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the int16 view of bytes does not hold (a big-endian machine) every piece is decoded
    instead: the same counts."""
    corpus = EnglishWords()
    fast = count_corpus(corpus, [0.8, 0.1, 0.1], seed=1)
    monkeypatch.setattr("bigramlab.counting.bigrams.sys.byteorder", "big")
    decoded = count_corpus(corpus, [0.8, 0.1, 0.1], seed=1)
    assert decoded[0] == fast[0] and decoded[1] == fast[1]
    assert all(torch.equal(decoded[2][s], fast[2][s]) for s in fast[2])


def test_text_file_corpus_is_reread_after_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "w.txt"
    path.write_text("ab\n")
    first = ngram_data(TextFile(str(path)), (1.0, 0.0, 0.0), 0, False)
    assert ngram_data(TextFile(str(path)), (1.0, 0.0, 0.0), 0, False) is first
    path.write_text("abc\nca\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert ngram_data(TextFile(str(path)), (1.0, 0.0, 0.0), 0, False).vocab.itos == ".abc"
