"""Vocabulary, encoding and splits: words -> token ids -> bigram pairs, and train/val/test by word.

Each word is wrapped in the boundary token `.` on both sides, so "emma" gives the bigrams
.e em mm ma a. ; the vocabulary is `.` at index 0 followed by the sorted characters of the corpus.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bigramlab.data.corpora import BOUNDARY
from bigramlab.errors import UserError

SPLITS = ("train", "val", "test")
# How words are dealt to the splits: `randperm`, a torch.randperm and rounded cuts (the default);
# `lecture`, the makemore lecture's Python random.shuffle and int() cuts, so that split_seed=42
# with [0.8, 0.1, 0.1] gives the lecture's train, dev and test words.
SPLIT_RULES = ("randperm", "lecture")


def check_split_rule(rule: str) -> None:
    """Raise UserError unless `rule` is one of SPLIT_RULES."""
    if rule not in SPLIT_RULES:
        raise UserError(
            f"data.split_rule={rule!r} is unknown: choose one of {', '.join(SPLIT_RULES)}"
        )


@dataclass(frozen=True)
class Vocab:
    """itos: the tokens in index order, `.` first.  stoi is its inverse."""

    itos: str

    @classmethod
    def from_chars(cls, chars: Iterable[str]) -> Vocab:
        return cls(BOUNDARY + "".join(sorted(set(chars) - {BOUNDARY})))

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Vocab:
        return cls.from_chars("".join(words))

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def stoi(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.itos)}

    def missing(self, chars: Iterable[str], where: str) -> UserError | None:
        """The error for the first of `chars` not in the vocabulary (found in `where`), or None."""
        for ch in chars:
            if ch not in self.stoi:
                return UserError(
                    f"character {ch!r} (in {where}) is not in the vocabulary {self.itos!r}: "
                    "use data (or a checkpoint) whose vocabulary has it"
                )
        return None

    def encode_words(self, words: Sequence[str]) -> Tensor:
        """The token ids of `.w1.w2. ... .wn.`: (Σ(len(w) + 1) + 1,) int64.

        Consecutive pairs of this sequence are exactly the bigrams of every word wrapped in `.`,
        because the `.` closing one word also opens the next. Vectorised: one pass through numpy.
        A word holding `.` or a character outside the vocabulary is a UserError naming it.
        """
        for word in words:
            if BOUNDARY in word:
                raise UserError(
                    f"{word!r} contains '{BOUNDARY}', the word-boundary token: "
                    "a word cannot hold it"
                )
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
            raise self.missing(ch, repr(word))
        return torch.from_numpy(order[pos].astype(np.int64))


def bigram_pairs(words: Sequence[str], vocab: Vocab) -> tuple[Tensor, Tensor]:
    """xs, ys: (n,) int64, every bigram of every word in corpus order (the lecture's xs, ys)."""
    ids = vocab.encode_words(words)
    return ids[:-1], ids[1:]


def split_assignment(
    n: int, fractions: Sequence[float], seed: int, rule: str = "randperm"
) -> np.ndarray:
    """Which part each of n words goes to: (n,) int8 in [0, len(fractions)), by a seeded shuffle.

    rule "randperm": the first round(n · f0) words of torch.randperm(n) (seeded) go to part 0,
    and so on. rule "lecture": the words in the order Python's random.seed(seed);
    random.shuffle(words) leaves them, cut at int(n · f0), int(n · (f0 + f1)), ... as the lecture
    does. The last part takes the rest.
    """
    check_split_rule(rule)
    cumulative = list(itertools.accumulate(fractions))
    if rule == "lecture":
        order = list(range(n))
        random.Random(seed).shuffle(order)
        perm = np.array(order, dtype=np.int64)
        # round(·, 12): 0.8 + 0.1 is 0.9000000000000001, and int(n · it) may pass int(n · 0.9).
        cuts = [int(n * round(c, 12)) for c in cumulative]
    else:
        # int32 where n fits: half the memory of a large corpus's permutation, the same one
        # (torch draws it alike for both dtypes; tests/test_data.py checks).
        dtype = torch.int32 if n < 2**31 else torch.int64
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=generator, dtype=dtype).numpy()
        cuts = [round(n * c) for c in cumulative]
    cuts[-1] = n
    assignment = np.empty(n, dtype=np.int8)
    for part, (lo, hi) in enumerate(zip([0, *cuts[:-1]], cuts)):
        assignment[perm[lo:hi]] = part
    return assignment


def split_words(
    words: Sequence[str], fractions: Sequence[float], seed: int, rule: str = "randperm"
) -> tuple[list[str], ...]:
    """Split by word (never inside a word) into len(fractions) disjoint parts, by a seeded shuffle.

    Each part keeps the corpus order of its words, so a [1, 0, 0] split is the corpus as it is.
    """
    assignment = split_assignment(len(words), fractions, seed, rule).tolist()
    return tuple(
        [w for w, a in zip(words, assignment) if a == part] for part in range(len(fractions))
    )
