"""Train the bigram model: `python -m bigramlab.train [overrides]` (config: conf/train.yaml).

config -> data module (corpus, vocabulary, splits, counts) -> BigramLM -> Lightning Trainer with
the TensorBoard logger and the comparison report -> metrics.json and checkpoints/last.ckpt.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.multiprocessing import ProcessRaisedException

from bigramlab.callbacks import FinalStep
from bigramlab.config import register_resolvers, validate_train
from bigramlab.counting import mle_probs, nll
from bigramlab.data import SPLITS, BigramDataModule
from bigramlab.errors import Diverged, UserError, from_worker_traceback
from bigramlab.model import BigramLM, read_checkpoint

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
METRIC_KEYS = [f"{split}_nll" for split in SPLITS] + [f"mle_{split}_nll" for split in SPLITS]
log = logging.getLogger(__name__)
register_resolvers()
# Lightning 2.6 calls a torch.utils._pytree API that newer torch deprecates, twice a run; nothing a
# user of this pipeline can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def final_metrics(W: Tensor, reg: float, counts: dict[str, Tensor], alpha: float) -> dict[str, Any]:
    """Data NLL (no reg term) of the learned model W (V, V) and of the counted one on every split,
    in float64; `None` for an empty split. `counts`: {split: (V, V)}.

    `final_loss` is the training objective at W over the whole train split:
    train NLL + reg · mean(W²).
    """
    W = W.detach().cpu().double()
    log_probs = W.log_softmax(dim=1)
    mle_log_probs = mle_probs(counts["train"], alpha).log()
    metrics: dict[str, Any] = {}
    for split in SPLITS:
        metrics[f"{split}_nll"] = nll(log_probs, counts[split])
    for split in SPLITS:
        metrics[f"mle_{split}_nll"] = nll(mle_log_probs, counts[split])
    metrics["final_loss"] = metrics["train_nll"] + reg * float((W**2).mean())
    return metrics


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, written to a temporary file and renamed: never half-written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp, output_dir / "metrics.json")


def failed_metrics(status: str, reason: str, steps: int | None) -> dict[str, Any]:
    """metrics.json of a run that did not finish: every metric null, and why."""
    return {**dict.fromkeys(METRIC_KEYS), "final_loss": None, "steps": steps, "status": status,
            "reason": reason}  # fmt: skip


def resume_point(ckpt_path: str, itos: str) -> int:
    """The step a checkpoint resumes from, checked to be a training checkpoint of this data."""
    checkpoint = read_checkpoint(ckpt_path)
    ckpt_itos = checkpoint["hyper_parameters"]["vocab"]
    if ckpt_itos != itos:
        raise UserError(
            f"{ckpt_path} was trained on another vocabulary ({ckpt_itos!r}, this data has "
            f"{itos!r}): resume with the data set it was trained on"
        )
    if "loops" not in checkpoint:
        raise UserError(f"{ckpt_path} holds weights only: resume from a last.ckpt of a run")
    return int(checkpoint["global_step"])


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit one model as `cfg` says; write metrics.json into the run directory and return it."""
    validate_train(cfg)
    check_launcher(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)

    datamodule: BigramDataModule = instantiate(
        cfg.data,
        corpus=cfg.dataset,
        batch_format="counts" if cfg.model.impl == "counts" else "pairs",
    )
    datamodule.setup("fit")  # the model's size is the vocabulary's, known only from the data
    model: BigramLM = instantiate(
        cfg.model, vocab=datamodule.vocab.itos, optimizer=instantiate(cfg.optim)
    )
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    # A resumed run writes into the same event files' directory; purge_step tells TensorBoard to
    # drop what the interrupted run logged after its checkpoint, so no step appears twice.
    resume_step = resume_point(cfg.ckpt_path, datamodule.vocab.itos) if cfg.ckpt_path else None
    logger = instantiate(cfg.logger, **({"purge_step": resume_step} if resume_step else {}))
    checkpoint_dir = OmegaConf.select(cfg, "callbacks.checkpoint.dirpath")
    last_ckpt = Path(checkpoint_dir or output_dir / "checkpoints") / "last.ckpt"
    callbacks.append(FinalStep(last_ckpt))
    try:
        trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    except InstantiationException as e:
        # Lightning's own checks of the trainer's values: the user's to fix.
        if not isinstance(e.__cause__, MisconfigurationException | ValueError | TypeError):
            raise
        raise UserError(f"{e.__cause__} ({_trainer_choice(cfg)}): {_trainer_fix(cfg)}") from None
    try:
        fit(trainer, model, datamodule, cfg.ckpt_path)
    except Diverged as e:
        if trainer.is_global_zero:
            write_metrics(output_dir, failed_metrics("diverged", str(e), e.step))
        raise

    # The run's result is its last checkpoint, which FinalStep wrote in the process(es) that
    # trained: under ddp_fork/ddp_spawn this process's trainer and callbacks never saw the steps.
    checkpoint = read_checkpoint(last_ckpt)
    metrics = final_metrics(
        checkpoint["state_dict"]["W"], model.hparams.reg, datamodule.counts, cfg.mle.alpha
    )
    metrics["steps"] = int(checkpoint["global_step"])
    metrics["status"] = "ok"
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
    return metrics


def _trainer_choice(cfg: DictConfig) -> str:
    keys = ("accelerator", "devices", "strategy")
    return ", ".join(f"trainer.{k}={cfg.trainer[k]}" for k in keys if k in cfg.trainer)


def _trainer_fix(cfg: DictConfig) -> str:
    if cfg.trainer.accelerator in ("gpu", "cuda"):
        if str(cfg.trainer.get("strategy", "")).startswith("ddp"):
            return "without a GPU, use trainer=ddp_cpu for processes on CPUs"
        return "without a GPU, use trainer=cpu, or trainer=default to pick what this machine has"
    return "set trainer.devices to a whole number >= 1 and trainer.strategy to e.g. ddp_fork"


def fit(
    trainer: L.Trainer, model: BigramLM, datamodule: BigramDataModule, ckpt_path: str | None
) -> None:
    """trainer.fit, with a UserError (Diverged) of a ddp_fork/ddp_spawn worker raised here again."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except ProcessRaisedException as e:
        error = from_worker_traceback(e.msg)
        if error is None:
            raise
        raise error from None


def check_launcher(cfg: DictConfig) -> None:
    """Refuse Lightning's `ddp` inside a multirun: it runs the command line again for every rank,
    and with -m each rank would run the whole sweep (Lightning #11300)."""
    if HydraConfig.get().mode == RunMode.MULTIRUN and cfg.trainer.get("strategy") == "ddp":
        raise UserError(
            "trainer.strategy=ddp runs the command again in every process, which a multirun (-m) "
            "cannot take: add trainer.strategy=ddp_spawn (or use trainer=ddp_cpu on CPUs)"
        )


def _remove_unused_run_dir(output_dir: Path) -> None:
    """Remove the run directory Hydra made for a run that failed before writing anything of its own,
    so that no run directory without results is left behind to be mistaken for a run.
    """
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log", "train.log"}
    if not output_dir.is_dir() or any(p.name not in hydra_files for p in output_dir.iterdir()):
        return
    for p in output_dir.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    output_dir.rmdir()


def _show(value: float | None) -> str:
    return "null (empty split)" if value is None else f"{value:.6f}"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the objective (`optimized_metric`) for sweepers.

    A bad input or a diverging run ends a single run with one `error:` line and exit status 2.
    Inside a multirun it only ends that job: its metrics.json says why, its objective is inf, and
    the sweep goes on.
    """
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = train(cfg)
    except UserError as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error(f"job failed: {e}")
            log.info(f"objective {cfg.optimized_metric} = inf")
            if not (output_dir / "metrics.json").exists():
                write_metrics(output_dir, failed_metrics("failed", str(e), None))
            return math.inf
        if rank_zero_only.rank == 0:  # under `ddp` every rank runs this; one says it
            print(f"error: {e}", file=sys.stderr)
        if not isinstance(e, Diverged):
            _remove_unused_run_dir(output_dir)
        sys.exit(2)
    value = metrics.get(cfg.optimized_metric)
    objective = math.inf if value is None else float(value)
    if rank_zero_only.rank != 0:
        return objective
    print(
        f"steps {metrics['steps']}  final loss {metrics['final_loss']:.6f}\n"
        f"  learned NLL  train {_show(metrics['train_nll'])}  val {_show(metrics['val_nll'])}"
        f"  test {_show(metrics['test_nll'])}\n"
        f"  MLE (α={cfg.mle.alpha}) train {_show(metrics['mle_train_nll'])}"
        f"  val {_show(metrics['mle_val_nll'])}  test {_show(metrics['mle_test_nll'])}\n"
        f"run directory: {output_dir}\n"
        f"  tensorboard --logdir {output_dir}"
    )
    log.info(f"objective {cfg.optimized_metric} = {objective}")
    return objective


if __name__ == "__main__":
    main()
