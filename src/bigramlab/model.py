"""The learned bigram model as a LightningModule: W (V, V), trained on the objective of
bigramlab.losses (NLL + reg · mean(W²)) by the optimizer of the config (plain SGD by default).

W is made when the vocabulary is known, in `configure_model` (from the data module's vocabulary),
so that Hydra builds the module from its config alone; its tokens are saved in the checkpoint
(hyper_parameters.vocab).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from bigramlab.counting import bigram_counts
from bigramlab.datamodule import CountsBatch, PairBatch
from bigramlab.errors import UserError
from bigramlab.estimators import nll_sum
from bigramlab.losses import IMPLS, nll_sum_counts, nll_sum_index, nll_sum_onehot, penalty
from bigramlab.vocab import SPLITS

Optimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class MeanNLL(Metric):
    """Mean NLL over everything seen: Σ (−N ⊙ log P) / Σ N, summed across batches and processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("bigrams", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, log_probs: Tensor, counts: Tensor) -> None:
        self.nll_sum += nll_sum(log_probs.double(), counts.double())
        self.bigrams += counts.sum()

    def compute(self) -> Tensor:
        return self.nll_sum / self.bigrams


class BigramLM(L.LightningModule):
    """One (V, V) parameter matrix W, logits = one_hot(x) @ W; `impl` picks the loss form."""

    def __init__(
        self,
        optimizer: Optimizer,
        reg: float = 0.01,
        init_seed: int = 2147483647,
        impl: str = "counts",
        vocab: str | None = None,
    ) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise UserError(f"model.impl={impl!r} is unknown: choose one of {', '.join(IMPLS)}")
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.W: nn.Parameter | None = None
        # Keyed "<split>_nll": a ModuleDict key may not shadow a Module attribute such as `train`.
        self.split_nll = nn.ModuleDict({f"{split}_nll": MeanNLL() for split in SPLITS})
        if vocab is not None:
            self.make_weights(vocab)

    def make_weights(self, vocab: str) -> None:
        self.hparams.vocab = vocab
        self.W = nn.Parameter(self.initial_weights(len(vocab)))

    def initial_weights(self, V: int) -> Tensor:
        """W before training: N(0, 1) (V, V) from a generator seeded with `init_seed`, as in the
        lecture."""
        g = torch.Generator().manual_seed(self.hparams.init_seed)
        return torch.randn((V, V), generator=g)

    def configure_model(self) -> None:
        if self.W is None:
            self.make_weights(self.trainer.datamodule.vocab.itos)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for the next token: x (n,) -> (n, V)."""
        return F.one_hot(x, num_classes=self.W.shape[0]).float() @ self.W

    def data_nll(self, batch: CountsBatch | PairBatch) -> Tensor:
        """This process's part of the batch's mean NLL: Σ −log P(y|x) over its bigrams · world
        size / bigrams in the whole batch.

        DDP averages the processes' gradients, so the average of these parts' gradients is exactly
        the gradient of the whole batch's mean NLL, however unequal the processes' shares are. In
        one process it is the mean NLL of the batch.
        """
        world_size = self.trainer.world_size
        if isinstance(batch, CountsBatch):
            summed = nll_sum_counts(self.W, batch.counts)
        elif self.hparams.impl == "counts":
            summed = nll_sum_counts(self.W, bigram_counts(batch.xs, batch.ys, len(self.W)))
        elif self.hparams.impl == "index":
            summed = nll_sum_index(self.W, batch.xs, batch.ys)
        else:
            summed = nll_sum_onehot(self.W, batch.xs, batch.ys)
        # (sum · world size) / bigrams, in this order: in one process exactly sum / n, the mean.
        return summed * world_size / batch.batch_bigrams

    def training_step(self, batch: CountsBatch | PairBatch, batch_idx: int) -> dict[str, Tensor]:
        """loss = NLL + reg · mean(W²), this process's part of it (see data_nll).

        Returned beside it for the callbacks, detached and over all processes: `objective`, `nll`
        and `penalty`. They stay on the device: bigramlab.callbacks.StepLosses reads them back in
        batches, so that no step waits for the device.
        """
        data_nll = self.data_nll(batch)
        reg_loss = penalty(self.W, self.hparams.reg)
        # The parts average to the whole batch's NLL: one all-reduce (none in one process).
        nll = self.trainer.strategy.reduce(data_nll.detach().clone(), reduce_op="mean")
        return {
            "loss": data_nll + reg_loss,
            "objective": nll + reg_loss.detach(),
            "nll": nll,
            "penalty": reg_loss.detach(),
        }

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """batch: {split: (V, V) counts, this process's share}; accumulates the exact data NLL (no
        penalty) per split. The metrics sum over processes when computed."""
        log_probs = self.W.log_softmax(dim=1)
        for split, counts in batch.items():
            self.split_nll[f"{split}_nll"].update(log_probs, counts)

    def on_validation_epoch_end(self) -> None:
        # `nll/<split>` in trainer.callback_metrics, for the report and for monitors (EarlyStopping,
        # ModelCheckpoint); not written to the logger here: the report writes them at the step
        # they belong to (the number of updates so far), where self.log's step would be one behind.
        # compute() has already summed over the processes, so sync_dist only averages equal values.
        for split in SPLITS:
            metric = self.split_nll[f"{split}_nll"]
            if metric.update_count:  # an empty split is never in the batch
                self.log(f"nll/{split}", metric.compute(), logger=False, sync_dist=True)
            metric.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())
