"""The LightningModule that trains a net (a LearnedLM, bigramlab.models.learned) on the objective
NLL + penalty (bigramlab.models.losses: reg · ΣW²/V², reg · mean(W²) for the bigram), by the
optimizer of the config (plain SGD by default).

As in lightning-hydra-template, the module is handed its `net`, its `optimizer` (a partial that
takes the parameters) and its `penalty`. The net is made when the data are known: `net` is a
partial (Hydra's `_partial_: true`) that `configure_model` calls with the data's vocabulary,
contexts and train counts, so that Hydra builds this module from its config alone; or a net
already made. Its settings (hyper_parameters: vocab, context, features, ...) and its state
(net.W, net.row_keys) are saved in the checkpoint, which bigramlab.models.checkpoint reads back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from bigramlab.counting.bigrams import bigram_counts
from bigramlab.data.vocab import SPLITS
from bigramlab.errors import UserError
from bigramlab.models.checkpoint import RUN_SETTINGS, upgrade_state_dict
from bigramlab.models.learned import LearnedLM
from bigramlab.models.losses import (
    Penalty,
    check_loss_form,
    nll_sum_counts,
    nll_sum_index,
    nll_sum_onehot,
)
from bigramlab.models.nll import nll_sum
from bigramlab.training.datamodule import CountsBatch, PairBatch

Optimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# A net for the data: (itos, contexts (C,), train counts (C, V)) -> the net before training.
NetForData = Callable[[str, Tensor, Tensor], LearnedLM]


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


def settings(net: NetForData | LearnedLM, penalty: Penalty) -> dict[str, Any]:
    """The module's settings beside its loss form, in hparams.yaml and the checkpoint: the net's
    (a partial's keywords until the net is made: the logger writes hparams.yaml before
    configure_model) and the penalty's."""
    found = net.settings() if isinstance(net, nn.Module) else dict(getattr(net, "keywords", {}))
    by_length = penalty.by_length
    return found | {
        "reg": penalty.reg,
        "reg_by_length": None if by_length is None else [float(x) for x in by_length],
        "reg_multipliers": {k: float(v) for k, v in penalty.multipliers.items()},
    }


class LanguageModelModule(L.LightningModule):
    """Trains `net` on the data's contexts; `loss_form` picks one of the exact forms of the loss
    (at context 1; longer contexts train on counts)."""

    def __init__(
        self,
        net: NetForData | LearnedLM,
        optimizer: Optimizer,
        penalty: Penalty | None = None,
        loss_form: str = "counts",
    ) -> None:
        super().__init__()
        check_loss_form(loss_form)
        self.optimizer = optimizer
        self.penalty = penalty if penalty is not None else Penalty()
        self.save_hyperparameters({"loss_form": loss_form, **settings(net, self.penalty)})
        self.net_for_data: NetForData | None = None
        self.net: LearnedLM | None = None
        # A net given made, as it was given (in a tuple: not a submodule, not in the state_dict).
        self.given: tuple[LearnedLM, ...] = ()
        if isinstance(net, nn.Module):
            self.net, self.given = net, (copy.deepcopy(net),)
        else:
            self.net_for_data = net
        # The data's contexts (C,) and the penalty of each of the net's rows: set with the data
        # (configure_model); buffers, so that they move with the net, unsaved.
        self.register_buffer("contexts", None, persistent=False)
        self.register_buffer("row_scale", None, persistent=False)
        self.grad_norm: Tensor | None = None  # of the last update's gradient
        # The settings of the run's data (bigramlab.plumbing.config.run_data_settings), which
        # bigramlab.train sets; recorded in every checkpoint.
        self.run_settings: dict[str, Any] | None = None
        # Keyed "<split>_nll": a ModuleDict key may not shadow a Module attribute such as `train`.
        self.split_nll = nn.ModuleDict({f"{split}_nll": MeanNLL() for split in SPLITS})

    def configure_model(self) -> None:
        data = self.trainer.datamodule.data
        if self.net is None:
            self.net = self.net_for_data(data.vocab.itos, data.contexts, data.counts["train"])
            self.hparams.update(self.net.settings())
        self.contexts = data.contexts.to(self.net.W.device)
        scale = self.penalty.row_scale(self.net)
        self.row_scale = None if scale is None else scale.to(self.net.W.device)

    def initial_net(self) -> LearnedLM:
        """The net as training starts it (its init_seed's), whatever step this one is at: the
        report's colour scales."""
        if self.given:
            return self.given[0]
        data = self.trainer.datamodule.data
        return self.net_for_data(data.vocab.itos, data.contexts, data.counts["train"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every checkpoint, weights-only ones too, names the data its run was trained and scored
        # on, so that evaluate scores it on the run's own split.
        if self.run_settings is not None:
            checkpoint[RUN_SETTINGS] = self.run_settings

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume a checkpoint of another vocabulary than the data's (the net is made
        for the data first, in configure_model); then load its weights."""
        itos = checkpoint.get("hyper_parameters", {}).get("vocab")
        if self.net is not None and itos is not None and itos != self.net.itos:
            where = self._trainer.ckpt_path if self._trainer is not None else "the checkpoint"
            raise UserError(
                f"{where} was trained on another vocabulary ({itos!r}, this data has "
                f"{self.net.itos!r}): resume with the data set it was trained on"
            )
        upgrade_state_dict(checkpoint["state_dict"])

    def data_nll(self, batch: CountsBatch | PairBatch) -> Tensor:
        """This process's part of the batch's mean NLL: Σ −log P(y|x) over its events (the tokens
        it predicts) · world size / events in the whole batch.

        DDP averages the processes' gradients, so the average of these parts' gradients is exactly
        the gradient of the whole batch's mean NLL, however unequal the processes' shares are. In
        one process it is the mean NLL of the batch.
        """
        world_size = self.trainer.world_size
        W = self.net.W
        if isinstance(batch, CountsBatch):
            summed = nll_sum_counts(self.net.logits(self.contexts), batch.counts)
        elif self.hparams.loss_form == "counts":
            summed = nll_sum_counts(W, bigram_counts(batch.xs, batch.ys, len(W)))
        elif self.hparams.loss_form == "index":
            summed = nll_sum_index(W, batch.xs, batch.ys)
        else:
            summed = nll_sum_onehot(W, batch.xs, batch.ys)
        # (sum · world size) / events, in this order: in one process exactly sum / n, the mean.
        return summed * world_size / batch.batch_events

    def training_step(self, batch: CountsBatch | PairBatch, batch_idx: int) -> dict[str, Tensor]:
        """loss = NLL + penalty: its value the whole batch's, on every process; its gradient this
        process's part (see data_nll), which DDP averages into the whole batch's.

        Returned beside it for the callbacks, detached and over all processes: `objective`, `nll`
        and `penalty`. They stay on the device: StepLosses (bigramlab.training.callbacks) reads
        them back in batches, so that no step waits for the device.
        """
        data_nll = self.data_nll(batch)
        reg_loss = self.penalty(self.net.W, self.row_scale)
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
        log_probs = self.net.logits(self.contexts).detach().log_softmax(dim=1)
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
        norms = [p.grad.detach().norm() for p in self.net.parameters() if p.grad is not None]
        self.grad_norm = (
            norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.net.parameters())
