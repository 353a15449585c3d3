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
from omegaconf import DictConfig

from bigramlab.config import register_resolvers, validate_train
from bigramlab.counting import mle_probs, nll
from bigramlab.data import BigramDataModule
from bigramlab.errors import Diverged, UserError
from bigramlab.model import SPLITS, BigramLM, read_checkpoint

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
METRIC_KEYS = [f"{split}_nll" for split in SPLITS] + [f"mle_{split}_nll" for split in SPLITS]
log = logging.getLogger(__name__)
register_resolvers()
# Lightning 2.6 calls a torch.utils._pytree API that newer torch deprecates, twice a run; nothing a
# user of this pipeline can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def final_metrics(model: BigramLM, datamodule: BigramDataModule, alpha: float) -> dict[str, Any]:
    """Data NLL (no reg term) of the learned and the counted model on every split, in float64.

    `None` for an empty split. `final_loss` is the training objective at the final W over the
    whole train split: train NLL + reg · mean(W²).
    """
    W = model.W.detach().cpu().double()
    log_probs = W.log_softmax(dim=1)
    mle_log_probs = mle_probs(datamodule.counts["train"], alpha).log()
    metrics: dict[str, Any] = {}
    for split in SPLITS:
        metrics[f"{split}_nll"] = nll(log_probs, datamodule.counts[split])
    for split in SPLITS:
        metrics[f"mle_{split}_nll"] = nll(mle_log_probs, datamodule.counts[split])
    metrics["final_loss"] = metrics["train_nll"] + model.hparams.reg * float((W**2).mean())
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
    try:
        trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    except InstantiationException as e:
        if not isinstance(e.__cause__, MisconfigurationException):
            raise
        raise UserError(
            f"{e.__cause__} (trainer.accelerator={cfg.trainer.accelerator}): "
            "use trainer=cpu, or trainer=default to pick what this machine has"
        ) from None
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    except Diverged as e:
        write_metrics(output_dir, failed_metrics("diverged", str(e), e.step))
        raise
    if trainer.global_step % cfg.trainer.val_check_interval:
        # Every curve ends at the last step, whatever the validation interval.
        trainer.validate(model, datamodule=datamodule, verbose=False, weights_only=True)
    # Periodic saves may predate the last step; last.ckpt must hold the final W.
    trainer.save_checkpoint(
        Path(trainer.checkpoint_callback.dirpath) / "last.ckpt", weights_only=False
    )

    metrics = final_metrics(model, datamodule, cfg.mle.alpha)
    metrics["steps"] = trainer.global_step
    metrics["status"] = "ok"
    write_metrics(output_dir, metrics)
    return metrics


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
        print(f"error: {e}", file=sys.stderr)
        if not isinstance(e, Diverged):
            _remove_unused_run_dir(output_dir)
        sys.exit(2)
    print(
        f"steps {metrics['steps']}  final loss {metrics['final_loss']:.6f}\n"
        f"  learned NLL  train {_show(metrics['train_nll'])}  val {_show(metrics['val_nll'])}"
        f"  test {_show(metrics['test_nll'])}\n"
        f"  MLE (α={cfg.mle.alpha}) train {_show(metrics['mle_train_nll'])}"
        f"  val {_show(metrics['mle_val_nll'])}  test {_show(metrics['mle_test_nll'])}\n"
        f"run directory: {output_dir}\n"
        f"  tensorboard --logdir {output_dir}"
    )
    value = metrics.get(cfg.optimized_metric)
    objective = math.inf if value is None else float(value)
    log.info(f"objective {cfg.optimized_metric} = {objective}")
    return objective


if __name__ == "__main__":
    main()
