"""Data: corpus -> vocabulary -> bigram pairs and counts -> train/val/test splits.

A corpus is a list of words (names, dictionary words, lines of a file). Each word is wrapped in the
boundary token `.` on both sides, so "emma" gives the bigrams .e em mm ma a. ; the vocabulary is
`.` at index 0 followed by the sorted characters of the corpus.

Two ways to the same counts: in memory (words -> pairs xs, ys -> N), which mini-batches and the
pair-based loss forms need, and in pieces (count_corpus), which full-batch training with the counts
form uses so that memory does not grow with the corpus.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler

from bigramlab.counting import bigram_counts
from bigramlab.download import fetch
from bigramlab.errors import UserError

BOUNDARY = "."
SPLITS = ("train", "val", "test")
CHUNK_BYTES = 1 << 23  # corpora are counted in pieces of 8 MiB: memory stays O(V²), not O(corpus)


# --- corpora --------------------------------------------------------------------------------------
# Frozen dataclasses: a corpus is its config, hashable, and `load()` reads it.


@functools.cache
def _english_words() -> tuple[str, ...]:
    """Read once per process: counting reads a corpus twice, and sweeps train on it again."""
    from english_words import get_english_words_set

    # A set has no stable order across processes; sort so splits are reproducible.
    return tuple(sorted(get_english_words_set(["web2"], lower=True, alpha=True)))


@dataclass(frozen=True)
class EnglishWords:
    """The web2 word list of the `english-words` package: lowercase, alphabetic, ~234k words."""

    name: str = "words"

    def load(self) -> list[str]:
        return list(_english_words())

    def byte_chunks(self) -> Iterator[bytes]:
        yield ("\n".join(self.load()) + "\n").encode()


@dataclass(frozen=True)
class Names:
    """makemore's names.txt, downloaded once into `cache_dir` and verified against `sha256`."""

    url: str
    sha256: str
    cache_dir: str
    filename: str = "names.txt"
    name: str = "names"

    def path(self) -> Path:
        return fetch(self.url, Path(self.cache_dir) / self.filename, self.sha256)

    def load(self) -> list[str]:
        return read_lines(self.path())

    def byte_chunks(self) -> Iterator[bytes]:
        return read_chunks(self.path())


@dataclass(frozen=True)
class TextFile:
    """Any UTF-8 text file, one word (or name, or line) a line."""

    path: str
    lowercase: bool = False
    name: str = "text_file"

    def load(self) -> list[str]:
        return read_lines(Path(self.path), lowercase=self.lowercase)

    def byte_chunks(self) -> Iterator[bytes]:
        return read_chunks(Path(self.path))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"data file {path} does not exist: check dataset.path")
    if not path.is_file():
        raise UserError(f"data path {path} is not a file: point dataset.path at a text file")


def read_lines(path: Path, lowercase: bool = False) -> list[str]:
    """The non-blank lines of a UTF-8 file, stripped of surrounding whitespace (`\\r` included)."""
    _check_file(path)
    words = decode_words(path.read_bytes(), path, first_line=1, lowercase=lowercase)
    if not words:
        raise UserError(f"{path} has no words (it is empty or only blank lines)")
    return words


def decode_words(raw: bytes, source: Path | str, first_line: int, lowercase: bool) -> list[str]:
    """The words of `raw`, whole lines of UTF-8 text, the first of them line `first_line`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1)
        raise UserError(
            f"{source} line {line} is not valid UTF-8 ({e.reason} at byte {column} of the line): "
            "convert the file to UTF-8"
        ) from None
    if lowercase:
        text = text.lower()  # no character lowercases to whitespace or to the boundary token
    if (at := text.find(BOUNDARY)) >= 0:
        line = first_line + text.count("\n", 0, at)
        raise UserError(
            f"{source} line {line} contains '{BOUNDARY}', the word-boundary token: "
            "remove it from the data"
        )
    return [word for word in map(str.strip, text.split("\n")) if word]


def read_chunks(path: Path) -> Iterator[bytes]:
    """The file in pieces of about CHUNK_BYTES, each ending at a line end (or the file's end)."""
    _check_file(path)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk + f.readline()


# --- vocabulary and encoding ----------------------------------------------------------------------


@dataclass(frozen=True)
class Vocab:
    """itos: the tokens in index order, `.` first.  stoi is its inverse."""

    itos: str

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Vocab:
        return cls(BOUNDARY + "".join(sorted(set("".join(words)))))

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def stoi(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.itos)}

    def encode_words(self, words: Sequence[str]) -> Tensor:
        """The token ids of `.w1.w2. ... .wn.`: (Σ(len(w) + 1) + 1,) int64.

        Consecutive pairs of this sequence are exactly the bigrams of every word wrapped in `.`,
        because the `.` closing one word also opens the next. Vectorised: one pass through numpy.
        """
        text = BOUNDARY + BOUNDARY.join(words) + BOUNDARY
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        vocab_codepoints = np.frombuffer(self.itos.encode("utf-32-le"), dtype=np.uint32)
        order = np.argsort(vocab_codepoints)
        sorted_codepoints = vocab_codepoints[order]
        pos = np.searchsorted(sorted_codepoints, codepoints).clip(max=len(self) - 1)
        unknown = sorted_codepoints[pos] != codepoints
        if unknown.any():
            ch = chr(int(codepoints[np.argmax(unknown)]))
            word = next(w for w in words if ch in w)
            raise UserError(
                f"character {ch!r} (in {word!r}) is not in the vocabulary {self.itos!r}: "
                "use data (or a checkpoint) whose vocabulary has it"
            )
        return torch.from_numpy(order[pos].astype(np.int64))


def bigram_pairs(words: Sequence[str], vocab: Vocab) -> tuple[Tensor, Tensor]:
    """xs, ys: (n,) int64, every bigram of every word in corpus order (the lecture's xs, ys)."""
    ids = vocab.encode_words(words)
    return ids[:-1], ids[1:]


def split_assignment(n: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Which part each of n words goes to: (n,) int8 in [0, len(fractions)), by a seeded shuffle.

    The first round(n · f0) words of a seeded permutation go to part 0, and so on; the last part
    takes the rest.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    cuts = [round(n * c) for c in itertools.accumulate(fractions)]
    cuts[-1] = n
    assignment = np.empty(n, dtype=np.int8)
    for part, (lo, hi) in enumerate(zip([0, *cuts[:-1]], cuts)):
        assignment[perm[lo:hi]] = part
    return assignment


def split_words(
    words: Sequence[str], fractions: Sequence[float], seed: int
) -> tuple[list[str], ...]:
    """Split by word (never inside a word) into len(fractions) disjoint parts, by a seeded shuffle.

    Each part keeps the corpus order of its words, so a [1, 0, 0] split is the corpus as it is.
    """
    assignment = split_assignment(len(words), fractions, seed).tolist()
    return tuple(
        [w for w, a in zip(words, assignment) if a == part] for part in range(len(fractions))
    )


# --- counting a corpus in pieces ------------------------------------------------------------------
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
_NOT_CLEAN = [9, 11, 12, 13, 28, 29, 30, 31, 32, ord(BOUNDARY)]
_NEWLINE = 10
_ASCII = 128


def corpus_name(corpus: EnglishWords | Names | TextFile) -> str:
    """How messages name a corpus: its file, or its data set's name."""
    return corpus.path if isinstance(corpus, TextFile) else corpus.name


def _framed(chunk: bytes) -> bytearray:
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


def _clean_pairs(chunk: bytes) -> tuple[Tensor, int] | None:
    """(N (128, 128), number of words) of a clean ASCII piece; None for any other piece (and on a
    big-endian machine, where the byte-pair view does not hold: every piece is decoded there)."""
    if not chunk.isascii() or sys.byteorder != "little":
        return None
    pairs = _byte_pair_counts(_framed(chunk))
    # Every byte but the framing line ends is the first of one pair and the second of another.
    if pairs[_NOT_CLEAN].any() or pairs[:, _NOT_CLEAN].any() or pairs[_NEWLINE, _NEWLINE]:
        return None
    return pairs, int(pairs[_NEWLINE].sum())


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
    # by a 1-D unique (a sort of rows of three was 15 s for 10 MB).
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


def count_corpus(
    corpus: EnglishWords | Names | TextFile, fractions: Sequence[float], seed: int
) -> tuple[Vocab, dict[str, int], dict[str, Tensor]]:
    """Vocabulary, words per split and N (V, V) per split of a corpus, read in pieces.

    Equal to encoding the whole corpus at once (bigram_pairs of split_words) with memory that does
    not grow with the corpus: O(V²) for the counts, one piece, and one byte per word.
    """
    lowercase = getattr(corpus, "lowercase", False)
    parts = len(fractions)

    def pieces() -> Iterator[bytes]:
        for chunk in corpus.byte_chunks():
            yield chunk.lower() if lowercase and chunk.isascii() else chunk

    # Pass 1: words per piece; the byte pairs of the clean pieces.
    byte_pairs = torch.zeros(parts, _ASCII, _ASCII, dtype=torch.int64)  # [part, byte, next byte]
    sizes: list[int] = []
    clean: list[bool] = []
    line = 1
    for chunk in pieces():
        found = _clean_pairs(chunk)
        if found is not None:
            byte_pairs[0] += found[0]
            sizes.append(found[1])
        else:
            sizes.append(len(decode_words(chunk, corpus_name(corpus), line, lowercase)))
        clean.append(found is not None)
        line += _line_ends(chunk, sizes[-1] if found is not None else None)
    n_words = sum(sizes)
    if n_words == 0:
        raise UserError(f"{corpus_name(corpus)} has no words (it is empty or only blank lines)")

    # Pass 2: with the split known, move the pairs of words outside train to their part.
    assignment = split_assignment(n_words, fractions, seed)
    codepoint_pairs: dict[tuple[int, int, int], int] = {}  # (part, code point, next) -> count
    first, line = 0, 1
    for chunk, k, is_clean in zip(pieces(), sizes, clean):
        word_parts = assignment[first : first + k]
        first += k
        if is_clean:
            symbols = np.frombuffer(_framed(chunk), dtype=np.uint8)
            bounds = np.flatnonzero(symbols == _NEWLINE)
            for part in range(1, parts):
                words = np.flatnonzero(word_parts == part)
                if len(words):
                    moved = _word_pair_counts(symbols, bounds, words)
                    byte_pairs[part] += moved
                    byte_pairs[0] -= moved
        elif k:  # a piece of blank lines alone has no words
            words = decode_words(chunk, corpus_name(corpus), line, lowercase)
            _decoded_pairs(words, word_parts, codepoint_pairs)
        line += _line_ends(chunk, k if is_clean else None)

    used_bytes = torch.nonzero(byte_pairs.sum(dim=(0, 2)) + byte_pairs.sum(dim=(0, 1)))[:, 0]
    chars = {chr(b) for b in used_bytes.tolist() if b != _NEWLINE}
    chars |= {chr(c) for _, x, y in codepoint_pairs for c in (x, y) if c != ord(BOUNDARY)}
    vocab = Vocab(BOUNDARY + "".join(sorted(chars)))
    stoi = vocab.stoi
    V = len(vocab)
    counts = torch.zeros(parts, V, V, dtype=torch.int64)
    byte_ids = torch.tensor(
        [0 if b == _NEWLINE else stoi[chr(b)] for b in used_bytes.tolist()], dtype=torch.long
    )
    used = byte_pairs[:, used_bytes][:, :, used_bytes]
    counts[:, byte_ids[:, None], byte_ids[None, :]] += used
    for (p, x, y), count in codepoint_pairs.items():
        counts[p, stoi[chr(x)], stoi[chr(y)]] += count
    # Not np.bincount: it would copy the assignment to 8 bytes a word.
    n_per_split = [int(np.count_nonzero(assignment == part)) for part in range(parts)]
    return (
        vocab,
        {name: n for name, n in zip(SPLITS, n_per_split)},
        {name: counts[i].clone() for i, name in enumerate(SPLITS)},
    )


# --- Lightning data module ------------------------------------------------------------------------


class CountsBatch(NamedTuple):
    """A batch as its bigram counts: `counts` (V, V), this process's share; `total` (int), the
    number of bigrams in the whole batch, over all processes (what the mean NLL divides by)."""

    counts: Tensor
    total: int


class PairsBatch(NamedTuple):
    """A batch as bigram pairs: `xs`, `ys` (n,), this process's share; `total` as in CountsBatch."""

    xs: Tensor
    ys: Tensor
    total: int


def shard_counts(counts: Tensor, rank: int, world_size: int) -> Tensor:
    """Process `rank`'s share of bigram counts (..., V, V): the bigrams whose first token x has
    x % world_size == rank, zeros elsewhere. The shares sum to `counts`; they are unequal."""
    rows = torch.arange(counts.shape[-2]) % world_size == rank
    return counts * rows[:, None].to(counts.dtype)


class RepeatBatch(IterableDataset):
    """The same batch forever: full-batch gradient descent."""

    def __init__(self, batch: CountsBatch | PairsBatch) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[CountsBatch | PairsBatch]:
        while True:
            yield self.batch


class PairBatches(Dataset):
    """Mini-batches of bigram pairs, indexed by a whole batch of indices at once (no per-sample
    collate). Each of `world_size` processes takes its contiguous part of every batch, so that the
    processes together see exactly the batches one process would see."""

    def __init__(self, xs: Tensor, ys: Tensor, rank: int = 0, world_size: int = 1) -> None:
        self.xs, self.ys = xs, ys
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, index: list[int]) -> PairsBatch:
        part = torch.as_tensor(index).tensor_split(self.world_size)[self.rank]
        return PairsBatch(self.xs[part], self.ys[part], len(index))


@dataclass(frozen=True)
class BigramData:
    """Everything training needs from a corpus: vocabulary, words, counts (V, V) per split, and the
    training pairs (xs, ys) when mini-batches or a pair-based loss need them."""

    vocab: Vocab
    n_words: dict[str, int]
    counts: dict[str, Tensor]
    train_pairs: tuple[Tensor, Tensor] | None


def _file_stamp(corpus: EnglishWords | Names | TextFile) -> tuple[int, int] | None:
    """(mtime, size) of a text file, so that a file edited between two jobs is read again."""
    if isinstance(corpus, TextFile) and Path(corpus.path).is_file():
        stat = Path(corpus.path).stat()
        return stat.st_mtime_ns, stat.st_size
    return None


@functools.lru_cache(maxsize=4)
def _cached_bigram_data(
    corpus: EnglishWords | Names | TextFile,
    stamp: tuple[int, int] | None,
    split: tuple[float, ...],
    split_seed: int,
    with_pairs: bool,
) -> BigramData:
    train_pairs = None
    if not with_pairs:
        vocab, n_words, counts = count_corpus(corpus, split, split_seed)
    else:
        words = corpus.load()
        vocab = Vocab.from_words(words)
        parts = dict(zip(SPLITS, split_words(words, split, split_seed)))
        n_words = {name: len(part) for name, part in parts.items()}
        V = len(vocab)
        counts = {name: torch.zeros(V, V, dtype=torch.int64) for name in SPLITS}
        for name, part in parts.items():
            if part:
                xs, ys = bigram_pairs(part, vocab)
                counts[name] = bigram_counts(xs, ys, V)
                if name == "train":
                    train_pairs = (xs, ys)
    if n_words["train"] == 0:
        raise UserError(
            f"the train split is empty ({sum(n_words.values())} words, split {list(split)}): "
            "use more data or a larger train fraction in data.split"
        )
    return BigramData(vocab, n_words, counts, train_pairs)


def bigram_data(
    corpus: EnglishWords | Names | TextFile,
    split: Sequence[float],
    split_seed: int,
    with_pairs: bool,
) -> BigramData:
    """Read, split and count a corpus, once per process for each data config.

    The jobs of a sweep in one process (Hydra's basic launcher, Optuna) share the result instead
    of reading and counting the corpus again; nothing in it is ever modified.
    """
    split = tuple(float(f) for f in split)
    return _cached_bigram_data(corpus, _file_stamp(corpus), split, split_seed, with_pairs)


class BigramDataModule(L.LightningDataModule):
    """Bigram data of one corpus, split by word.

    Training batches: with `batch_size=None` (full batch) every step sees the whole training split,
    as a CountsBatch when `batch_format="counts"`, else as a PairsBatch; with a number, shuffled
    mini-batches (PairsBatch) of B pairs. Validation batch: {split: (V, V) counts} for every
    non-empty split, so metrics are exact. Under DDP each process gets its share of every batch.
    """

    def __init__(
        self,
        corpus: EnglishWords | Names | TextFile,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 42,
        batch_size: int | None = None,
        shuffle_seed: int = 0,
        batch_format: str = "counts",
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.split = tuple(split)
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        self.batch_format = batch_format
        self.vocab: Vocab | None = None
        self.n_words: dict[str, int] = {}
        self.counts: dict[str, Tensor] = {}
        self.train_pairs: tuple[Tensor, Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.vocab is not None:
            return
        with_pairs = self.batch_size is not None or self.batch_format == "pairs"
        data = bigram_data(self.corpus, self.split, self.split_seed, with_pairs)
        self.vocab, self.n_words, self.counts = data.vocab, data.n_words, data.counts
        self.train_pairs = data.train_pairs

    def _process(self) -> tuple[int, int, torch.device]:
        """(rank, world size, device) of this process in the trainer; (0, 1, cpu) without one."""
        if self.trainer is None:
            return 0, 1, torch.device("cpu")
        return self.trainer.global_rank, self.trainer.world_size, self.trainer.strategy.root_device

    def train_dataloader(self) -> DataLoader:
        """Full batch: this process's share, moved to its device once (not again every step).
        Mini-batches: every process shuffles with the same seed and takes its part of each batch;
        Lightning's DistributedSampler is not used (`use_distributed_sampler: false`), as it pads
        unequal shards with repeated pairs and would not see the one-process batches."""
        rank, world_size, device = self._process()
        if self.batch_size is None:
            counts = self.counts["train"]
            total = int(counts.sum())
            if self.batch_format == "counts":
                batch = CountsBatch(shard_counts(counts, rank, world_size).to(device), total)
            else:
                xs, ys = (t.tensor_split(world_size)[rank].to(device) for t in self.train_pairs)
                batch = PairsBatch(xs, ys, total)
            return DataLoader(RepeatBatch(batch), batch_size=None)
        xs, ys = self.train_pairs
        shuffle = torch.Generator().manual_seed(self.shuffle_seed)
        sampler = BatchSampler(
            RandomSampler(range(len(xs)), generator=shuffle), self.batch_size, drop_last=False
        )
        return DataLoader(PairBatches(xs, ys, rank, world_size), sampler=sampler, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        """One batch {split: (V, V) counts, this process's share} of every non-empty split."""
        rank, world_size, _ = self._process()
        shares = {
            name: shard_counts(c, rank, world_size) for name, c in self.counts.items() if c.any()
        }
        return DataLoader([shares], batch_size=None)
