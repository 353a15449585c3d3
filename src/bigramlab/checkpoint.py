"""Reading a training checkpoint without Lightning (sample and evaluate import only this)."""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bigramlab.errors import UserError


@dataclass(frozen=True)
class TrainedModel:
    """What a checkpoint holds of the model: W (V, V) float32 and its vocabulary `itos`; the
    update it was saved at; whether it has the loop state to resume training from."""

    W: Tensor
    itos: str
    global_step: int
    resumable: bool


def load_trained_model(path: str | Path) -> TrainedModel:
    """A checkpoint of bigramlab.train, loaded without running pickled code and checked."""
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoints" / "last.ckpt"
        example = inside if inside.is_file() else "<run dir>/checkpoints/last.ckpt"
        raise UserError(f"checkpoint {path} is a directory: pass a .ckpt file, e.g. ckpt={example}")
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist: check the path to the .ckpt file")
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
        W = ckpt["state_dict"]["W"]
        itos = ckpt["hyper_parameters"]["vocab"]
    except (KeyError, TypeError):
        raise UserError(
            f"{path} is not a bigramlab checkpoint (no W or vocabulary in it)"
        ) from None
    if not isinstance(itos, str) or W.shape != (len(itos), len(itos)):
        raise UserError(f"{path} is damaged: W has shape {tuple(W.shape)} for {len(itos)} tokens")
    return TrainedModel(W.float(), itos, int(ckpt.get("global_step", 0)), "loops" in ckpt)
