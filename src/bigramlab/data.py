"""Data: corpus -> vocabulary -> bigram pairs and counts -> train/val/test splits.

A corpus is a list of words (names, dictionary words, lines of a file). Each word is wrapped in the
boundary token `.` on both sides, so "emma" gives the bigrams .e em mm ma a. ; the vocabulary is
`.` at index 0 followed by the sorted characters of the corpus.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler

from bigramlab.counting import bigram_counts
from bigramlab.download import fetch
from bigramlab.errors import UserError
from bigramlab.model import SPLITS

BOUNDARY = "."


# --- corpora --------------------------------------------------------------------------------------
# Frozen dataclasses: a corpus is its config, hashable, and `load()` reads it.


@dataclass(frozen=True)
class EnglishWords:
    """The web2 word list of the `english-words` package: lowercase, alphabetic, ~234k words."""

    name: str = "words"

    def load(self) -> list[str]:
        from english_words import get_english_words_set

        # A set has no stable order across processes; sort so splits are reproducible.
        return sorted(get_english_words_set(["web2"], lower=True, alpha=True))


@dataclass(frozen=True)
class Names:
    """makemore's names.txt, downloaded once into `cache_dir` and verified against `sha256`."""

    url: str
    sha256: str
    cache_dir: str
    filename: str = "names.txt"
    name: str = "names"

    def load(self) -> list[str]:
        path = fetch(self.url, Path(self.cache_dir) / self.filename, self.sha256)
        return read_lines(path)


@dataclass(frozen=True)
class TextFile:
    """Any UTF-8 text file, one word (or name, or line) a line."""

    path: str
    lowercase: bool = False
    name: str = "text_file"

    def load(self) -> list[str]:
        return read_lines(Path(self.path), lowercase=self.lowercase)


def read_lines(path: Path, lowercase: bool = False) -> list[str]:
    """The non-blank lines of a UTF-8 file, stripped of surrounding whitespace (`\\r` included)."""
    if not path.exists():
        raise UserError(f"data file {path} does not exist: check dataset.path")
    if not path.is_file():
        raise UserError(f"data path {path} is not a file: point dataset.path at a text file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path} line {line} is not valid UTF-8 ({e.reason} at byte {e.start}): "
            "convert the file to UTF-8"
        ) from None
    words = []
    for number, line in enumerate(text.split("\n"), start=1):
        word = line.strip()
        if not word:
            continue
        if BOUNDARY in word:
            raise UserError(
                f"{path} line {number} contains '{BOUNDARY}', the word-boundary token: "
                "remove it from the data"
            )
        words.append(word.lower() if lowercase else word)
    if not words:
        raise UserError(f"{path} has no words (it is empty or only blank lines)")
    return words


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


def split_words(
    words: Sequence[str], fractions: Sequence[float], seed: int
) -> tuple[list[str], ...]:
    """Split by word (never inside a word) into len(fractions) disjoint parts, by a seeded shuffle.

    Each part keeps the corpus order of its words, so a [1, 0, 0] split is the corpus as it is.
    """
    n = len(words)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cuts = [round(n * c) for c in itertools.accumulate(fractions)]
    cuts[-1] = n
    bounds = zip([0, *cuts[:-1]], cuts)
    return tuple([words[i] for i in sorted(perm[lo:hi])] for lo, hi in bounds)


# --- Lightning data module ------------------------------------------------------------------------


class RepeatBatch(IterableDataset):
    """The whole training set as one batch, forever: full-batch gradient descent."""

    def __init__(self, batch: Tensor | tuple[Tensor, Tensor]) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        while True:
            yield self.batch


class PairBatches(Dataset):
    """Bigram pairs indexed by a whole batch of indices at once (no per-sample collate)."""

    def __init__(self, xs: Tensor, ys: Tensor) -> None:
        self.xs, self.ys = xs, ys

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, index: list[int]) -> tuple[Tensor, Tensor]:
        index_tensor = torch.as_tensor(index)
        return self.xs[index_tensor], self.ys[index_tensor]


@dataclass(frozen=True)
class BigramData:
    """Everything training needs from a corpus: vocabulary, words, counts (V, V) per split, and the
    training pairs (xs, ys) when mini-batches or a pair-based loss need them."""

    vocab: Vocab
    words: dict[str, list[str]]
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
    words = corpus.load()
    vocab = Vocab.from_words(words)
    parts = dict(zip(SPLITS, split_words(words, split, split_seed)))
    if not parts["train"]:
        raise UserError(
            f"the train split is empty ({len(words)} words, split {list(split)}): "
            "use more data or a larger train fraction in data.split"
        )
    V = len(vocab)
    counts = {}
    train_pairs = None
    for name, part in parts.items():
        if not part:
            counts[name] = torch.zeros(V, V, dtype=torch.int64)
            continue
        xs, ys = bigram_pairs(part, vocab)
        counts[name] = bigram_counts(xs, ys, V)
        if name == "train" and with_pairs:
            train_pairs = (xs, ys)
    return BigramData(vocab, parts, counts, train_pairs)


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
    as its (V, V) counts when `batch_format="counts"`, else as the pairs (xs, ys); with a number,
    shuffled mini-batches of pairs (xs, ys): (B,) each.
    Validation batch: {split: (V, V) counts} for every non-empty split, so metrics are exact.
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
        self.words: dict[str, list[str]] = {}
        self.counts: dict[str, Tensor] = {}
        self.train_pairs: tuple[Tensor, Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.vocab is not None:
            return
        with_pairs = self.batch_size is not None or self.batch_format == "pairs"
        data = bigram_data(self.corpus, self.split, self.split_seed, with_pairs)
        self.vocab, self.words, self.counts = data.vocab, data.words, data.counts
        self.train_pairs = data.train_pairs

    def train_dataloader(self) -> DataLoader:
        if self.batch_size is None:
            full = self.counts["train"] if self.batch_format == "counts" else self.train_pairs
            return DataLoader(RepeatBatch(full), batch_size=None)
        xs, ys = self.train_pairs
        shuffle = torch.Generator().manual_seed(self.shuffle_seed)
        sampler = BatchSampler(
            RandomSampler(range(len(xs)), generator=shuffle), self.batch_size, drop_last=False
        )
        return DataLoader(PairBatches(xs, ys), sampler=sampler, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        counts = {name: c for name, c in self.counts.items() if c.sum() > 0}
        return DataLoader([counts], batch_size=None)
