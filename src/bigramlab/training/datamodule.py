"""The Lightning data module: a corpus counted and split, served as batches, sharded under DDP.

The corpus is read in `setup`, which Lightning calls in every process of the trainer once their
process group is up: under DDP each reads and counts its own part (bigramlab.counting.shards).

corpus --count_ngrams / bigram_pairs--> NgramData (vocabulary, contexts, N per split)
    --NgramDataModule--> training batches (CountsBatch, PairBatch), validation counts

With a context of k tokens the counts are N (C, V) over the contexts the data has
(bigramlab.counting.ngrams); k = 1 is the bigram, N (V, V), every token a context.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler

from bigramlab.counting.bigrams import bigram_counts
from bigramlab.counting.ngrams import check_training_memory, count_ngrams
from bigramlab.counting.shards import Shard
from bigramlab.data.batches import check_batches
from bigramlab.data.corpora import Corpus
from bigramlab.data.vocab import SPLITS, Vocab, bigram_pairs, split_words
from bigramlab.errors import UserError


class CountsBatch(NamedTuple):
    """A batch as its counts: `counts` (C, V), this process's share; `batch_events`, the number
    of events (tokens predicted) in the whole batch over all processes (what the mean NLL divides
    by)."""

    counts: Tensor
    batch_events: int


class PairBatch(NamedTuple):
    """A batch as bigram pairs: `xs`, `ys` (n,), this process's share; `batch_events` as in
    CountsBatch."""

    xs: Tensor
    ys: Tensor
    batch_events: int


def shard_counts(counts: Tensor, rank: int, world_size: int) -> Tensor:
    """Process `rank`'s share of counts (C, V), dense or sparse: the events whose context (row) x
    has x % world_size == rank, zeros elsewhere. The shares sum to `counts`; they are unequal."""
    if counts.is_sparse:
        counts = counts.coalesce()
        mine = counts.indices()[0] % world_size == rank
        return torch.sparse_coo_tensor(
            counts.indices()[:, mine],
            counts.values()[mine],
            counts.shape,
            is_coalesced=True,
            check_invariants=False,  # a subset of a coalesced tensor's entries
        )
    rows = torch.arange(counts.shape[-2]) % world_size == rank
    return counts * rows[:, None].to(counts.dtype)


class RepeatBatch(IterableDataset):
    """The same batch forever: full-batch gradient descent."""

    def __init__(self, batch: CountsBatch | PairBatch) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[CountsBatch | PairBatch]:
        while True:
            yield self.batch


class PairMiniBatches(Dataset):
    """The training pairs, indexed by a whole mini-batch of indices at once (no per-sample
    collate). Each of `world_size` processes takes its contiguous part of every batch, so that the
    processes together see exactly the batches one process would see."""

    def __init__(self, xs: Tensor, ys: Tensor, rank: int = 0, world_size: int = 1) -> None:
        self.xs, self.ys = xs, ys
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, index: list[int]) -> PairBatch:
        part = torch.as_tensor(index).tensor_split(self.world_size)[self.rank]
        return PairBatch(self.xs[part], self.ys[part], len(index))


@dataclass(frozen=True, eq=False)
class NgramData:
    """Everything training needs from a corpus: vocabulary, the contexts of `context` tokens seen in
    any split (their keys (C,), sorted; every token for the bigram), words and counts N (C, V) per
    split (sparse COO tensors of the n-grams seen, as counted; the bigram's train counts of a
    pair-based run are dense (V, V)), and the training pairs (xs, ys) when mini-batches or a
    pair-based loss need them."""

    vocab: Vocab
    n_words: dict[str, int]
    counts: dict[str, Tensor]
    train_pairs: tuple[Tensor, Tensor] | None
    context: int = 1
    contexts: Tensor | None = None

    def __post_init__(self) -> None:
        if self.contexts is None:
            object.__setattr__(self, "contexts", torch.arange(len(self.vocab)))


@functools.lru_cache(maxsize=4)
def _ngram_data(
    corpus: Corpus,
    stamp: tuple[int, int] | None,
    split: tuple[float, ...],
    split_seed: int,
    split_rule: str,
    with_pairs: bool,
    context: int,
    shard: Shard,
) -> NgramData:
    train_pairs = None
    contexts = None
    if not with_pairs:
        counted = count_ngrams(corpus, context, split, split_seed, split_rule, shard)
        check_training_memory(corpus.name, context, len(counted.contexts), len(counted.vocab))
        vocab, n_words = counted.vocab, counted.n_words
        counts = counted.counts  # sparse, as counted: memory grows with the n-grams seen
        contexts = counted.contexts
    else:
        words = corpus.load()
        vocab = Vocab.from_words(words)
        parts = dict(zip(SPLITS, split_words(words, split, split_seed, split_rule)))
        n_words = {name: len(part) for name, part in parts.items()}
        V = len(vocab)
        counts = {name: torch.zeros(V, V, dtype=torch.int64) for name in SPLITS}
        for name, part in parts.items():
            if part:
                xs, ys = bigram_pairs(part, vocab)
                counts[name] = bigram_counts(xs, ys, V)
                if name == "train":
                    train_pairs = (xs, ys)
        counts = {name: N if name == "train" else N.to_sparse() for name, N in counts.items()}
    if n_words["train"] == 0:
        raise UserError(
            f"the train split is empty ({sum(n_words.values())} words, split {list(split)}): "
            "use more data or a larger train fraction in data.split"
        )
    return NgramData(vocab, n_words, counts, train_pairs, context, contexts)


def ngram_data(
    corpus: Corpus,
    split: Sequence[float],
    split_seed: int,
    with_pairs: bool,
    split_rule: str = "randperm",
    context: int = 1,
) -> NgramData:
    """Read, split and count a corpus at a context of `context` tokens, once per process for each
    data config. Pairs (`with_pairs`) are the bigram's alone.

    Counts: in a process group (the trainer's, under DDP), each process reads its own part of the
    corpus and the processes merge what they counted (bigramlab.counting.shards); every process
    then holds the whole counts. Pairs: each process reads the whole corpus.

    The jobs of a sweep in one process (Hydra's basic launcher, Optuna) share the result instead
    of reading and counting the corpus again; nothing in it is ever modified.
    """
    split = tuple(float(f) for f in split)
    shard = Shard() if with_pairs else Shard.this_process()
    return _ngram_data(
        corpus, corpus.stamp(), split, split_seed, split_rule, with_pairs, context, shard
    )


class NgramDataModule(L.LightningDataModule):
    """The data of one corpus at a context of `context` tokens, split by word.

    Training batches: with `batch_size=None` (full batch) every step sees the whole training split,
    as a CountsBatch when the loss form `loss_form` is "counts", else as a PairBatch; with a number,
    shuffled mini-batches (PairBatch) of B pairs. Validation batch: {split: (C, V) counts} for
    every non-empty split, so metrics are exact. Under DDP each process gets its share of every
    batch.
    """

    def __init__(
        self,
        corpus: Corpus,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 42,
        split_rule: str = "randperm",
        batch_size: int | None = None,
        shuffle_seed: int = 0,
        loss_form: str = "counts",
        context: int = 1,
    ) -> None:
        super().__init__()
        check_batches(context, batch_size, loss_form)
        self.context = context
        self.corpus = corpus
        self.split = tuple(split)
        self.split_seed = split_seed
        self.split_rule = split_rule
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        self.loss_form = loss_form
        self.data: NgramData | None = None

    def prepare_data(self) -> None:
        """Make the corpus readable (download it, check its file): train calls it before the
        trainer starts, so that a missing file is one error line and no run directory."""
        self.corpus.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            with_pairs = self.batch_size is not None or self.loss_form != "counts"
            self.data = ngram_data(
                self.corpus, self.split, self.split_seed, with_pairs, self.split_rule, self.context
            )

    @property
    def vocab(self) -> Vocab:
        return self.data.vocab

    @property
    def counts(self) -> dict[str, Tensor]:
        return self.data.counts

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
            bigrams = int(counts.sum())
            if self.loss_form == "counts":
                batch = CountsBatch(shard_counts(counts, rank, world_size).to(device), bigrams)
            else:
                xs, ys = (
                    t.tensor_split(world_size)[rank].to(device) for t in self.data.train_pairs
                )
                batch = PairBatch(xs, ys, bigrams)
            return DataLoader(RepeatBatch(batch), batch_size=None)
        xs, ys = self.data.train_pairs
        shuffle = torch.Generator().manual_seed(self.shuffle_seed)
        sampler = BatchSampler(
            RandomSampler(range(len(xs)), generator=shuffle), self.batch_size, drop_last=False
        )
        return DataLoader(
            PairMiniBatches(xs, ys, rank, world_size), sampler=sampler, batch_size=None
        )

    def val_dataloader(self) -> DataLoader:
        """One batch {split: (C, V) counts, this process's share} of every non-empty split."""
        rank, world_size, _ = self._process()
        shares = {
            name: shard_counts(c, rank, world_size)
            for name, c in self.counts.items()
            if int(c.sum()) > 0
        }
        return DataLoader([shares], batch_size=None)
