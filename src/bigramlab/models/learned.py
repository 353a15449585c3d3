"""The learned model as a LightningModule: W (R, V), trained on the objective of
bigramlab.models.losses (NLL + reg · ΣW²/V², reg · mean(W²) for the bigram) by the optimizer of
the config (plain SGD by default).

A context of `context` = k tokens predicts the next one from logits = features(context) @ W
(bigramlab.models.features): onehot, one row per context (k = 1: W is the lecture's (V, V)),
interpolated, one row per suffix of the context, or skipgram, those and one per suffix with its
newest token hidden. W is made when the data are known, in
`configure_model` (from the data module's vocabulary and contexts), so that Hydra builds the module
from its config alone; its tokens (hyper_parameters.vocab) and its rows' feature keys (the buffer
row_keys) are saved in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from bigramlab.counting.bigrams import bigram_counts
from bigramlab.data.datamodule import CountsBatch, PairBatch
from bigramlab.data.vocab import SPLITS
from bigramlab.errors import UserError
from bigramlab.models.features import (
    check_features,
    check_reg_by_length,
    feature_keys,
    logits,
    model_rows,
    row_index,
    row_penalty_scale,
)
from bigramlab.models.losses import IMPLS, nll_sum_counts, nll_sum_index, nll_sum_onehot, penalty
from bigramlab.models.nll import nll_sum

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
    """W (R, V): logits = features(x) @ W for the data's contexts x; `impl` picks the loss form
    (at context 1; longer contexts train on counts)."""

    def __init__(
        self,
        optimizer: Optimizer,
        reg: float = 0.01,
        init_seed: int = 2147483647,
        impl: str = "counts",
        vocab: str | None = None,
        context: int = 1,
        features: str = "onehot",
        reg_by_length: list[float] | None = None,
        reg_skip: float = 1.0,
        n_rows: int | None = None,
    ) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise UserError(f"model.impl={impl!r} is unknown: choose one of {', '.join(IMPLS)}")
        check_features(features)
        check_reg_by_length(reg_by_length, context)
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.W: nn.Parameter | None = None
        # Rows of W for the data's contexts (C, F), and the penalty of each row (reg_by_length,
        # reg_skip): set with the data (configure_model); buffers, so that they move with W,
        # unsaved.
        self.register_buffer("context_rows", None, persistent=False)
        self.register_buffer("row_scale", None, persistent=False)
        self.grad_norm: Tensor | None = None  # of the last update's gradient
        if reg_by_length is not None:
            self.hparams.reg_by_length = [float(x) for x in reg_by_length]
        # Keyed "<split>_nll": a ModuleDict key may not shadow a Module attribute such as `train`.
        self.split_nll = nn.ModuleDict({f"{split}_nll": MeanNLL() for split in SPLITS})
        if vocab is not None:
            # The bigram's rows (every token), or a checkpoint's shapes, which loading fills.
            rows = n_rows if n_rows is not None else len(vocab)
            self.register_buffer("row_keys", torch.arange(rows))
            self.W = nn.Parameter(self.initial_weights(rows, len(vocab)))

    def make_weights(self, vocab: str, contexts: Tensor, train_counts: Tensor) -> None:
        """W and its rows for the data: onehot, a row for every context of the data (`contexts`
        (C,), any split: the rows only held-out data use are trained by the penalty alone);
        interpolated and skipgram, a row for every feature of the contexts seen in training."""
        V, k, features = len(vocab), self.hparams.context, self.hparams.features
        if features == "onehot":
            row_keys = contexts.clone()
        else:
            row_keys = model_rows(contexts[train_counts.sum(dim=1) > 0], k, V, features)
        self.hparams.vocab = vocab
        self.hparams.n_rows = len(row_keys)
        self.register_buffer("row_keys", row_keys)
        self.W = nn.Parameter(self.initial_weights(len(row_keys), V))
        self.set_contexts(contexts)

    def set_row_scale(self) -> None:
        h = self.hparams
        scale = row_penalty_scale(self.row_keys, h.context, len(h.vocab), h.features,
                                  h.reg_by_length, h.reg_skip)  # fmt: skip
        self.row_scale = None if scale is None else scale.to(self.W.device)

    def set_contexts(self, contexts: Tensor) -> None:
        """The rows each of the data's contexts (C,) adds up (`context_rows`, (C, F))."""
        V = len(self.hparams.vocab)
        keys = feature_keys(contexts, self.hparams.context, V, self.hparams.features)
        self.context_rows = row_index(self.row_keys, keys).to(self.W.device)
        self.set_row_scale()

    def initial_weights(self, rows: int, V: int) -> Tensor:
        """W before training: onehot, N(0, 1) (rows, V) from a generator seeded with
        `init_seed`, as in the lecture; interpolated and skipgram, zeros (every context uniform:
        the objective is convex, and a solver started at zero has no scale to undo)."""
        if self.hparams.features != "onehot":
            return torch.zeros(rows, V)
        g = torch.Generator().manual_seed(self.hparams.init_seed)
        return torch.randn((rows, V), generator=g)

    def configure_model(self) -> None:
        data = self.trainer.datamodule.data
        if self.W is None:
            self.make_weights(data.vocab.itos, data.contexts, data.counts["train"])
        else:
            self.set_contexts(data.contexts)

    def table_logits(self, W: Tensor | None = None) -> Tensor:
        """Logits for every context of the data (C, V), of the module's W or of another `W` of
        its shape. Onehot: W itself (its rows are the contexts, in order)."""
        W = self.W if W is None else W
        if self.hparams.features == "onehot":
            return W
        return logits(W, self.context_rows.to(W.device))

    def forward(self, x: Tensor) -> Tensor:
        """Logits for the next token: x (n,) indices of the data's contexts -> (n, V)."""
        if self.hparams.features == "onehot":
            return F.one_hot(x, num_classes=self.W.shape[0]).float() @ self.W
        return logits(self.W, self.context_rows[x])

    def data_nll(self, batch: CountsBatch | PairBatch) -> Tensor:
        """This process's part of the batch's mean NLL: Σ −log P(y|x) over its bigrams · world
        size / bigrams in the whole batch.

        DDP averages the processes' gradients, so the average of these parts' gradients is exactly
        the gradient of the whole batch's mean NLL, however unequal the processes' shares are. In
        one process it is the mean NLL of the batch.
        """
        world_size = self.trainer.world_size
        if isinstance(batch, CountsBatch):
            summed = nll_sum_counts(self.table_logits(), batch.counts)
        elif self.hparams.impl == "counts":
            summed = nll_sum_counts(self.W, bigram_counts(batch.xs, batch.ys, len(self.W)))
        elif self.hparams.impl == "index":
            summed = nll_sum_index(self.W, batch.xs, batch.ys)
        else:
            summed = nll_sum_onehot(self.W, batch.xs, batch.ys)
        # (sum · world size) / bigrams, in this order: in one process exactly sum / n, the mean.
        return summed * world_size / batch.batch_bigrams

    def training_step(self, batch: CountsBatch | PairBatch, batch_idx: int) -> dict[str, Tensor]:
        """loss = NLL + reg · ΣW²/V², this process's part of it (see data_nll).

        Returned beside it for the callbacks, detached and over all processes: `objective`, `nll`
        and `penalty`. They stay on the device: StepLosses (bigramlab.training.callbacks) reads
        them back in batches, so that no step waits for the device.
        """
        data_nll = self.data_nll(batch)
        reg_loss = penalty(self.W, self.hparams.reg, self.row_scale)
        # The parts average to the whole batch's NLL: one all-reduce (none in one process).
        nll = self.trainer.strategy.reduce(data_nll.detach().clone(), reduce_op="mean")
        return {
            "loss": data_nll + reg_loss,
            "objective": nll + reg_loss.detach(),
            "nll": nll,
            "penalty": reg_loss.detach(),
        }

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """batch: {split: (C, V) counts, this process's share}; accumulates the exact data NLL (no
        penalty) per split. The metrics sum over processes when computed."""
        log_probs = self.table_logits().log_softmax(dim=1)
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

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Kept on the device: StepLosses reads it back with the losses (loss/grad_norm).
        self.grad_norm = self.W.grad.detach().norm()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())
