"""TensorBoard reporting: the counted model (MLE) beside the learned one, at every validation.

Everything is written with TensorBoard's own SummaryWriter at `trainer.global_step`, the number of
gradient updates so far, so a validation point and the training loss logged at the same step
describe the same W.
"""

from __future__ import annotations

import lightning as L
from torch.utils.tensorboard import SummaryWriter

from bigramlab.counting import mle_probs, nll
from bigramlab.data import BigramDataModule
from bigramlab.model import BigramLM


class ComparisonReport(L.Callback):
    """At the start and at each validation: `nll/<split>` of the learned model and `mle/nll_<split>`
    of the counted one, P = (N_train + α) / row sums, for every non-empty split.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.mle_nll: dict[str, float] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        datamodule: BigramDataModule = trainer.datamodule
        log_probs = mle_probs(datamodule.counts["train"], self.alpha).log()
        # The MLE does not change during training: computed once, logged beside every validation.
        self.mle_nll = {
            split: value
            for split, counts in datamodule.counts.items()
            if (value := nll(log_probs, counts)) is not None
        }

    def on_validation_end(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        writer = _writer(trainer)
        if writer is None:
            return
        step = trainer.global_step
        for split, value in pl_module.split_nll_values.items():
            writer.add_scalar(f"nll/{split}", float(value), step)
        for split, value in self.mle_nll.items():
            writer.add_scalar(f"mle/nll_{split}", value, step)


def _writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The TensorBoard writer of rank 0, or None (other ranks, or no TensorBoard logger)."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            return logger.experiment
    return None
