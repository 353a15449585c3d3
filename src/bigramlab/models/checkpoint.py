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
from bigramlab.models.features import FEATURES, feature_keys, logits, row_index


@dataclass(frozen=True)
class TrainedModel:
    """What a checkpoint holds of the model: W (R, V) float32, its vocabulary `itos`, its context
    length `order`, `features` and the feature keys of W's rows (bigramlab.models.features); the
    update it was saved at; whether it has the loop state to resume training from."""

    W: Tensor
    itos: str
    global_step: int
    resumable: bool
    order: int = 1
    features: str = "onehot"
    row_keys: Tensor | None = None

    def __post_init__(self) -> None:
        if self.row_keys is None:  # the bigram's: a row per token
            object.__setattr__(self, "row_keys", torch.arange(len(self.itos)))

    def logits(self, contexts: Tensor) -> Tensor:
        """Logits (C, V) for contexts (C,) (bigramlab.counting.ngrams keys of `order` tokens)."""
        keys = feature_keys(contexts, self.order, len(self.itos), self.features)
        return logits(self.W, row_index(self.row_keys, keys))

    def has_rows(self, contexts: Tensor) -> Tensor:
        """(C,) bool: whether each context has a row of its own (always, but for onehot)."""
        if self.features != "onehot":
            return torch.ones(len(contexts), dtype=torch.bool)
        return row_index(self.row_keys, contexts) < len(self.row_keys)

    def describe(self) -> str:
        """`model.context=k model.features=f`, as the configs spell it."""
        return f"model.context={self.order} model.features={self.features}"


def load_trained_model(path: str | Path, key: str = "ckpt") -> TrainedModel:
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
        W = ckpt["state_dict"]["W"]
        hparams = ckpt["hyper_parameters"]
        itos = hparams["vocab"]
        # Checkpoints from before longer contexts are bigrams: a row per token.
        order = hparams.get("context", 1)
        features = hparams.get("features", "onehot")
        row_keys = ckpt["state_dict"].get("row_keys", torch.arange(len(itos)))
    except (KeyError, TypeError, AttributeError):
        raise UserError(
            f"{path} is not a bigramlab checkpoint (no W or vocabulary in it)"
        ) from None
    if (
        not isinstance(itos, str)
        or not isinstance(order, int)
        or features not in FEATURES
        or W.shape != (len(row_keys), len(itos))
    ):
        raise UserError(
            f"{path} is damaged: W has shape {tuple(W.shape)} for {len(row_keys)} rows of "
            f"{len(itos)} tokens (context {order}, features {features})"
        )
    return TrainedModel(W.float(), itos, int(ckpt.get("global_step", 0)), "loops" in ckpt,
                        order, features, row_keys)  # fmt: skip
