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
    words = []
    for number, line in enumerate(text.split("\n"), start=first_line):
        word = line.strip()
        if not word:
            continue
        if BOUNDARY in word:
            raise UserError(
                f"{source} line {number} contains '{BOUNDARY}', the word-boundary token: "
                "remove it from the data"
            )
        words.append(word.lower() if lowercase else word)
    return words


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
# never held whole. A first, cheap pass counts the words (the split of a word depends on how many
# there are); the second counts bigrams. Pieces that are clean ASCII (lines are already words)
# are counted from their bytes as byte pairs; others are decoded line by line and counted as
# pairs of code points. Either way the word boundary is one symbol: a line end in bytes, `.` in
# decoded text (a word never contains `.`).

# What str.strip() removes, the boundary, and non-ASCII bytes: a clean ASCII piece has none.
_NOT_CLEAN = bytes([9, 11, 12, 13, 28, 29, 30, 31, 32, ord(BOUNDARY), *range(128, 256)])
_NEWLINE = 10


def _source(corpus: EnglishWords | Names | TextFile) -> str:
    return corpus.path if isinstance(corpus, TextFile) else corpus.name


def _pieces(
    corpus: EnglishWords | Names | TextFile, clean: list[bool] | None = None
) -> Iterator[tuple[bytes | list[str], int, bool]]:
    """(piece, its number of words, whether it is clean) for each piece of the corpus: its raw
    bytes where they are clean ASCII (its lines are its words: nothing to strip, no blank line),
    else its decoded words. `clean`: what an earlier pass found, to skip looking again."""
    lowercase = getattr(corpus, "lowercase", False)
    line = 1
    for index, chunk in enumerate(corpus.byte_chunks()):
        if lowercase and chunk.isascii():
            chunk = chunk.lower()
        if clean is not None and clean[index]:
            yield chunk, -1, True  # the caller knows the count from the earlier pass
            continue
        newlines = np.frombuffer(chunk, dtype=np.uint8) == _NEWLINE
        n_lines = int(np.count_nonzero(newlines))
        blank_line = newlines[:1].any() or (newlines[1:] & newlines[:-1]).any()
        if len(chunk.translate(None, _NOT_CLEAN)) == len(chunk) and not blank_line:
            yield chunk, n_lines + (not chunk.endswith(b"\n")), True
        else:
            words = decode_words(chunk, _source(corpus), line, lowercase)
            yield words, len(words), False
        line += n_lines


def count_corpus(
    corpus: EnglishWords | Names | TextFile, fractions: Sequence[float], seed: int
) -> tuple[Vocab, dict[str, int], dict[str, Tensor]]:
    """Vocabulary, words per split and N (V, V) per split of a corpus, read in pieces.

    Equal to encoding the whole corpus at once (bigram_pairs of split_words) with memory that does
    not grow with the corpus: O(V²) for the counts, one piece, and one byte per word.
    """
    sizes, clean = [], []
    for _, k, is_clean in _pieces(corpus):
        sizes.append(k)
        clean.append(is_clean)
    n_words = sum(sizes)
    if n_words == 0:
        raise UserError(f"{_source(corpus)} has no words (it is empty or only blank lines)")
    assignment = split_assignment(n_words, fractions, seed)
    parts = len(fractions)
    byte_pairs = np.zeros(parts * 256 * 256, dtype=np.int64)  # [part, byte, next byte]
    codepoint_pairs: dict[tuple[int, int, int], int] = {}  # (part, code point, next) -> count
    first = 0
    for (piece, _, _), k in zip(_pieces(corpus, clean), sizes):
        if k == 0:
            continue
        if isinstance(piece, bytes):
            body = piece if piece.endswith(b"\n") else piece + b"\n"
            symbols = np.frombuffer(b"\n" + body, dtype=np.uint8)
            boundary = _NEWLINE
        else:
            text = BOUNDARY + BOUNDARY.join(piece) + BOUNDARY
            symbols = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
            boundary = ord(BOUNDARY)
        # Word j of the piece owns its len + 1 bigrams, from its opening boundary to its closing;
        # each pair is coded (part, symbol, next symbol) in one integer, built in place.
        bounds = np.flatnonzero(symbols == boundary)
        word_parts = assignment[first : first + k].astype(np.uint32)
        first += k
        if isinstance(piece, bytes):
            code = np.repeat(word_parts << 16, np.diff(bounds))
            previous = symbols[:-1].astype(np.uint32)
            previous <<= 8
            code |= previous
            code |= symbols[1:]
            byte_pairs += np.bincount(code, minlength=byte_pairs.size)
        else:
            part = np.repeat(word_parts, np.diff(bounds))
            triples = np.stack([part, symbols[:-1], symbols[1:]], axis=1)
            keys, counts = np.unique(triples, axis=0, return_counts=True)
            for key, count in zip(map(tuple, keys.tolist()), counts.tolist()):
                codepoint_pairs[key] = codepoint_pairs.get(key, 0) + count

    byte_pairs = byte_pairs.reshape(parts, 256, 256)
    used_bytes = np.flatnonzero(byte_pairs.sum(axis=(0, 2)) + byte_pairs.sum(axis=(0, 1)))
    chars = {chr(b) for b in used_bytes if b != _NEWLINE}
    chars |= {chr(c) for _, x, y in codepoint_pairs for c in (x, y) if c != ord(BOUNDARY)}
    vocab = Vocab(BOUNDARY + "".join(sorted(chars)))
    stoi = vocab.stoi
    V = len(vocab)
    counts = torch.zeros(parts, V, V, dtype=torch.int64)
    byte_ids = torch.tensor(
        [0 if b == _NEWLINE else stoi[chr(b)] for b in used_bytes], dtype=torch.long
    )
    used = torch.from_numpy(byte_pairs[:, used_bytes][:, :, used_bytes].copy())
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
