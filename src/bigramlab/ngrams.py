"""Contexts of k tokens: their integer keys, and the (k+1)-gram counts of a corpus, per split.

A word is predicted one token at a time from the k tokens before it, the word wrapped in `.` as
for bigrams and padded on the left with `.` so that every token has a full context: with k = 3,
"emma" gives the events ... -> e, ..e -> m, .em -> m, emm -> a, mma -> . ; k = 1 is the bigram.

A context c_1 … c_k (c_k the most recent token) is the integer

    key = c_k + c_{k-1}·V + … + c_1·V^(k-1)

so that key % V^j is the key of its last j tokens (its suffix of length j): Kneser–Ney's lower
orders and the interpolated features group contexts by these suffixes with integer arithmetic.

    NgramCounts        vocabulary, the contexts seen in any split (their keys, sorted) and the
                       counts N (C, V) per split: N[c, y] = how often token y follows context c
    count_ngrams       NgramCounts of a corpus, read in pieces (memory grows with the distinct
                       n-grams, not with the corpus); order 1 is bigramlab.counting's bigram count
    event_keys         the (context key, next token) of every token of some words
    suffix_keys        the keys of the last j tokens of contexts
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from bigramlab.corpora import Corpus, decode_words
from bigramlab.counting import count_corpus
from bigramlab.errors import UserError
from bigramlab.vocab import SPLITS, Vocab, split_assignment

MAX_KEY = 2**62  # the keys of (part, context, next) are int64


def check_order(order: int, vocab_size: int) -> None:
    """Raise UserError unless (context, next token) keys of this order fit in 64 bits."""
    if 3 * vocab_size ** (order + 1) >= MAX_KEY:
        largest = max(k for k in range(1, 64) if 3 * vocab_size ** (k + 1) < MAX_KEY)
        raise UserError(
            f"model.context={order} is too long for a vocabulary of {vocab_size} tokens "
            f"({vocab_size}^{order + 1} n-grams do not fit a 64-bit key): use model.context <= "
            f"{largest}"
        )


def suffix_keys(keys: Tensor | np.ndarray, length: int, vocab_size: int) -> Tensor | np.ndarray:
    """The keys of the last `length` tokens of contexts `keys` (0 for length 0)."""
    return keys % vocab_size**length


def context_tokens(keys: Tensor, order: int, vocab_size: int) -> Tensor:
    """The tokens of contexts: keys (C,) -> (C, k) int64, the oldest token first."""
    powers = vocab_size ** torch.arange(order - 1, -1, -1, dtype=torch.int64)
    return keys[:, None] // powers % vocab_size


def next_keys(keys: Tensor, tokens: Tensor, order: int, vocab_size: int) -> Tensor:
    """The context after `tokens` (n,) follow contexts `keys` (n,): the oldest token drops out."""
    return keys % vocab_size ** (order - 1) * vocab_size + tokens


def event_keys(ids: np.ndarray, order: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(context keys, next tokens) of every event of a framed sequence `.w1.w2. … .wn.` of token
    ids (0 = `.`): ids (L,) -> two (L - 1,) int64, the event of ids[p] at p - 1."""
    ids = ids.astype(np.int64)
    positions = np.arange(1, len(ids))
    # The `.` opening the word of the token at p: the last boundary before p.
    boundary = np.where(ids == 0, np.arange(len(ids)), 0)
    opening = np.maximum.accumulate(boundary)[positions - 1]
    keys = np.zeros(len(positions), dtype=np.int64)
    scale = 1
    for back in range(1, order + 1):
        before = positions - back
        token = np.where(before > opening, ids[np.maximum(before, 0)], 0)
        keys += token * scale
        scale *= vocab_size
    return keys, ids[1:]


class NgramCounts(NamedTuple):
    """A corpus counted at one order: its vocabulary, words per split, the contexts seen in any
    split (their keys (C,), sorted) and N (C, V) int64 per split."""

    vocab: Vocab
    order: int
    n_words: dict[str, int]
    contexts: Tensor
    counts: dict[str, Tensor]


def _framed_ids(words: list[str], vocab: Vocab) -> np.ndarray:
    return vocab.encode_words(words).numpy()


def _pieces(corpus: Corpus) -> Iterator[list[str]]:
    line = 1
    lowercase = corpus.lowercase
    for chunk in corpus.byte_chunks():
        yield decode_words(chunk, corpus.name, line, lowercase)
        line += chunk.count(b"\n")


def count_ngrams(
    corpus: Corpus,
    order: int,
    fractions: Sequence[float],
    seed: int,
    rule: str = "randperm",
) -> NgramCounts:
    """The (order + 1)-gram counts of a corpus per split, split as bigramlab.counting.count_corpus
    does (the same words in the same parts), read in pieces.

    Order 1 is count_corpus itself (contexts = every token). Higher orders read the corpus again:
    each piece's events become keys (part, context, next) counted with np.unique, merged as they
    come, so memory holds the distinct n-grams and one piece, never the corpus.
    """
    counted = count_corpus(corpus, fractions, seed, rule)
    vocab, V = counted.vocab, len(counted.vocab)
    if order == 1:
        return NgramCounts(vocab, 1, counted.n_words, torch.arange(V), counted.counts)
    check_order(order, V)
    events = sum(int(N.sum()) for N in counted.counts.values())
    check_memory(corpus.name, order, V, min(V**order, events))
    n_words = sum(counted.n_words.values())
    assignment = split_assignment(n_words, fractions, seed, rule)
    grams = V ** (order + 1)
    found_keys: list[np.ndarray] = []
    found_counts: list[np.ndarray] = []
    first = 0
    for words in _pieces(corpus):
        if not words:
            continue
        parts = assignment[first : first + len(words)].astype(np.int64)
        first += len(words)
        ids = _framed_ids(words, vocab)
        contexts, tokens = event_keys(ids, order, V)
        # The part of each event: the words' events are len(word) + 1 in a row.
        lengths = np.fromiter((len(w) + 1 for w in words), dtype=np.int64, count=len(words))
        keys = np.repeat(parts, lengths) * grams + contexts * V + tokens
        unique, counts = np.unique(keys, return_counts=True)
        found_keys.append(unique)
        found_counts.append(counts)
    keys, inverse = np.unique(np.concatenate(found_keys), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(found_counts)).astype(np.int64)
    part, gram = np.divmod(keys, grams)
    context, token = np.divmod(gram, V)
    table, rows = np.unique(context, return_inverse=True)
    N = torch.zeros(len(fractions), len(table), V, dtype=torch.int64)
    N[torch.from_numpy(part), torch.from_numpy(rows), torch.from_numpy(token)] = torch.from_numpy(
        counts
    )
    return NgramCounts(
        vocab,
        order,
        counted.n_words,
        torch.from_numpy(table),
        {name: N[i].clone() for i, name in enumerate(SPLITS)},
    )


def ngram_counts_of_words(
    parts: dict[str, list[str]], vocab: Vocab, order: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """(context keys (C,), N (C, V) per split) of words in memory: what count_ngrams gives."""
    V = len(vocab)
    check_order(order, V)
    events = {
        name: event_keys(_framed_ids(words, vocab), order, V) if words else None
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


# Bytes per (context, token) entry of a run: the int64 counts of three splits, and in float32 W,
# its gradient, the optimizer's state (L-BFGS keeps 2 x history_size = 40 copies) and the logits.
BYTES_PER_ENTRY = 3 * 8 + 44 * 4


def physical_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(name: str, order: int, vocab_size: int, max_contexts: int) -> None:
    """Raise UserError, before counting, where a run on up to `max_contexts` contexts (at most V^k,
    at most one an event) could need more than the machine's memory."""
    needed = max_contexts * vocab_size * BYTES_PER_ENTRY
    if needed > physical_memory():
        raise UserError(
            f"model.context={order} on {name} may need up to {format_bytes(needed)} (up to "
            f"{max_contexts:,} contexts x {vocab_size} tokens), more than this machine's "
            f"{format_bytes(physical_memory())}: use a shorter model.context or less data"
        )


def format_bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(int(math.log(max(n, 1), 1024)), len(units) - 1)
    return f"{n / 1024**power:.1f} {units[power]}"
