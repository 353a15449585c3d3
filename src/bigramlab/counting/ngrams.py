"""The (k+1)-gram counts of a corpus, per split, over contexts of k tokens (their integer keys:
bigramlab.keys). With k = 3, "emma" gives the events ... -> e, ..e -> m, .em -> m, emm -> a,
mma -> . ; k = 1 is the bigram.

    NgramCounts        vocabulary, the contexts seen in any split (their keys, sorted) and the
                       counts N (C, V) per split: N[c, y] = how often token y follows context c
    count_ngrams       NgramCounts of a corpus, read in pieces (memory grows with the distinct
                       n-grams, not with the corpus); k = 1 is the bigram count of
                       bigramlab.counting.bigrams
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from bigramlab.counting.bigrams import (
    NEWLINE,
    NOT_CLEAN,
    clean_piece_pairs,
    count_corpus,
    count_range_pairs,
    framed_piece,
    lowered_pieces,
)
from bigramlab.counting.shards import Shard, sum_by_key
from bigramlab.counting.sorting import sort_keys
from bigramlab.data import corpora
from bigramlab.data.corpora import Corpus, decode_words
from bigramlab.data.vocab import SPLITS, Vocab, split_assignment
from bigramlab.errors import BadLine, UserError
from bigramlab.keys import check_context, event_keys, gram_keys

# Key spaces up to this size (32 MiB of int64 counts) are tallied in one table by bincount, not
# sorted: that takes k = 3 at V = 27 (1.6 million keys with three parts; docs/benchmark.md).
SMALL_TABLE = 1 << 22


class NgramCounts(NamedTuple):
    """A corpus counted at a context of k = `context` tokens: its vocabulary, words per split, the
    contexts seen in any split (their keys (C,), sorted) and N (C, V) int64 per split, sparse:
    a coalesced torch.sparse_coo_tensor holding the (context row, token) pairs seen."""

    vocab: Vocab
    context: int
    n_words: dict[str, int]
    contexts: Tensor
    counts: dict[str, Tensor]

    def dense_counts(self) -> dict[str, Tensor]:
        """N (C, V) int64 per split, dense."""
        return {split: N.to_dense() for split, N in self.counts.items()}


def _framed_ids(words: list[str], vocab: Vocab) -> np.ndarray:
    return vocab.encode_words(words).numpy()


def _translation(vocab: Vocab) -> bytes:
    """bytes.translate's table from a byte to its token id: the vocabulary's single-byte
    characters, the line end to 0 (`.`), any other byte to 255 (-1 read as int8)."""
    # int8 ids: the vocabulary is sorted, so its single-byte (ASCII) characters have ids below 128.
    table = bytearray(b"\xff" * 256)
    for ch, i in vocab.stoi.items():
        if len(ch.encode()) == 1 and ord(ch) not in NOT_CLEAN:
            table[ord(ch)] = i
    table[NEWLINE] = 0
    return bytes(table)


def _pieces(
    corpus: Corpus, vocab: Vocab, shard: Shard, clean: Sequence[bool]
) -> Iterator[np.ndarray]:
    """The framed ids `.w1.w2. … .` of each piece of this shard's range that has words; `clean`
    says which pieces the survey found clean ASCII (their lines are their words: nothing
    str.strip() would remove, no blank line, no `.`). Those are read byte by byte through one
    bytes.translate; the others are decoded line by line."""
    table = _translation(vocab)
    line = 1
    lowercase = corpus.lowercase
    for chunk, is_clean in zip(
        corpus.byte_chunks(shard.rank, shard.world_size), clean, strict=True
    ):
        if is_clean:
            if lowercase:
                chunk = chunk.lower()
            ids = np.frombuffer(framed_piece(chunk).translate(table), dtype=np.int8)
            if (ids < 0).any():
                raise RuntimeError(f"a piece of {corpus.name} changed between the two readings")
            # The line ends of a clean piece: its `.`s but the framing one and any added at its end.
            line += int(np.count_nonzero(ids == 0)) - 1 - (not chunk.endswith(b"\n"))
            yield ids
        else:
            words = decode_words(chunk, corpus.name, line, lowercase)
            line += chunk.count(b"\n")
            if words:
                yield _framed_ids(words, vocab)


class Survey(NamedTuple):
    """One process's byte range, read once: the characters of its words, how many words, events
    (characters and word ends) and line ends it has, which of its pieces are clean ASCII, the
    error that stopped it (a BadLine numbered within the range), if any, and the byte pairs of its
    clean pieces (128, 128), which the bigram's count starts from (None in the copies the
    processes exchange)."""

    chars: frozenset[str]
    words: int
    events: int
    lines: int
    clean: tuple[bool, ...]
    error: UserError | None
    clean_pairs: Tensor | None = None


def survey(corpus: Corpus, shard: Shard) -> Survey:
    """Survey this shard's range. A clean ASCII piece is read as a histogram of its byte pairs
    (bigramlab.counting.bigrams); any other is decoded line by line."""
    chars: set[str] = set()
    words = events = lines = 0
    clean: list[bool] = []
    clean_pairs = torch.zeros(128, 128, dtype=torch.int64)
    try:
        for chunk in lowered_pieces(corpus, shard.rank, shard.world_size):
            found = clean_piece_pairs(chunk)
            clean.append(found is not None)
            if found is not None:
                pairs, in_chunk = found
                clean_pairs += pairs
                firsts = torch.nonzero(pairs.sum(dim=1))[:, 0].tolist()
                chars.update(chr(b) for b in firsts if b != NEWLINE)
                words += in_chunk
                events += int(pairs.sum())  # a word's characters and its closing `.`
                lines += in_chunk - (not chunk.endswith(b"\n"))
            else:
                found_words = decode_words(chunk, corpus.name, lines + 1, corpus.lowercase)
                chars.update("".join(found_words))
                words += len(found_words)
                events += sum(map(len, found_words)) + len(found_words)
                lines += chunk.count(b"\n")
    except UserError as e:  # reported by every process once they have all surveyed their range
        return Survey(frozenset(chars), words, events, lines, tuple(clean), e)
    return Survey(frozenset(chars), words, events, lines, tuple(clean), None, clean_pairs)


def agree(corpus: Corpus, surveys: list[Survey]) -> Vocab:
    """The vocabulary of every process's survey; or, where a process stopped at an error, that
    error (the first in the file), numbered in the whole file, raised on every process."""
    lines_before = 0
    for found in surveys:
        if isinstance(found.error, BadLine):
            raise found.error.shifted(lines_before)
        if found.error is not None:
            raise found.error
        lines_before += found.lines
    if sum(found.words for found in surveys) == 0:
        raise UserError(f"{corpus.name} has no words (it is empty or only blank lines)")
    return Vocab.from_chars(frozenset().union(*(found.chars for found in surveys)))


def count_ngrams(
    corpus: Corpus,
    context: int,
    fractions: Sequence[float],
    seed: int,
    rule: str = "randperm",
    shard: Shard | None = None,
) -> NgramCounts:
    """The (context + 1)-gram counts of a corpus per split, split by word as
    bigramlab.data.vocab.split_assignment says (the same words in the same parts however many
    processes count), read in pieces.

    Each process of `shard` (default: the process group this process is in, if any) reads its
    own byte range twice. The first pass surveys it (characters, words, line ends); the surveys
    are exchanged, so every process knows the vocabulary and where its words stand among all of
    them, hence their splits. The second pass makes each event a key (part, context, next),
    tallied in one table where the key space is small, else sorted and counted per piece; the
    processes' (key, count) pairs are then summed by key. Memory holds the distinct n-grams and one
    piece's events, never the corpus.
    """
    shard = shard or Shard.this_process()
    if context == 1 and shard.world_size == 1:
        # The bigram in one process: count_corpus's byte-pair histograms, faster than keys and
        # their tally (docs/benchmark.md); the same counts (tests/test_shards.py).
        bigram = count_corpus(corpus, fractions, seed, rule)
        sparse = {name: N.to_sparse() for name, N in bigram.counts.items()}
        return NgramCounts(bigram.vocab, 1, bigram.n_words, torch.arange(len(bigram.vocab)), sparse)
    own = survey(corpus, shard)
    surveys = shard.gather(own._replace(clean_pairs=None))
    vocab = agree(corpus, surveys)
    V = len(vocab)
    check_context(context, V)
    n_words = sum(found.words for found in surveys)
    check_memory_before_counting(corpus, vocab, context, fractions, surveys, shard)
    assignment = split_assignment(n_words, fractions, seed, rule)
    # Not np.bincount: it would copy the assignment to 8 bytes a word.
    per_split = {
        name: int(np.count_nonzero(assignment == part))
        for part, name in enumerate(SPLITS[: len(fractions)])
    }
    first = sum(found.words for found in surveys[: shard.rank])
    mine = assignment[first : first + surveys[shard.rank].words].copy()
    del assignment
    try:
        found, error = (
            _count_range(corpus, vocab, context, mine, len(fractions), shard, own),
            None,
        )
    except UserError as e:  # raised by every process below, not left waiting at the merge
        found, error = (np.zeros(0, np.int64), np.zeros(0, np.int64)), e
    if stopped := [e for e in shard.gather(error) if e is not None]:
        raise stopped[0]
    return _per_split(vocab, context, per_split, *shard.merge_counts(*found))


def _count_range(
    corpus: Corpus,
    vocab: Vocab,
    context: int,
    parts: np.ndarray,
    n_parts: int,
    shard: Shard,
    surveyed: Survey,
) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) of the events of this shard's range: keys ((context · V + next) · n_parts +
    part) sorted int64, `parts` the part (of n_parts) of each of the range's words, `surveyed` the
    range's own survey (which pieces are clean ASCII, their byte pairs). The part is
    the lowest digit so that sorted keys are sorted by context: no sort is needed to find them.

    Each piece's distinct keys are merged into the range's whenever the pieces not yet merged
    hold as many as the merged ones (so memory stays within a few times the distinct n-grams,
    and each key is merged O(log pieces) times); before each merge, a UserError where the
    n-grams found so far would need more than the machine's memory."""
    V = len(vocab)
    clean = surveyed.clean
    if context == 1:
        # The bigram: the byte-pair histograms the survey drew of the clean pieces, as one process
        # counts (count_corpus), laid out as the keys below.
        N = count_range_pairs(
            corpus, vocab, parts, n_parts, shard.rank, shard.world_size, clean, surveyed.clean_pairs
        )
        flat = N.permute(1, 2, 0).reshape(-1).numpy()  # at (context · V + next) · n_parts + part
        keys = np.flatnonzero(flat)
        return keys, flat[keys]
    grams = V ** (context + 1)
    table_size = n_parts * grams
    # Keys in int32 where (part, context, next) fits: half the memory traffic, a faster sort.
    dtype = np.int32 if table_size < 2**31 else np.int64
    tally = np.zeros(table_size, dtype=np.int64) if table_size <= SMALL_TABLE else None
    merged = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    first = 0
    for ids in _pieces(corpus, vocab, shard, clean):
        # The part of each event: a word's events are its characters and its closing `.`.
        per_word = np.diff(np.flatnonzero(ids == 0))
        word_parts = parts[first : first + len(per_word)]
        first += len(per_word)
        event_parts = np.repeat(word_parts, per_word) if n_parts > 1 else None
        keys = gram_keys(ids, context, V, dtype, event_parts, n_parts)
        del event_parts
        if tally is not None:
            tally += torch.bincount(torch.from_numpy(keys), minlength=table_size).numpy()
            continue
        pending.append(_unique_counts(keys))
        del keys
        waiting = sum(len(found[0]) for found in pending)
        check_counting_memory(corpus.name, context, len(merged[0]) + waiting)
        if waiting >= len(merged[0]):
            merged = sum_by_key([merged, *pending])
            pending = []
    if tally is not None:
        keys = np.flatnonzero(tally)
        return keys, tally[keys]
    return sum_by_key([merged, *pending]) if pending else merged


def _per_split(
    vocab: Vocab, context: int, n_words: dict[str, int], keys: np.ndarray, counts: np.ndarray
) -> NgramCounts:
    """NgramCounts of the summed ((context · V + next) · parts + part, count) pairs, sorted."""
    V, n_parts = len(vocab), len(n_words)
    # Not np.divmod: about 10x slower than a floor division and a multiply-subtract.
    cell = keys // n_parts
    part = keys - cell * n_parts
    context_key = cell // V
    token = cell - context_key * V
    del cell
    new_context = np.empty(len(keys), dtype=bool)
    new_context[:1] = True
    np.not_equal(context_key[1:], context_key[:-1], out=new_context[1:])
    # Index arrays and take, not boolean masks: several times faster in numpy.
    table = context_key.take(np.flatnonzero(new_context))
    rows = np.cumsum(new_context, dtype=np.int64)
    rows -= 1
    split_counts = {}
    for i, name in enumerate(n_words):
        mine = np.flatnonzero(part == i)
        index = np.empty((2, len(mine)), dtype=np.int64)
        rows.take(mine, out=index[0])
        token.take(mine, out=index[1])
        split_counts[name] = torch.sparse_coo_tensor(
            torch.from_numpy(index),
            torch.from_numpy(counts.take(mine)),
            (len(table), V),
            is_coalesced=True,
            check_invariants=False,
        )
    return NgramCounts(vocab, context, n_words, torch.from_numpy(table), split_counts)


def _unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_counts=True) of the 1-D int32 or int64 `keys`."""
    keys = sort_keys(keys)
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return keys.take(starts), np.diff(starts, append=len(keys))


def ngram_counts_of_words(
    parts: dict[str, list[str]], vocab: Vocab, context: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """(context keys (C,), N (C, V) per split) of words in memory: what count_ngrams gives."""
    V = len(vocab)
    check_context(context, V)
    events = {
        name: event_keys(_framed_ids(words, vocab), context, V) if words else None
        for name, words in parts.items()
    }
    every = [e[0] for e in events.values() if e is not None]
    table = np.unique(np.concatenate(every)) if every else np.zeros(0, dtype=np.int64)
    counts = {}
    for name, found in events.items():
        N = torch.zeros(len(table), V, dtype=torch.int64)
        if found is not None:
            rows = torch.from_numpy(np.searchsorted(table, found[0]))
            ones = torch.ones(len(rows), dtype=torch.int64)
            N.index_put_((rows, torch.from_numpy(found[1])), ones, accumulate=True)
        counts[name] = N
    return torch.from_numpy(table), counts


# Bytes per distinct n-gram while counting: its key and count (int64 each) as a piece finds them,
# again in the sorted merge of the pieces, and the copies all processes gather to merge.
BYTES_PER_GRAM = 48
# Bytes per word of the corpus, on every process: its split (int8) and its place in the seeded
# permutation that draws the splits (int32).
BYTES_PER_WORD = 5
# Bytes per event of the piece being counted: its id and part, its key, and the sort's keys and
# indices (a bound on what a count of `words` holds per event).
BYTES_PER_EVENT = 32
# Bytes per (context, token) entry of a training run (the counts are sparse): the counted model's
# P and its log in float64, and in float32 W, its gradient, the optimizer's state (L-BFGS keeps
# 2 x history_size = 40 copies) and the logits.
BYTES_PER_ENTRY = 2 * 8 + 44 * 4


def physical_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def counting_memory(n_words: int, piece_events: int, n_grams: int) -> int:
    """Bytes a process needs to count a corpus of `n_words` words, pieces of up to `piece_events`
    events, and `n_grams` distinct (n-gram, split) pairs."""
    return n_words * BYTES_PER_WORD + piece_events * BYTES_PER_EVENT + n_grams * BYTES_PER_GRAM


def heaps_estimate(half: int, whole: int, sampled: int, events: float) -> float:
    """Distinct n-grams in `events` events by Heaps' law d(n) = d(s) · (n / s)^β, β from a
    sample's first `sampled` events (`whole` distinct) and their first half (`half` distinct):
    β = log2(whole / half), within [0, 1] (0: the sample saw every n-gram there is; 1: each
    event brings a new one)."""
    beta = min(max(math.log2(whole / half), 0.0), 1.0) if half else 1.0
    return whole * (events / sampled) ** beta


def _sample_heaps(
    corpus: Corpus, vocab: Vocab, context: int, shard: Shard, clean: Sequence[bool]
) -> tuple[int, int, int]:
    """(distinct n-grams in the first half, in the whole, events) of the first piece of this
    shard's range; (0, 0, 0) where the range has no words."""
    ids = next(_pieces(corpus, vocab, shard, clean), None)
    if ids is None:
        return 0, 0, 0
    keys = gram_keys(ids, context, len(vocab))
    half = len(_unique_counts(keys[: len(keys) // 2])[0])
    return half, len(_unique_counts(keys)[0]), len(keys)


def check_memory_before_counting(
    corpus: Corpus,
    vocab: Vocab,
    context: int,
    fractions: Sequence[float],
    surveys: list[Survey],
    shard: Shard,
) -> None:
    """Raise UserError on every process, before the splits are drawn or anything is counted, where
    counting the corpus would need more than the machine's memory (counting_memory).

    The distinct (n-gram, split) pairs are at most one per event and V^(k+1) per split; where
    that bound fits, nothing more is done. Otherwise each process samples the first piece of its
    range and extrapolates by Heaps' law (heaps_estimate) to each split's share of the events;
    the largest estimate of the processes decides. An estimate can be low (a corpus whose start
    repeats more than the rest): check_counting_memory stops such a count before the merge that
    would pass memory."""
    n_words = sum(found.words for found in surveys)
    events = sum(found.events for found in surveys)
    piece_events = max(min(found.events, corpora.CHUNK_BYTES) for found in surveys)
    grams = len(vocab) ** (context + 1)
    bound = sum(min(math.ceil(events * f), grams) for f in fractions)
    memory = physical_memory()
    if counting_memory(n_words, piece_events, bound) <= memory:
        return
    sampled = shard.gather(_sample_heaps(corpus, vocab, context, shard, surveys[shard.rank].clean))
    estimates = [
        sum(min(heaps_estimate(half, whole, n, events * f), grams) for f in fractions)
        for half, whole, n in sampled
        if n
    ]
    n_grams = math.ceil(max(estimates, default=bound))
    needed = counting_memory(n_words, piece_events, n_grams)
    if needed > memory:
        first = max(n for _, _, n in sampled)
        raise UserError(
            f"counting {corpus.name} at model.context={context} needs more than this machine's "
            f"{format_bytes(memory)}: about {format_bytes(needed)} for the splits of "
            f"{n_words:,} words and about {n_grams:,} distinct n-grams (Heaps' law from the first "
            f"{first:,} events): use a shorter model.context or less data"
        )


def check_counting_memory(name: str, context: int, n_grams: int) -> None:
    """Raise UserError, before they are merged, where the `n_grams` distinct n-grams a process
    has found so far need more than the machine's memory (BYTES_PER_GRAM each)."""
    needed = n_grams * BYTES_PER_GRAM
    if needed > physical_memory():
        raise UserError(
            f"counting {name} at model.context={context} needs more than this machine's "
            f"{format_bytes(physical_memory())}: the {n_grams:,} distinct n-grams found before "
            f"the end of the file already need {format_bytes(needed)}: use a shorter "
            "model.context or less data"
        )


def check_training_memory(name: str, context: int, n_contexts: int, vocab_size: int) -> None:
    """Raise UserError, before training starts, where `n_contexts` contexts
    x V tokens need more than the machine's memory (BYTES_PER_ENTRY each)."""
    needed = n_contexts * vocab_size * BYTES_PER_ENTRY
    if needed > physical_memory():
        raise UserError(
            f"model.context={context} on {name} needs about {format_bytes(needed)} to train "
            f"({n_contexts:,} contexts x {vocab_size} tokens), more than this machine's "
            f"{format_bytes(physical_memory())}: use a shorter model.context or less data"
        )


def format_bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(int(math.log(max(n, 1), 1024)), len(units) - 1)
    return f"{n / 1024**power:.1f} {units[power]}"
