"""Reading a training checkpoint back as the model it holds, without Lightning (sample, evaluate
and export import only this)."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bigramlab.errors import UserError
from bigramlab.models.features import check_features, check_max_span
from bigramlab.models.learned import LearnedLM

# The checkpoint's entry holding its run's data settings (LanguageModelModule.on_save_checkpoint).
RUN_SETTINGS = "run_settings"


def upgrade_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A state_dict under today's names, net.W and net.row_keys (renamed in place): older
    checkpoints name them W and row_keys, or lm.W and lm.row_keys."""
    for name in ("W", "row_keys"):
        for old in (name, f"lm.{name}"):
            if old in state:
                state[f"net.{name}"] = state.pop(old)
    return state


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint of bigramlab.train holds: the model, the update it was saved at,
    whether it has the loop state to resume training from, and the settings of the data its run
    trained and was scored on (bigramlab.plumbing.config.run_data_settings; None in checkpoints
    written before they were recorded)."""

    model: LearnedLM
    global_step: int
    resumable: bool
    run_settings: dict[str, Any] | None = None


def load_checkpoint(path: str | Path, key: str = "ckpt") -> Checkpoint:
    """A checkpoint of bigramlab.train, loaded without running pickled code and checked; `key` is
    the setting that named it, for the error messages."""
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoints" / "last.ckpt"
        example = inside if inside.is_file() else "<run dir>/checkpoints/last.ckpt"
        raise UserError(
            f"checkpoint {path} is a directory: pass a .ckpt file, e.g. {key}={example}"
        )
    if not path.exists():
        raise UserError(
            f"checkpoint {path} does not exist: check {key}, the path to the .ckpt file"
        )
    not_a_checkpoint = (
        f"{path} is not a PyTorch checkpoint file: pass a last.ckpt from bigramlab.train"
    )
    if not zipfile.is_zipfile(path):  # torch.save's format since PyTorch 1.6 is a zip archive
        raise UserError(not_a_checkpoint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(e), flags=re.IGNORECASE)
        reason = (
            f"it calls {found.group(1)}" if found else "it holds more than tensors and plain data"
        )
        raise UserError(
            f"refusing to load {path}: unpickling it could run code ({reason}); "
            "use a checkpoint written by bigramlab.train"
        ) from None
    except (RuntimeError, EOFError, OSError):
        raise UserError(not_a_checkpoint) from None
    try:
        state = upgrade_state_dict(ckpt["state_dict"])
        W = state["net.W"]
        hparams = ckpt["hyper_parameters"]
        itos = hparams["vocab"]
        # Checkpoints from before longer contexts are bigrams: a row per token.
        context = hparams.get("context", 1)
        features = hparams.get("features", "onehot")
        max_span = hparams.get("max_span")
        row_keys = state.get("net.row_keys", torch.arange(len(itos)))
    except (KeyError, TypeError, AttributeError):
        raise UserError(
            f"{path} is not a bigramlab checkpoint (no W or vocabulary in it)"
        ) from None
    if (
        not isinstance(itos, str)
        or not isinstance(context, int)
        or not _valid(check_features, features)
        or not _valid(check_max_span, max_span, context)
        or W.shape != (len(row_keys), len(itos))
    ):
        raise UserError(
            f"{path} is damaged: W has shape {tuple(W.shape)} for {len(row_keys)} rows of "
            f"{len(itos)} tokens (context {context}, features {features})"
        )
    model = LearnedLM(itos, context, features, row_keys, W.float(), max_span)
    model.requires_grad_(False)
    settings = ckpt.get(RUN_SETTINGS)
    return Checkpoint(
        model,
        int(ckpt.get("global_step", 0)),
        "loops" in ckpt and "optimizer_states" in ckpt,
        dict(settings) if isinstance(settings, dict) else None,
    )


def _valid(check: Callable[..., None], *values: Any) -> bool:
    """Whether `check` (one of the config checks) accepts `values`."""
    try:
        check(*values)
    except UserError:
        return False
    return True
