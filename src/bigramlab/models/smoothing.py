"""The counted model a config names: counted.smoothing (and counted.alpha for additive) to the
fitted model (bigramlab.models.counted's interface)."""

from __future__ import annotations

import torch
from torch import Tensor

from bigramlab.errors import UserError
from bigramlab.models.counted import AdditiveModel, CountedModel
from bigramlab.models.kneser_ney import KneserNey

SMOOTHINGS = ("additive", "kneser_ney")


def check_smoothing(smoothing: str) -> None:
    """Raise UserError unless `smoothing` is one of SMOOTHINGS."""
    if smoothing not in SMOOTHINGS:
        raise UserError(
            f"counted.smoothing={smoothing!r} is unknown: choose one of {', '.join(SMOOTHINGS)}"
        )


def counted_model(
    counts: dict[str, Tensor],
    alpha: float,
    smoothing: str = "additive",
    contexts: Tensor | None = None,
    context: int = 1,
    *,
    itos: str,
) -> CountedModel:
    """The counted model of `counts` ({split: N (C, V)}, fitted on "train"), contexts `contexts`
    (C,) of `context` tokens (default: the bigram's, every token) over the vocabulary `itos`,
    smoothed as `smoothing` says (α is additive smoothing's alone)."""
    check_smoothing(smoothing)
    if contexts is None:
        contexts = torch.arange(counts["train"].shape[0])
    if smoothing == "additive":
        return AdditiveModel(counts, contexts, context, itos, alpha)
    return KneserNey(counts, contexts, context, itos)
