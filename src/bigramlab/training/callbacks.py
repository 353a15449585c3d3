"""How a training run is stepped, watched and saved: Lightning callbacks and a checkpoint plugin.

    StepLosses          every step's losses, read from the device in batches: written to
                        TensorBoard (loss/*) and checked for divergence
    ValidateLastStep    the last step is always validated, whatever val_check_interval
    LastCheckpoint      the one writer of checkpoints/last.ckpt: every N steps and at the end
    LossProgressBar     the progress bar shows the loss without waiting for the device every step
    FinalMetrics        metrics.json of the model training ends with (final_metrics)
    AtomicCheckpointIO  a checkpoint is written whole or not at all

They run wherever training runs: in this process, or in each process that Lightning's ddp_fork and
ddp_spawn start, whose own state (and this process's copy of it) is gone when fit returns.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from torch import Tensor

from bigramlab import __version__
from bigramlab.comparison.metrics import COMPARISON_KEYS, compare
from bigramlab.data.vocab import SPLITS
from bigramlab.errors import Diverged, UserError
from bigramlab.models.counted import CountedModel
from bigramlab.models.learned import LearnedLM
from bigramlab.models.lm import LanguageModel
from bigramlab.models.losses import Penalty
from bigramlab.models.smoothing import counted_model
from bigramlab.training.datamodule import NgramData
from bigramlab.training.module import LanguageModelModule
from bigramlab.training.results import write_metrics
from bigramlab.writers.atomic import write_atomically
from bigramlab.writers.tensorboard import add_scalars, tensorboard


class StepLosses(L.Callback):
    """Every training step's `objective`, `nll` and `penalty` (loss/total, loss/nll, loss/reg in
    TensorBoard), at the step whose W they are the loss of, and the norm of the gradient the
    update used (loss/grad_norm: the objective is convex, so it says how far from its optimum a
    run is); and the divergence check.

    The step outputs stay on the device and are read back (one host sync for all of them) every
    `trainer.log_every_n_steps` steps, and before every validation, checkpoint and the end, so
    that a broken W is never reported or saved. Training stops with Diverged at the first step
    whose loss is not finite or above `max_loss`, or whose updated W is not finite: a mean NLL of
    1000 nats gives the data probabilities below e^-1000, so gradient descent has blown up even
    where float32 has not overflowed yet.
    """

    TAGS = ("loss/total", "loss/nll", "loss/reg", "loss/grad_norm")

    def __init__(self, max_loss: float = 1000.0) -> None:
        self.max_loss = max_loss
        self.pending: list[tuple[int, Tensor]] = []  # (global step after the update, values)
        self.wrote = False

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: LanguageModelModule,
        outputs: dict[str, Tensor],
        batch: Any,
        batch_idx: int,
    ) -> None:
        finite = [torch.isfinite(p).all() for p in pl_module.net.parameters()]
        W_finite = torch.stack(finite).all().to(outputs["objective"].dtype)
        grad_norm = pl_module.grad_norm
        if grad_norm is None:
            grad_norm = torch.full_like(W_finite, float("nan"))
        values = [
            outputs["objective"],
            outputs["nll"],
            outputs["penalty"],
            grad_norm.to(W_finite.dtype),
            W_finite,
        ]
        self.pending.append((trainer.global_step, torch.stack(values)))
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self.flush(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> None:
        self.flush(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: LanguageModelModule, checkpoint: dict[str, Any]
    ) -> None:
        self.flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> None:
        self.flush(trainer)
        self.flush_file(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: LanguageModelModule, exception: BaseException
    ):
        # A run that diverged keeps the losses that led there (and is not checked again).
        self.flush(trainer, check=False)
        self.flush_file(trainer)

    def flush_file(self, trainer: L.Trainer) -> None:
        """Flush the event file (the report does at each validation). Only where losses were
        written: in a process that never trained (the main one of ddp_fork), asking for the writer
        would open a second event file."""
        if self.wrote and (writer := tensorboard(trainer)):
            writer.flush()

    def flush(self, trainer: L.Trainer, check: bool = True) -> None:
        """Write the pending losses; raise Diverged for the first bad step among them."""
        if not self.pending:
            return
        values = torch.stack([v for _, v in self.pending]).tolist()  # one host sync for them all
        steps = [s for s, _ in self.pending]
        self.pending.clear()
        writer = tensorboard(trainer)
        for global_step, (objective, nll, reg, grad_norm, W_finite) in zip(steps, values):
            if writer is not None:
                losses = (objective, nll, reg, grad_norm)
                add_scalars(writer, dict(zip(self.TAGS, losses)), global_step - 1)
                self.wrote = True
            if not check or (objective <= self.max_loss and W_finite):  # NaN fails `<=`
                continue
            if not objective <= self.max_loss:
                # The loss of step k is that of W before update k + 1.
                step, what = global_step - 1, f"the loss is {objective:g}"
            else:
                step, what = global_step, "W is not finite after the update"
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            raise Diverged(
                f"training diverged at step {step}: {what} with optim.lr={lr:g}, "
                f"model.reg={trainer.lightning_module.penalty.reg:g}; lower optim.lr",
                step=step,
            )


class ValidateLastStep(L.Callback):
    """Asks the trainer to stop at max_steps, which makes Lightning validate that step: every
    curve ends at the last step, whatever `trainer.val_check_interval`."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: LanguageModelModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class LastCheckpoint(Checkpoint):
    """Saves the whole training state to `dirpath`/last.ckpt every `every_n_train_steps` steps and
    at the end of training (after the last validation), inside `fit`: so last.ckpt holds the final
    W also where fit runs in other processes (ddp_fork, ddp_spawn). The one writer of the file.
    `final_state`: the end's checkpoint holds the whole state (full: the run can be resumed to
    train further) or the model alone (weights: what sample, evaluate and export read).

    A `Checkpoint`, so Lightning adds no ModelCheckpoint of its own; one added to the callbacks
    (`+callbacks.best._target_=lightning.pytorch.callbacks.ModelCheckpoint`, monitoring `nll/val`,
    say) writes its own files beside it."""

    def __init__(
        self, dirpath: str | Path, every_n_train_steps: int = 100, final_state: str = "full"
    ) -> None:
        if final_state not in ("full", "weights"):
            raise UserError(
                f"callbacks.checkpoint.final_state={final_state!r} is unknown: choose full (the "
                "run can be resumed to train further) or weights (the model alone, smaller)"
            )
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self.final_state = final_state
        # The command that trains this run (bigramlab.train sets it for a single run): on Ctrl-C,
        # rank 0 prints it with the ckpt_path= that resumes the run.
        self.command: str | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        run_dir = self.path.parent.parent
        if self.command is None:
            return
        if self.path.is_file():
            step = torch.load(self.path, map_location="cpu", weights_only=True)["global_step"]
            hint = (
                f"interrupted at step {trainer.global_step}; run directory: {run_dir}\n"
                f"  resume from its checkpoint of step {step} with:\n"
                f"  {self.command} ckpt_path={self.path}"
            )
        else:
            hint = (
                f"interrupted at step {trainer.global_step}, before its first checkpoint "
                f"(callbacks.checkpoint.every_n_train_steps={self.every_n_train_steps}); run "
                f"directory: {run_dir}: nothing to resume, start the run again"
            )
        print(hint, file=sys.stderr, flush=True)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: LanguageModelModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        every = self.every_n_train_steps
        # The last step is saved once, at the end (after its validation).
        if every and step % every == 0 and step < trainer.max_steps:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> None:
        # weights: the optimizer's state (L-BFGS holds 2 x history_size copies of W) and the
        # callbacks' are left out; sample, evaluate and export read the rest.
        trainer.save_checkpoint(self.path, weights_only=self.final_state == "weights")


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
        pl_module: LanguageModelModule,
        outputs: dict[str, Tensor],
        batch: Any,
        batch_idx: int,
    ) -> None:
        bar, n = self.train_progress_bar, batch_idx + 1
        if self.is_enabled and bar is not None and (n % self.refresh_rate == 0 or n == bar.total):
            self.loss = float(outputs["objective"])  # the bar is redrawn now (see super)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def init_sanity_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def init_validation_tqdm(self) -> Tqdm:
        # A validation is one batch of a few milliseconds: a bar of its own at every validation
        # would only add lines to a log.
        return Tqdm(disable=True)

    def get_metrics(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> dict[str, Any]:
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
        write_atomically(Path(path), lambda tmp: torch.save(checkpoint, tmp))


@functools.lru_cache(maxsize=4)
def counted_of(data: NgramData, alpha: float, smoothing: str = "additive") -> CountedModel:
    """The counted model of the data (counted.smoothing, counted.alpha), fitted on its train
    counts: made once for the report and metrics.json of a run (and the jobs of a sweep on the
    same data)."""
    return counted_model(
        data.counts, alpha, smoothing, data.contexts, data.context, itos=data.vocab.itos
    )


@torch.no_grad()
def final_metrics(
    model: LearnedLM, penalty: Penalty, data: NgramData, counted: LanguageModel
) -> dict[str, Any]:
    """metrics.json's numbers (bigramlab.training.results) for the final model, in float64: the
    learned and the counted model's NLL on every split (None where a split is empty), the
    comparison, and the training objective over the whole train split."""
    compared = compare(model, counted, data.contexts, data.counts)
    metrics: dict[str, Any] = {f"{split}_nll": compared.get(f"{split}_nll") for split in SPLITS}
    metrics |= {f"counted_{split}_nll": compared.get(f"counted_{split}_nll") for split in SPLITS}
    metrics |= {key: compared.get(key) for key in COMPARISON_KEYS}
    scale = penalty.row_scale(model)
    metrics["final_loss"] = metrics["train_nll"] + float(penalty(model.W.double(), scale))
    return metrics


class FinalMetrics(L.Callback):
    """metrics.json of the model training ends with (final_metrics, the counted model's `alpha`
    and `smoothing`), written into `run_dir` by rank 0. Computed where training ran, by every
    process (each holds the merged counts and the same W); `metrics` keeps it in each."""

    def __init__(self, run_dir: str | Path, alpha: float, smoothing: str = "additive") -> None:
        self.run_dir = Path(run_dir)
        self.alpha, self.smoothing = alpha, smoothing
        self.metrics: dict[str, Any] | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> None:
        # Training is over (checkpoints are written before this hook): the optimizer's state,
        # 2 x history_size copies of W for L-BFGS, is dropped before the float64 metrics, which
        # would otherwise stack on it.
        for optimizer in trainer.optimizers:
            optimizer.state.clear()
        model = pl_module.net
        if model.W.device.type != "cpu":  # to where the counts are, leaving W on its device
            model = copy.deepcopy(model).cpu()
        data = trainer.datamodule.data
        counted = counted_of(data, self.alpha, self.smoothing)
        metrics = final_metrics(model, pl_module.penalty, data, counted)
        # The thread count is recorded: a sum split across threads adds in another order, so
        # the last digits of the NLLs depend on it.
        metrics |= {
            "steps": trainer.global_step,
            "status": "ok",
            "threads": torch.get_num_threads(),
            "version": __version__,
        }
        if trainer.is_global_zero:
            write_metrics(self.run_dir, metrics)
        self.metrics = metrics
