"""The LightningModule that trains a LearnedLM (bigramlab.models.learned) on the objective of
bigramlab.models.losses, NLL + reg · ΣW²/V² (reg · mean(W²) for the bigram), by the optimizer of
the config (plain SGD by default).

The model is made when the data are known, in `configure_model` (from the data module's
vocabulary and contexts), so that Hydra builds this module from its config alone; the model's
tokens (hyper_parameters.vocab) and its rows' feature keys (the buffer lm.row_keys) are saved in
the checkpoint beside lm.W.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from bigramlab.counting.bigrams import bigram_counts
from bigramlab.data.datamodule import CountsBatch, PairBatch
from bigramlab.data.vocab import SPLITS
from bigramlab.errors import UserError
from bigramlab.models.checkpoint import RUN_SETTINGS, upgrade_state_dict
from bigramlab.models.features import (
    FAMILIES,
    check_features,
    check_max_span,
    check_reg_by_length,
    logits,
)
from bigramlab.models.learned import LearnedLM, initial_weights
from bigramlab.models.losses import (
    check_loss_form,
    nll_sum_counts,
    nll_sum_index,
    nll_sum_onehot,
    penalty,
)
from bigramlab.models.nll import nll_sum

Optimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class MeanNLL(Metric):
    """Mean NLL over everything seen: Σ (−N ⊙ log P) / Σ N, summed across batches and processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("events", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, log_probs: Tensor, counts: Tensor) -> None:
        # Over the counts seen alone, in float64: no (C, V) float64 copies of log P and N.
        self.nll_sum += nll_sum(log_probs, counts.to_sparse())
        self.events += counts.sum()

    def compute(self) -> Tensor:
        return self.nll_sum / self.events


class LearnedLMModule(L.LightningModule):
    """Trains `lm`, a LearnedLM of the data's contexts; `loss_form` picks one of the exact forms
    of the loss (at context 1; longer contexts train on counts)."""

    def __init__(
        self,
        optimizer: Optimizer,
        reg: float = 0.01,
        init_seed: int = 2147483647,
        loss_form: str = "counts",
        vocab: str | None = None,
        context: int = 1,
        features: str = "onehot",
        reg_by_length: list[float] | None = None,
        reg_skip: float = 1.0,
        n_rows: int | None = None,
        max_span: int | None = None,
        reg_position: float = 1.0,
        reg_start: float = 1.0,
        reg_gaps: float = 1.0,
        reg_classes: float = 1.0,
    ) -> None:
        super().__init__()
        check_loss_form(loss_form)
        check_features(features)
        check_max_span(max_span, context)
        check_reg_by_length(reg_by_length, context, max_span)
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.lm: LearnedLM | None = None
        # Rows of W for the data's contexts (C, F), and the penalty of each row (reg_by_length,
        # reg_skip and reg_<family>): set with the data (configure_model); buffers, so
        # that they move with W, unsaved.
        self.register_buffer("context_rows", None, persistent=False)
        self.register_buffer("row_scale", None, persistent=False)
        self.grad_norm: Tensor | None = None  # of the last update's gradient
        # The settings of the run's data (bigramlab.plumbing.config.run_data_settings), which
        # bigramlab.train sets; recorded in every checkpoint.
        self.run_settings: dict[str, Any] | None = None
        if reg_by_length is not None:
            self.hparams.reg_by_length = [float(x) for x in reg_by_length]
        # Keyed "<split>_nll": a ModuleDict key may not shadow a Module attribute such as `train`.
        self.split_nll = nn.ModuleDict({f"{split}_nll": MeanNLL() for split in SPLITS})
        if vocab is not None:
            # The bigram's rows (every token), or a checkpoint's shapes, which loading fills.
            rows = n_rows if n_rows is not None else len(vocab)
            W = initial_weights(features, rows, len(vocab), init_seed)
            self.lm = LearnedLM(vocab, context, features, torch.arange(rows), W, max_span)

    @property
    def W(self) -> nn.Parameter:
        """The model's weights (R, V)."""
        return self.lm.W

    def configure_model(self) -> None:
        data = self.trainer.datamodule.data
        if self.lm is None:
            h = self.hparams
            self.lm = LearnedLM.for_data(
                data.vocab.itos,
                h.context,
                h.features,
                data.contexts,
                data.counts["train"],
                h.init_seed,
                h.max_span,
            )
            self.hparams.vocab = data.vocab.itos
            self.hparams.n_rows = len(self.lm.row_keys)
        rows = self.lm.rows(data.contexts)
        # int32 where the row indices fit (every W here): half the memory of the (C, F) table.
        rows = rows.int() if len(self.lm.row_keys) < 2**31 - 1 else rows
        self.context_rows = rows.to(self.W.device)
        scale = self.lm.penalty_scale(self.hparams.reg_by_length, self.penalty_multipliers())
        self.row_scale = None if scale is None else scale.to(self.W.device)

    def penalty_multipliers(self) -> dict[str, float]:
        """reg's multiplier for each kind of row other than the suffixes (model.reg_skip and
        model.reg_<family> for each of FAMILIES)."""
        return {kind: self.hparams[f"reg_{kind}"] for kind in ("skip", *FAMILIES)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every checkpoint, weights-only ones too, names the data its run was trained and scored
        # on, so that evaluate scores it on the run's own split.
        if self.run_settings is not None:
            checkpoint[RUN_SETTINGS] = self.run_settings

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume a checkpoint of another vocabulary than the data's (the model is made
        for the data first, in configure_model); then load its W."""
        itos = checkpoint.get("hyper_parameters", {}).get("vocab")
        if self.lm is not None and itos is not None and itos != self.lm.itos:
            where = self._trainer.ckpt_path if self._trainer is not None else "the checkpoint"
            raise UserError(
                f"{where} was trained on another vocabulary ({itos!r}, this data has "
                f"{self.lm.itos!r}): resume with the data set it was trained on"
            )
        upgrade_state_dict(checkpoint["state_dict"])

    def initial_logits(self) -> Tensor:
        """table_logits of the W training starts from (init_seed's): the report's scales."""
        h = self.hparams
        return self.table_logits(initial_weights(h.features, *self.W.shape, h.init_seed))

    def table_logits(self, W: Tensor | None = None) -> Tensor:
        """Logits for every context of the data (C, V), of the model's W or of another `W` of
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
        """This process's part of the batch's mean NLL: Σ −log P(y|x) over its events (the tokens
        it predicts) · world size / events in the whole batch.

        DDP averages the processes' gradients, so the average of these parts' gradients is exactly
        the gradient of the whole batch's mean NLL, however unequal the processes' shares are. In
        one process it is the mean NLL of the batch.
        """
        world_size = self.trainer.world_size
        if isinstance(batch, CountsBatch):
            summed = nll_sum_counts(self.table_logits(), batch.counts)
        elif self.hparams.loss_form == "counts":
            summed = nll_sum_counts(self.W, bigram_counts(batch.xs, batch.ys, len(self.W)))
        elif self.hparams.loss_form == "index":
            summed = nll_sum_index(self.W, batch.xs, batch.ys)
        else:
            summed = nll_sum_onehot(self.W, batch.xs, batch.ys)
        # (sum · world size) / events, in this order: in one process exactly sum / n, the mean.
        return summed * world_size / batch.batch_events

    def training_step(self, batch: CountsBatch | PairBatch, batch_idx: int) -> dict[str, Tensor]:
        """loss = NLL + reg · ΣW²/V²: its value the whole batch's, on every process; its gradient
        this process's part (see data_nll), which DDP averages into the whole batch's.

        Returned beside it for the callbacks, detached and over all processes: `objective`, `nll`
        and `penalty`. They stay on the device: StepLosses (bigramlab.training.callbacks) reads
        them back in batches, so that no step waits for the device.
        """
        data_nll = self.data_nll(batch)
        reg_loss = penalty(self.W, self.hparams.reg, self.row_scale)
        # The parts average to the whole batch's NLL: one all-reduce (none in one process).
        nll = self.trainer.strategy.reduce(data_nll.detach().clone(), reduce_op="mean")
        # L-BFGS decides from the loss's value how many times to evaluate it within a step (its
        # line search and stopping tests), and each evaluation all-reduces the gradient: the value
        # must be the same on every process, or they run different numbers of all-reduces and
        # hang. In one process nll is data_nll and the loss is data_nll + reg_loss bit for bit.
        return {
            "loss": (data_nll - data_nll.detach()) + nll + reg_loss,
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
