"""Counting: bigram counts N (V, V), N[x, y] = how often token y follows token x.

    bigram_counts(xs, ys, V)         N of given pairs (a mini-batch, a word list in memory)
    count_corpus(corpus, split, seed) vocabulary, words and N per split of a whole corpus, read in
                                     pieces so that memory does not grow with the corpus
    count_range_pairs(corpus, ...)   the same counting on one process's byte range, its
                                     vocabulary and split found by a survey of every range
    lowered_pieces(corpus, part, parts) the pieces of a byte range as counting reads them

Both count (context, next token) pairs; the context is one token here, and a longer context is a
change of the first axis (contexts instead of tokens), not of the engine's structure.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from bigramlab.data.corpora import BOUNDARY, Corpus, decode_words
from bigramlab.data.vocab import SPLITS, Vocab, split_assignment
from bigramlab.errors import UserError


def bigram_counts(xs: Tensor, ys: Tensor, vocab_size: int) -> Tensor:
    """N[i, j] = #{k : xs[k] = i and ys[k] = j}.  xs, ys: (n,) int64 -> N: (V, V) int64."""
    flat_index = xs * vocab_size + ys
    if flat_index.is_cuda:
        # torch.bincount on a GPU reads the largest index back to the host to size its output: a
        # sync every step. The size is known, so scatter-add into it instead.
        flat = torch.zeros(vocab_size * vocab_size, dtype=torch.int64, device=xs.device)
        flat.index_add_(0, flat_index, torch.ones_like(flat_index))
    else:
        flat = torch.bincount(flat_index, minlength=vocab_size * vocab_size)
    return flat.view(vocab_size, vocab_size)


class CorpusCounts(NamedTuple):
    """A corpus counted: its vocabulary, words per split and N (V, V) per split."""

    vocab: Vocab
    n_words: dict[str, int]
    counts: dict[str, Tensor]


# Full-batch training with the counts form needs only N per split: the corpus is read in pieces,
# never held whole. Pieces of clean ASCII (its lines are its words: no blank line, nothing strip()
# would remove, no `.`) are counted as byte pairs, the line end standing for the word boundary;
# other pieces are decoded line by line and counted as pairs of code points.
#
# Two passes. The first counts each clean piece's byte pairs whatever the split: two bincounts over
# the bytes seen as 16-bit integers (pairs at even, then at odd offsets), with no per-byte
# arithmetic; the same table says whether the piece is clean and how many words it holds. The
# split of a word depends on how many words there are, so the second pass, with the split known,
# counts only the pairs of the words outside the train split (a fifth, by default): train's counts
# are the whole's minus theirs.

# What str.strip() removes and the boundary: a clean ASCII piece has none of them.
NOT_CLEAN = [9, 11, 12, 13, 28, 29, 30, 31, 32, ord(BOUNDARY)]
NEWLINE = 10
_ASCII = 128


def framed_piece(chunk: bytes) -> bytearray:
    """A piece with a line end before it and, where missing, after it: every word then owns the
    pairs from the line end before it to the one after it."""
    framed = bytearray(b"\n")
    framed += chunk
    if not chunk.endswith(b"\n"):
        framed += b"\n"
    return framed


def _byte_pair_counts(framed: bytearray) -> Tensor:
    """N (128, 128) of the pairs of adjacent bytes of an ASCII byte string.

    Read as little-endian 16-bit integers from offset 0 and from offset 1, the string gives every
    pair (a, b) once, as a + 256·b; ASCII keeps these below 2**15, so they are valid int16.
    torch.frombuffer reads in the machine's byte order: callers check that it is little-endian.
    """
    n_pairs = len(framed) - 1
    table = torch.zeros(_ASCII * 256, dtype=torch.int64)
    for start in (0, 1):
        if count := (n_pairs - start + 1) // 2:
            half = torch.frombuffer(framed, dtype=torch.int16, offset=start, count=count)
            table += torch.bincount(half, minlength=_ASCII * 256)
    return table.view(_ASCII, 256)[:, :_ASCII].T  # [next, first] -> [first, next]


def clean_piece_pairs(chunk: bytes) -> tuple[Tensor, int] | None:
    """(N (128, 128), number of words) of a clean ASCII piece; None for any other piece (and on a
    big-endian machine, where the byte-pair view does not hold: every piece is decoded there)."""
    if not chunk.isascii() or sys.byteorder != "little":
        return None
    pairs = _byte_pair_counts(framed_piece(chunk))
    # Every byte but the framing line ends is the first of one pair and the second of another.
    if pairs[NOT_CLEAN].any() or pairs[:, NOT_CLEAN].any() or pairs[NEWLINE, NEWLINE]:
        return None
    return pairs, int(pairs[NEWLINE].sum())


def _word_pair_counts(symbols: np.ndarray, bounds: np.ndarray, words: np.ndarray) -> Tensor:
    """N (128, 128) of the pairs of some words of a framed clean piece (its bytes `symbols`, its
    line ends at `bounds`): `words` are their indices. Word j's pairs start at bounds[j], ...,
    bounds[j + 1] - 1."""
    starts = bounds[words]
    lengths = bounds[words + 1] - starts
    offsets = np.cumsum(lengths) - lengths
    first = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
    codes = torch.from_numpy(symbols[first].astype(np.int16))
    codes *= _ASCII
    codes += torch.from_numpy(symbols[first + 1])
    return torch.bincount(codes, minlength=_ASCII * _ASCII).view(_ASCII, _ASCII)


def _line_ends(chunk: bytes, clean_words: int | None) -> int:
    """Line ends in a piece (for the line numbers of error messages). A clean piece has one per
    word, less one where its last line has none: known without reading it again."""
    if clean_words is None:
        return chunk.count(b"\n")
    return clean_words - (not chunk.endswith(b"\n"))


def _decoded_pairs(
    words: list[str], word_parts: np.ndarray, pairs: dict[tuple[int, int, int], int]
) -> None:
    """Add the code-point pairs of decoded words to `pairs`: (part, code point, next) -> count."""
    text = BOUNDARY + BOUNDARY.join(words) + BOUNDARY
    symbols = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    bounds = np.flatnonzero(symbols == ord(BOUNDARY))
    # The piece's K distinct code points numbered 0..K-1 by a table over Unicode (no sort), and
    # each pair as one integer (part · K + x) · K + y: counted by bincount, or where K is large
    # by a 1-D unique: never a sort of rows of three.
    present = np.zeros(0x110000, dtype=bool)
    present[symbols] = True
    chars = np.flatnonzero(present)
    K = len(chars)
    ids = np.zeros(0x110000, dtype=np.int32)
    ids[chars] = np.arange(K)
    keys = np.repeat(word_parts.astype(np.int64), np.diff(bounds))
    keys *= K
    keys += ids[symbols[:-1]]
    keys *= K
    keys += ids[symbols[1:]]
    bins = (int(word_parts.max()) + 1) * K * K
    if bins <= 1 << 22:
        counts = np.bincount(keys, minlength=bins)
        found = np.flatnonzero(counts)
        counts = counts[found]
    else:
        found, counts = np.unique(keys, return_counts=True)
    part, pair = np.divmod(found, K * K)
    x, y = np.divmod(pair, K)
    for p, a, b, n in zip(part.tolist(), chars[x].tolist(), chars[y].tolist(), counts.tolist()):
        pairs[p, a, b] = pairs.get((p, a, b), 0) + n


def lowered_pieces(corpus: Corpus, part: int = 0, parts: int = 1) -> Iterator[bytes]:
    """The pieces of byte range `part` of `parts` (Corpus.byte_chunks), ASCII ones lower-cased
    where the corpus asks for it (the others are lower-cased as they are decoded)."""
    for chunk in corpus.byte_chunks(part, parts):
        yield chunk.lower() if corpus.lowercase and chunk.isascii() else chunk


def _move_to_parts(
    pieces: Iterable[bytes],
    clean: Sequence[bool],
    word_parts: np.ndarray,
    byte_pairs: Tensor,
    corpus: Corpus,
) -> dict[tuple[int, int, int], int]:
    """The second pass of a count, with every word's part known (`word_parts`, one a word of the
    pieces): the byte pairs of the clean pieces' words outside part 0 are moved from
    byte_pairs[0] (which holds all of those pieces' pairs) to their part, byte_pairs (parts, 128,
    128) in place; the other pieces are decoded. Returns their (part, code point, next) counts."""
    codepoint_pairs: dict[tuple[int, int, int], int] = {}
    first, line = 0, 1
    for chunk, is_clean in zip(pieces, clean, strict=True):
        if is_clean:
            symbols = np.frombuffer(framed_piece(chunk), dtype=np.uint8)
            bounds = np.flatnonzero(symbols == NEWLINE)
            k = len(bounds) - 1
            mine = word_parts[first : first + k]
            for part in range(1, byte_pairs.shape[0]):
                words = np.flatnonzero(mine == part)
                if len(words):
                    moved = _word_pair_counts(symbols, bounds, words)
                    byte_pairs[part] += moved
                    byte_pairs[0] -= moved
        else:
            words = decode_words(chunk, corpus.name, line, corpus.lowercase)
            k = len(words)
            if k:  # a piece of blank lines alone has no words
                _decoded_pairs(words, word_parts[first : first + k], codepoint_pairs)
        first += k
        line += _line_ends(chunk, k if is_clean else None)
    return codepoint_pairs


def _used_bytes(byte_pairs: Tensor) -> Tensor:
    """The bytes that occur in any pair of byte_pairs (parts, 128, 128), ascending."""
    return torch.nonzero(byte_pairs.sum(dim=(0, 2)) + byte_pairs.sum(dim=(0, 1)))[:, 0]


def _in_vocab(
    byte_pairs: Tensor, codepoint_pairs: dict[tuple[int, int, int], int], vocab: Vocab
) -> Tensor:
    """N (parts, V, V) of byte pairs (parts, 128, 128) and code-point pairs {(part, code point,
    next): count}, the line end read as the boundary `.`."""
    stoi = vocab.stoi
    V = len(vocab)
    counts = torch.zeros(byte_pairs.shape[0], V, V, dtype=torch.int64)
    used_bytes = _used_bytes(byte_pairs)
    byte_ids = torch.tensor(
        [0 if b == NEWLINE else stoi[chr(b)] for b in used_bytes.tolist()], dtype=torch.long
    )
    used = byte_pairs[:, used_bytes][:, :, used_bytes]
    counts[:, byte_ids[:, None], byte_ids[None, :]] += used
    for (p, x, y), count in codepoint_pairs.items():
        counts[p, stoi[chr(x)], stoi[chr(y)]] += count
    return counts


def count_range_pairs(
    corpus: Corpus,
    vocab: Vocab,
    word_parts: np.ndarray,
    n_parts: int,
    shard_rank: int,
    world_size: int,
    clean: Sequence[bool],
    clean_pairs: Tensor,
) -> Tensor:
    """N (n_parts, V, V) of the words of one process's byte range of a corpus (range
    `shard_rank` of `world_size`, Corpus.byte_chunks): count_corpus's counting on a range whose
    vocabulary (`vocab`), words' parts (`word_parts`, one a word of the range), clean pieces
    (`clean`) and the byte pairs of those, whatever the split (`clean_pairs` (128, 128)), a survey
    of every range has found (bigramlab.counting.ngrams.survey): the pairs of the clean pieces'
    words outside part 0 are moved to their part; the other pieces are decoded."""
    byte_pairs = torch.zeros(n_parts, _ASCII, _ASCII, dtype=torch.int64)
    byte_pairs[0] = clean_pairs
    pieces = lowered_pieces(corpus, shard_rank, world_size)
    codepoint_pairs = _move_to_parts(pieces, clean, word_parts, byte_pairs, corpus)
    return _in_vocab(byte_pairs, codepoint_pairs, vocab)


def count_corpus(
    corpus: Corpus, fractions: Sequence[float], seed: int, rule: str = "randperm"
) -> CorpusCounts:
    """Vocabulary, words per split and N (V, V) per split of a corpus, read in pieces; the split
    by bigramlab.data.vocab.split_assignment (fractions, seed, rule).

    Equal to encoding the whole corpus at once (bigram_pairs of split_words) with memory that does
    not grow with the corpus: O(V²) for the counts, one piece, and one byte per word.
    """
    lowercase = corpus.lowercase
    parts = len(fractions)
    # Pass 1: words per piece; the byte pairs of the clean pieces.
    byte_pairs = torch.zeros(parts, _ASCII, _ASCII, dtype=torch.int64)  # [part, byte, next byte]
    n_words = 0
    clean: list[bool] = []
    line = 1
    for chunk in lowered_pieces(corpus):
        found = clean_piece_pairs(chunk)
        if found is not None:
            byte_pairs[0] += found[0]
            k = found[1]
        else:
            k = len(decode_words(chunk, corpus.name, line, lowercase))
        n_words += k
        clean.append(found is not None)
        line += _line_ends(chunk, k if found is not None else None)
    if n_words == 0:
        raise UserError(f"{corpus.name} has no words (it is empty or only blank lines)")

    # Pass 2: with the split known, move the pairs of words outside train to their part.
    assignment = split_assignment(n_words, fractions, seed, rule)
    codepoint_pairs = _move_to_parts(lowered_pieces(corpus), clean, assignment, byte_pairs, corpus)

    used_bytes = _used_bytes(byte_pairs)
    chars = {chr(b) for b in used_bytes.tolist() if b != NEWLINE}
    chars |= {chr(c) for _, x, y in codepoint_pairs for c in (x, y) if c != ord(BOUNDARY)}
    vocab = Vocab.from_chars(chars)
    counts = _in_vocab(byte_pairs, codepoint_pairs, vocab)
    # Not np.bincount: it would copy the assignment to 8 bytes a word.
    n_per_split = [int(np.count_nonzero(assignment == part)) for part in range(parts)]
    return CorpusCounts(
        vocab,
        dict(zip(SPLITS, n_per_split)),
        {name: counts[i].clone() for i, name in enumerate(SPLITS)},
    )
