"""The learned bigram model: W (V, V), logits = one_hot(x) @ W, P(·|x) = softmax(logits).

Loss = −mean log P(y|x) + reg · mean(W²), minimised by plain gradient descent W ← W − lr · ∇W.
Three exact forms of the data NLL (`impl`), from the lecture's to the cheapest, each summed over
the bigrams of a batch:
    onehot  one_hot(x) @ W, exp, normalise, −log p[y]   O(n·V²) a step, n = bigrams in the batch
    index   rows of W by index, cross_entropy              O(n·V)
    counts  −Σ N ⊙ log_softmax(W), N the batch's bigram    O(V²) given N, O(n) to count a mini-batch
            counts (the sufficient statistics)
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from bigramlab.counting import bigram_counts, nll_sum
from bigramlab.data import SPLITS, CountsBatch, PairsBatch
from bigramlab.errors import UserError

IMPLS = ("onehot", "index", "counts")


def nll_sum_onehot(W: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """The lecture's code, literally, summed instead of averaged.  W: (V, V), xs, ys: (n,) -> ()."""
    xenc = F.one_hot(xs, num_classes=W.shape[0]).float()
    logits = xenc @ W
    counts = logits.exp()
    probs = counts / counts.sum(1, keepdims=True)
    return -probs[torch.arange(len(ys), device=ys.device), ys].log().sum()


def nll_sum_index(W: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """one_hot(x) @ W is row x of W: pick rows by index, then cross-entropy."""
    return F.cross_entropy(F.embedding(xs, W), ys, reduction="sum")


def nll_sum_counts(W: Tensor, counts: Tensor) -> Tensor:
    """−Σ_ij N[i, j] · log_softmax(W)[i, j]: the summed NLL from the counts N (V, V) alone."""
    return -(counts * W.log_softmax(dim=1)).sum()


class NLL(Metric):
    """Mean NLL over everything seen: Σ (−N ⊙ log P) / Σ N, summed across batches and processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, log_probs: Tensor, counts: Tensor) -> None:
        self.total += nll_sum(log_probs.double(), counts.double())
        self.count += counts.sum()

    def compute(self) -> Tensor:
        return self.total / self.count


class BigramLM(L.LightningModule):
    """One (V, V) parameter matrix W over the vocabulary `vocab` (its tokens in index order)."""

    def __init__(
        self,
        vocab: str,
        reg: float = 0.01,
        init_seed: int = 2147483647,
        impl: str = "counts",
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
    ) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise UserError(f"unknown model.impl {impl!r}: choose one of {', '.join(IMPLS)}")
        self.save_hyperparameters(ignore=["optimizer"])
        V = len(vocab)
        g = torch.Generator().manual_seed(init_seed)
        self.W = nn.Parameter(torch.randn((V, V), generator=g))
        self.optimizer = optimizer
        # Keyed "<split>_nll": a ModuleDict key may not shadow a Module attribute such as `train`.
        self.split_nll = nn.ModuleDict({f"{split}_nll": NLL() for split in SPLITS})
        self.split_nll_values: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        """Logits for the next token: x (n,) -> (n, V)."""
        return F.one_hot(x, num_classes=self.W.shape[0]).float() @ self.W

    def data_nll(self, batch: CountsBatch | PairsBatch) -> Tensor:
        """This process's part of the batch's mean NLL: Σ −log P(y|x) over its bigrams · world
        size / bigrams in the whole batch.

        DDP averages the processes' gradients, so the average of these parts' gradients is exactly
        the gradient of the whole batch's mean NLL, however unequal the processes' shares are. In
        one process it is the mean NLL of the batch.
        """
        world_size = self.trainer.world_size
        if isinstance(batch, CountsBatch):
            nll_sum = nll_sum_counts(self.W, batch.counts)
        elif self.hparams.impl == "counts":
            nll_sum = nll_sum_counts(self.W, bigram_counts(batch.xs, batch.ys, len(self.W)))
        elif self.hparams.impl == "index":
            nll_sum = nll_sum_index(self.W, batch.xs, batch.ys)
        else:
            nll_sum = nll_sum_onehot(self.W, batch.xs, batch.ys)
        # (sum · world size) / total, in this order: in one process exactly sum / n, the mean.
        return nll_sum * world_size / batch.total

    def training_step(self, batch: CountsBatch | PairsBatch, batch_idx: int) -> dict[str, Tensor]:
        """loss = NLL + reg · mean(W²), this process's part of it (see data_nll).

        Returned beside it for the callbacks, detached and over all processes: `total` (the loss),
        `nll` and `reg`. They stay on the device: the callbacks read them in batches, so that no
        step waits for the device.
        """
        data_nll = self.data_nll(batch)
        reg_loss = self.hparams.reg * (self.W**2).mean()
        loss = data_nll + reg_loss
        # The parts average to the whole batch's NLL: one all-reduce (none in one process).
        nll = self.trainer.strategy.reduce(data_nll.detach().clone(), reduce_op="mean")
        total = nll + reg_loss.detach()
        # Not self.log(prog_bar=True): see bigramlab.callbacks.LossProgressBar.
        return {"loss": loss, "total": total, "nll": nll, "reg": reg_loss.detach()}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """batch: {split: (V, V) counts, this process's share}; accumulates the exact data NLL (no
        reg term) per split. The metrics sum over processes when computed."""
        log_probs = self.W.log_softmax(dim=1)
        for split, counts in batch.items():
            self.split_nll[f"{split}_nll"].update(log_probs, counts)

    def on_validation_epoch_end(self) -> None:
        # Kept for the reporting callback, which writes them at the step they belong to (the number
        # of updates so far); self.log's own logger step would be one behind for validation.
        self.split_nll_values: dict[str, Tensor] = {}
        for split in SPLITS:
            metric = self.split_nll[f"{split}_nll"]
            if metric.update_count:  # an empty split is never in the batch
                self.split_nll_values[split] = metric.compute()
            metric.reset()
        # For monitors (EarlyStopping, ModelCheckpoint). compute() has already summed over the
        # processes, so every one holds the same value; sync_dist only averages equal numbers.
        values = {f"nll/{s}": v for s, v in self.split_nll_values.items()}
        self.log_dict(values, logger=False, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, loaded without running pickled code and checked to hold W (V, V)
    and its vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: check the path to the .ckpt file")
    not_a_checkpoint = (
        f"{path} is not a PyTorch checkpoint file: pass a last.ckpt from bigramlab.train"
    )
    if not zipfile.is_zipfile(path):  # torch.save's format since PyTorch 1.6 is a zip archive
        raise UserError(not_a_checkpoint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(e), flags=re.IGNORECASE)
        reason = (
            f"it calls {found.group(1)}" if found else "it holds more than tensors and plain data"
        )
        raise UserError(
            f"refusing to load {path}: unpickling it could run code ({reason}); "
            "use a checkpoint written by bigramlab.train"
        ) from None
    except (RuntimeError, EOFError, OSError):
        raise UserError(not_a_checkpoint) from None
    try:
        W = ckpt["state_dict"]["W"]
        vocab = ckpt["hyper_parameters"]["vocab"]
    except (KeyError, TypeError):
        raise UserError(
            f"{path} is not a bigramlab checkpoint (no W or vocabulary in it)"
        ) from None
    if W.shape != (len(vocab), len(vocab)):
        raise UserError(f"{path} is damaged: W has shape {tuple(W.shape)} for {len(vocab)} tokens")
    return ckpt


def load_checkpoint(path: str | Path) -> tuple[Tensor, str]:
    """W (V, V) and the vocabulary of a training checkpoint."""
    ckpt = read_checkpoint(path)
    return ckpt["state_dict"]["W"].float(), ckpt["hyper_parameters"]["vocab"]


def sample_words(
    probs: Tensor, itos: str, n: int, generator: torch.Generator, max_length: int | None = None
) -> list[str]:
    """n words from a bigram model P (V, V): start at `.`, draw the next token from P[token] until
    `.` comes again. The same generator state gives the same draws for any model of the same V.

    A model that rarely ends words (one trained on a single very long line) can make words of any
    length; `max_length` cuts them there and marks the cut with `…`.
    """
    words = []
    for _ in range(n):
        out = []
        ix = 0
        while max_length is None or len(out) < max_length:
            ix = int(torch.multinomial(probs[ix], num_samples=1, generator=generator))
            if ix == 0:
                break
            out.append(itos[ix])
        else:
            out.append("…")
        words.append("".join(out))
    return words
