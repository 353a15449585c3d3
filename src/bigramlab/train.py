"""Train the learned model: `python -m bigramlab.train [overrides]` (config: conf/train.yaml).

conf/train.yaml -> data module (corpus, vocabulary, splits, counts) -> LanguageModelModule (handed
its net, optimizer and penalty: model.module) -> Lightning Trainer, with StepLosses and
ComparisonReport writing TensorBoard -> checkpoints/last.ckpt -> metrics.json (FinalMetrics).
Everything is built from the config by `instantiate`; this file is the straight line between them.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.multiprocessing import ProcessRaisedException

from bigramlab.errors import Diverged, UserError, from_worker_traceback
from bigramlab.models.checkpoint import Checkpoint, load_checkpoint
from bigramlab.models.learned import describe
from bigramlab.plumbing.cli import config_error, entry_point, exit_now
from bigramlab.plumbing.config import (
    recorded_run_settings,
    run_data_settings,
    smoothing_name,
    validate_train,
    whole_number,
)
from bigramlab.training.callbacks import FinalMetrics, LastCheckpoint
from bigramlab.training.datamodule import NgramDataModule
from bigramlab.training.module import LanguageModelModule
from bigramlab.training.results import failed_metrics, read_metrics, write_metrics

log = logging.getLogger(__name__)


def check_resume(cfg: DictConfig, settings: dict[str, Any]) -> Checkpoint:
    """The checkpoint `cfg.ckpt_path`, after checking that it is a training checkpoint made by a
    run with the same data (`settings`, this run's run_data_settings, against those the
    checkpoint or its run directory recorded) and model settings, and that there are steps left
    (before any data is read; LanguageModelModule.on_load_checkpoint checks the data's vocabulary
    once it is)."""
    ckpt = load_checkpoint(cfg.ckpt_path, key="ckpt_path")
    if not ckpt.resumable:
        raise UserError(
            f"{cfg.ckpt_path} holds the model's weights only (a run with "
            "callbacks.checkpoint.final_state=weights): it cannot be resumed; train a new run, or "
            "keep the whole state with callbacks.checkpoint.final_state=full"
        )
    then = recorded_run_settings(cfg.ckpt_path, ckpt.run_settings)
    if then is not None:
        # The counted model compared with may change on a resume; the data may not.
        keys = [k for k in then.keys() | settings.keys() if not k.startswith("counted.")]
        # A run recorded without its data set's option is compared by its settings alone.
        if then.get("dataset") is None:
            keys.remove("dataset")
        if changed := sorted(key for key in keys if then.get(key) != settings.get(key)):
            key = changed[0]
            if "dataset" in changed:
                key = "dataset"
            overrides = Path(cfg.ckpt_path).absolute().parent.parent / ".hydra" / "overrides.yaml"
            given = " ".join(OmegaConf.load(overrides)) if overrides.is_file() else "?"
            raise UserError(
                f"{cfg.ckpt_path} was trained with other data ({key} was {then.get(key)}, is "
                f"{settings.get(key)}): resume with the overrides of that run "
                f"({given or 'none'}) and the new ones"
            )
    now = describe(cfg.model.context, cfg.model.features, cfg.model.max_span)
    if ckpt.model.describe() != now:
        raise UserError(
            f"{cfg.ckpt_path} is a model of another kind ({ckpt.model.describe()}; this run has "
            f"{now}): resume with the model settings it was trained with"
        )
    if cfg.trainer.max_steps <= ckpt.global_step:
        raise UserError(
            f"trainer.max_steps={cfg.trainer.max_steps} is not past the checkpoint's step "
            f"{ckpt.global_step}: set trainer.max_steps above {ckpt.global_step} to train further"
        )
    return ckpt


def check_optimizer(cfg: DictConfig, model: LanguageModelModule) -> None:
    """Build the optimizer once on a stand-in parameter: a key it does not take (`+optim.lrr=10`)
    or a bad value is an error now, before any training, not at the start of fit."""
    try:
        model.optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as e:
        raise (config_error(e, "optim", cfg) or e) from None


def optimizer_note(cfg: DictConfig) -> str | None:
    """A note where the model and the optimizer do not suit each other, with plain SGD at a
    bigram's step (docs/ngrams.md has the numbers); None otherwise:

    - interpolated or skipgram features: a row that many contexts share takes the sum of their
      gradients, and the step can make the loss rise;
    - onehot at k > 1: each context's row learns from its own events only, so the bigram's
      1000 steps stop far from the optimum."""
    if cfg.optim.get("_target_") != "torch.optim.SGD":
        return None
    if cfg.model.features != "onehot":
        return (
            f"note: model.features={cfg.model.features} with optim=sgd (lr {cfg.optim.lr:g}): a "
            "row that many contexts share (the empty suffix's above all) takes the sum of their "
            "gradients, so a step that suits the bigram can make the loss rise; optim=lbfgs suits "
            "these features (or lower optim.lr, e.g. 10)"
        )
    if cfg.model.context > 1:
        return (
            f"note: model.context={cfg.model.context} with optim=sgd: each context's row learns "
            "from its own events only, so plain gradient descent needs far more steps than the "
            "bigram's; optim=lbfgs trainer.max_steps=15 fits it, and a smaller model.reg (e.g. "
            "0.0001) suits its many rows"
        )
    return None


def cpu_threads(cfg: DictConfig) -> int:
    """torch's CPU threads for each process of the run: `threads`, or the cores this process may
    use (os.sched_getaffinity, where the platform has it) shared among the processes on this
    machine (trainer.devices of a DDP strategy, times the jobs a joblib launcher runs at once),
    at least 1."""
    if cfg.get("threads") is not None:
        whole_number(cfg, "threads", 1, "threads=1 (torch's CPU threads in each process)")
        return int(cfg.threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    devices = cfg.trainer.get("devices")
    distributed = str(cfg.trainer.get("strategy", "")).startswith("ddp")
    processes = devices if distributed and isinstance(devices, int) and devices > 0 else 1
    if HydraConfig.initialized():
        jobs = HydraConfig.get().launcher.get("n_jobs")
        if isinstance(jobs, int) and jobs != 1:  # joblib's -1: as many jobs as cores
            processes *= jobs if jobs > 0 else cores or 1
    return max(1, (cores or 1) // processes)


def check_launcher(cfg: DictConfig) -> None:
    """Refuse Lightning's `ddp` inside a multirun: it runs the command line again for every rank,
    and with -m each rank would run the whole sweep (Lightning #11300)."""
    if HydraConfig.get().mode == RunMode.MULTIRUN and cfg.trainer.get("strategy") == "ddp":
        raise UserError(
            "trainer.strategy=ddp runs the command again in every process, which a multirun (-m) "
            "cannot take: add trainer.strategy=ddp_spawn (or use trainer=ddp_cpu on CPUs)"
        )


def make_trainer(cfg: DictConfig, logger: Any, callbacks: list[L.Callback]) -> L.Trainer:
    """The Trainer of cfg.trainer; Lightning's refusal of an accelerator, device count or strategy
    becomes a UserError with the fix for this machine."""
    try:
        return instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    except InstantiationException as e:
        if not isinstance(e.__cause__, MisconfigurationException | ValueError):
            raise
        keys = ("accelerator", "devices", "strategy")
        choice = ", ".join(f"trainer.{k}={cfg.trainer[k]}" for k in keys if k in cfg.trainer)
        if cfg.trainer.accelerator in ("gpu", "cuda"):
            fix = "without a GPU, use trainer=cpu, or trainer=default to pick what this machine has"
            if str(cfg.trainer.get("strategy", "")).startswith("ddp"):
                fix = "without a GPU, use trainer=ddp_cpu for processes on CPUs"
        else:
            fix = "set trainer.devices to a whole number >= 1 and trainer.strategy to e.g. ddp_fork"
        raise UserError(f"{e.__cause__} ({choice}): {fix}") from None


def fit(
    trainer: L.Trainer,
    model: LanguageModelModule,
    datamodule: NgramDataModule,
    ckpt_path: str | None,
):
    """trainer.fit, with a UserError (Diverged) of a ddp_fork/ddp_spawn worker raised here again."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except ProcessRaisedException as e:
        error = from_worker_traceback(e.msg)
        if error is None:
            raise
        raise error from None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit one model as `cfg` says; write metrics.json into the run directory and return it."""
    validate_train(cfg)
    check_launcher(cfg)
    settings = run_data_settings(cfg, HydraConfig.get().runtime.choices.get("dataset"))
    resumed = check_resume(cfg, settings) if cfg.ckpt_path else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    threads = cpu_threads(cfg)
    torch.set_num_threads(threads)
    # The processes a DDP launcher starts read it from the environment (Lightning sets its own
    # count only where OMP_NUM_THREADS is not set; ddp_fork's children keep this process's).
    os.environ["OMP_NUM_THREADS"] = str(threads)
    run_dir = Path(cfg.paths.output_dir)

    # The data are read and counted inside fit, by every process of the trainer (each its own
    # part of the corpus), and checked there: their errors still come before any training step.
    datamodule: NgramDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    model: LanguageModelModule = instantiate(cfg.model.module)
    model.run_settings = settings
    check_optimizer(cfg, model)
    note = optimizer_note(cfg)
    if note and rank_zero_only.rank == 0:
        print(note, flush=True)
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values()]
    if HydraConfig.get().mode == RunMode.RUN:  # a multirun's jobs are resumed by the sweep
        given = [o for o in HydraConfig.get().overrides.task if not o.startswith("ckpt_path=")]
        for callback in callbacks:
            if isinstance(callback, LastCheckpoint):
                callback.command = shlex.join(["python", "-m", "bigramlab.train", *given])
    final = FinalMetrics(run_dir, cfg.counted.alpha, cfg.counted.smoothing)
    callbacks.append(final)
    resume_step = resumed.global_step if resumed is not None else None
    # A resumed run writes into the same event files' directory; purge_step tells TensorBoard to
    # drop what the interrupted run logged after its checkpoint, so no step appears twice.
    logger = instantiate(cfg.logger, purge_step=resume_step)
    trainer = make_trainer(cfg, logger, callbacks)
    try:
        fit(trainer, model, datamodule, cfg.ckpt_path)
    except Diverged as e:
        if trainer.is_global_zero:
            write_metrics(run_dir, failed_metrics("diverged", str(e), e.step))
        raise

    # metrics.json is written by rank 0 of the processes that trained; where those were this one
    # (one process, or Lightning's ddp started this one as a rank) the callback holds it too.
    return final.metrics if final.metrics is not None else read_metrics(run_dir / "metrics.json")


def _show(value: float | None) -> str:
    return "null (empty split)" if value is None else f"{value:.6f}"


def train_task(cfg: DictConfig) -> float:
    """Train, print the summary, and return the objective (`optimized_metric`) for sweepers."""
    metrics = train(cfg)
    if rank_zero_only.rank == 0:
        print(
            f"steps {metrics['steps']}  final loss {metrics['final_loss']:.6f}\n"
            f"  learned NLL  train {_show(metrics['train_nll'])}  val {_show(metrics['val_nll'])}"
            f"  test {_show(metrics['test_nll'])}\n"
            f"  counted NLL  train {_show(metrics['counted_train_nll'])}"
            f"  val {_show(metrics['counted_val_nll'])}  test {_show(metrics['counted_test_nll'])}"
            f"  ({smoothing_name(cfg)})\n"
            f"run directory: {cfg.paths.output_dir}\n"
            f"  tensorboard --logdir {cfg.paths.output_dir}"
        )
    value = metrics.get(cfg.optimized_metric)
    if value is None:
        log.info(f"objective {cfg.optimized_metric}: none, its split is empty (returned as inf)")
        return math.inf
    log.info(f"objective {cfg.optimized_metric} = {value}")
    return float(value)


main = entry_point("train", train_task)

if __name__ == "__main__":
    main()
    exit_now()
