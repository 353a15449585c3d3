"""How a training run ends and what it leaves behind: Lightning callbacks and a checkpoint plugin.

    FinalStep           the last step is always validated and saved as checkpoints/last.ckpt
    DivergenceGuard     a blown-up run stops, naming its step, before any checkpoint of it
    LossProgressBar     the progress bar shows the loss without waiting for the device every step
    AtomicCheckpointIO  a checkpoint is written whole or not at all

They run wherever training runs: in this process, or in each process that Lightning's ddp_fork and
ddp_spawn start, whose own state (and this process's copy of it) is gone when fit returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from torch import Tensor

from bigramlab.errors import Diverged
from bigramlab.model import BigramLM


class FinalStep(L.Callback):
    """Validates the last step and saves it to `last_ckpt`, whatever the validation and checkpoint
    intervals, inside `fit`: so every curve ends at the last step and last.ckpt holds the final W
    also where fit runs in other processes (ddp_fork, ddp_spawn)."""

    def __init__(self, last_ckpt: str | Path) -> None:
        self.last_ckpt = Path(last_ckpt)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: BigramLM, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step >= trainer.max_steps:
            # Lightning validates when asked to stop; stopping at max_steps changes nothing else.
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        trainer.save_checkpoint(self.last_ckpt, weights_only=False)


class DivergenceGuard(L.Callback):
    """Stops training at the first step whose loss is not finite or above `max_loss`, or whose
    updated W is not finite, naming that step.

    A mean NLL of 1000 nats means the model gives the data probabilities below e^-1000: gradient
    descent has blown up, even where float32 has not overflowed yet. The losses are read from the
    device every `trainer.log_every_n_steps` steps, not every step (a host sync each time), and
    before every validation and checkpoint: a broken W is never reported or saved.
    """

    def __init__(self, max_loss: float = 1000.0) -> None:
        self.max_loss = max_loss
        self.pending: list[tuple[int, Tensor]] = []

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: BigramLM,
        outputs: dict[str, Tensor],
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["total"]
        W_finite = torch.isfinite(pl_module.W).all().to(loss.dtype)
        self.pending.append((trainer.global_step, torch.stack([loss, W_finite])))
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self.check(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        self.check(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: BigramLM, checkpoint: dict[str, Any]
    ) -> None:
        self.check(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        """Raise Diverged for the first bad step since the last check."""
        if not self.pending:
            return
        values = torch.stack([v for _, v in self.pending]).tolist()  # one host sync for them all
        steps = [s for s, _ in self.pending]
        self.pending.clear()
        for global_step, (loss, W_finite) in zip(steps, values):
            if loss <= self.max_loss and W_finite:  # a NaN loss fails `<=`
                continue
            if not loss <= self.max_loss:
                # The loss of step k is that of W before update k + 1.
                step, what = global_step - 1, f"the loss is {loss:g}"
            else:
                step, what = global_step, "W is not finite after the update"
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            raise Diverged(
                f"training diverged at step {step}: {what} with optim.lr={lr:g}, "
                f"model.reg={pl_module.hparams.reg:g}; lower optim.lr",
                step=step,
            )


class LossProgressBar(TQDMProgressBar):
    """Lightning's progress bar with the training loss, read from the device only when the bar is
    redrawn (every `refresh_rate` steps).

    `self.log("loss", ..., prog_bar=True)` would read it back after every step: Lightning turns
    the progress bar's values into numbers after each batch, logged in it or not, which on a GPU
    is a host sync per step.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.loss: float | None = None

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: BigramLM,
        outputs: dict[str, Tensor],
        batch: Any,
        batch_idx: int,
    ) -> None:
        bar, n = self.train_progress_bar, batch_idx + 1
        if self.is_enabled and bar is not None and (n % self.refresh_rate == 0 or n == bar.total):
            self.loss = float(outputs["total"])  # the bar is redrawn now (see super)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def init_sanity_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def init_validation_tqdm(self) -> Tqdm:
        # A validation is one batch (each split's counts) of a few milliseconds: a bar of its own
        # at every validation would only add lines to a log.
        return Tqdm(disable=True)

    def get_metrics(self, trainer: L.Trainer, pl_module: BigramLM) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        if self.loss is not None:
            items["loss"] = self.loss
        return items


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside its target and renames it into place, so a
    process killed mid-write leaves the previous checkpoint whole, never a truncated one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
