"""Counting sharded across processes: every process reads its own byte range, and the counts,
vocabulary and split are bitwise those of one process (bigramlab.counting.ngrams, .shards)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from bigramlab.counting.ngrams import (
    NgramCounts,
    _count_range,
    _per_split,
    agree,
    count_ngrams,
    survey,
)
from bigramlab.counting.shards import Shard
from bigramlab.data import corpora
from bigramlab.data.corpora import EnglishWords, TextFile, read_chunks
from bigramlab.data.vocab import SPLITS, split_assignment
from bigramlab.errors import UserError
from tests.conftest import assert_same_counts, make_words
from tests.helpers import free_port

SPLIT = (0.8, 0.1, 0.1)


def _count_in_process(
    rank: int, world_size: int, port: int, path: str, contexts: list[int], out: str, chunk: int
) -> None:
    corpora.CHUNK_BYTES = chunk
    # A forked child must not enter the OpenMP pool its parent (the test worker) may have started:
    # it would wait on threads that fork did not copy. Lightning sets the same for its processes.
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    found: dict[int, object] = {}
    for k in contexts:
        try:
            c = count_ngrams(TextFile(path, lowercase=True), k, SPLIT, 7)
            found[k] = (c.vocab.itos, c.n_words, c.contexts, c.dense_counts())
        except UserError as e:
            found[k] = f"error: {e}"
    torch.save(found, Path(out) / f"{rank}.pt")
    dist.destroy_process_group()


def count_in_processes(
    path: Path, contexts: list[int], world_size: int, tmp: Path, chunk: int = 200
) -> list[dict]:
    """What count_ngrams gives in each of `world_size` processes of a gloo process group, reading
    pieces of `chunk` bytes."""
    out = tmp / f"world{world_size}"
    out.mkdir()
    args = (world_size, free_port(), str(path), contexts, str(out), chunk)
    mp.start_processes(_count_in_process, args, nprocs=world_size, start_method="fork")
    return [torch.load(out / f"{rank}.pt") for rank in range(world_size)]


def assert_same_saved_counts(got: tuple | str, expected: NgramCounts) -> None:
    """`got` as _count_in_process saved it: (itos, n_words, contexts, dense N per split)."""
    assert not isinstance(got, str), got
    itos, n_words, contexts, counts = got
    assert (itos, n_words) == (expected.vocab.itos, expected.n_words)
    assert torch.equal(contexts, expected.contexts)
    dense = expected.dense_counts()
    assert counts.keys() == dense.keys()
    assert all(torch.equal(counts[s], dense[s]) for s in counts)


def mixed_corpus(path: Path) -> None:
    """Words of every kind of piece: clean ASCII, upper case (lower-cased), accented (decoded),
    blank lines and surrounding spaces (decoded), no final line end."""
    words = make_words(900, seed=5)
    lines = [
        w.upper() if i % 7 == 0 else w + "é" if i % 11 == 0 else f"  {w} " if i % 13 == 0 else w
        for i, w in enumerate(words)
    ]
    lines[300:300] = ["", ""]
    path.write_bytes("\n".join(lines).encode())


@pytest.mark.parametrize("world_size", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_counts_of_several_processes_are_bitwise_one_process(
    tmp_path: Path, world_size, monkeypatch
):
    path = tmp_path / "w.txt"
    mixed_corpus(path)
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 200)
    contexts = [1, 2, 3, 4, 5, 6]
    one = {k: count_ngrams(TextFile(str(path), lowercase=True), k, SPLIT, 7) for k in contexts}
    for found in count_in_processes(path, contexts, world_size, tmp_path):
        for k in contexts:
            assert_same_saved_counts(found[k], one[k])


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 4])
def test_counts_of_the_words_list_in_several_processes_are_bitwise_one_process(
    tmp_path: Path, world_size
):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(EnglishWords().load()) + "\n")  # 234,450 words, 2.5 MB
    contexts = [1, 2, 3, 4, 5, 6]
    one = {k: count_ngrams(TextFile(str(path), lowercase=True), k, SPLIT, 7) for k in contexts}
    # Pieces of 256 KiB: each process's range is read in several.
    for found in count_in_processes(path, contexts, world_size, tmp_path, chunk=1 << 18):
        for k in contexts:
            assert_same_saved_counts(found[k], one[k])


def test_a_bad_line_in_one_range_fails_every_process_naming_its_line(tmp_path: Path):
    path = tmp_path / "w.txt"
    words = make_words(600, seed=2)
    words[500] = "bad\udcff"  # a lone surrogate: not UTF-8 once written with surrogateescape
    path.write_bytes("\n".join(words).encode("utf-8", "surrogateescape") + b"\n")
    with pytest.raises(UserError) as one:
        count_ngrams(TextFile(str(path)), 2, SPLIT, 7)
    assert "line 501 " in str(one.value)
    for found in count_in_processes(path, [2], 2, tmp_path):
        assert found[2] == f"error: {one.value}"


def test_a_count_out_of_memory_in_the_processes_fails_each_with_the_error(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    mixed_corpus(path)
    # Forked after the patch. At k = 2 the bound (one pair an event, at most V^3 a split) fits
    # 160 KiB; at k = 6 it does not, and each process's Heaps estimate from its first piece
    # (about 3,300 to 3,700 pairs, 48 bytes each, besides the words and a piece) does not either.
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 160 * 2**10)
    for found in count_in_processes(path, [6, 2], 2, tmp_path):
        assert found[6].startswith("error: counting") and (
            "needs more than this machine's 160.0 KiB: about" in found[6]
            and "(Heaps' law from the first" in found[6]
        )
        assert not isinstance(found[2], str)  # and the processes go on to count again after it


lines = st.lists(st.text(alphabet="ab\u00e9 \r\t", max_size=6), max_size=40)


@settings(max_examples=60, deadline=None)
@given(lines, st.booleans(), st.integers(1, 5), st.integers(1, 3), st.integers(3, 40))
def test_ranges_counted_apart_and_summed_are_the_whole_corpus(
    lines: list[str], final_end: bool, world_size: int, k: int, chunk: int
) -> None:
    """Random text (blank lines, spaces and \\r around words, non-ASCII) cut into `world_size`
    ranges: each range surveyed and counted alone, the pairs summed by key, equal one process's
    count; the ranges hold every line once."""
    text = "\n".join(lines) + ("\n" if final_end else "")
    data = text.encode()
    corpora.CHUNK_BYTES, saved = chunk, corpora.CHUNK_BYTES
    try:
        parts = [b"".join(read_chunks(io.BytesIO(data), r, world_size)) for r in range(world_size)]
        assert b"".join(parts) == data
        corpus = InMemory(data)
        shards = [Shard(r, world_size) for r in range(world_size)]
        try:
            one = count_ngrams(corpus, k, SPLIT, 3, shard=Shard())
        except UserError as e:
            with pytest.raises(UserError, match="no words"):
                agree(corpus, [survey(corpus, s) for s in shards])
            assert "no words" in str(e)
            return
        surveys = [survey(corpus, s) for s in shards]
        vocab = agree(corpus, surveys)
        n_words = sum(s.words for s in surveys)
        assignment = split_assignment(n_words, SPLIT, 3)
        keys, counts, first = [], [], 0
        for s, found in zip(shards, surveys):
            mine = assignment[first : first + found.words]
            first += found.words
            found_keys, found_counts = _count_range(corpus, vocab, k, mine, len(SPLIT), s, found)
            keys.append(found_keys)
            counts.append(found_counts)
        merged, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        totals = np.bincount(inverse, weights=np.concatenate(counts)).astype(np.int64)
        per_split = {n: int((assignment == p).sum()) for p, n in enumerate(SPLITS)}
        sharded = _per_split(vocab, k, per_split, merged, totals)
        assert_same_counts(sharded, one)
    finally:
        corpora.CHUNK_BYTES = saved


class InMemory:
    """A corpus of bytes in memory."""

    name = "memory"
    lowercase = False

    def __init__(self, data: bytes) -> None:
        self.data = data

    def byte_chunks(self, part: int = 0, parts: int = 1):
        return read_chunks(io.BytesIO(self.data), part, parts)
