"""The counted models of the train counts: additive smoothing, P = (N + α) / row sums (α = 0:
the exact MLE), and interpolated modified Kneser–Ney (bigramlab.models.kneser_ney).

Notation (as on the lecture's board), for a vocabulary of V tokens and C contexts (for the bigram,
C = V, the context being the previous token; bigramlab.counting.ngrams for longer ones):
    N: (C, V) counts, N[i, j] = how often token j follows context i
    P: (C, V) row-stochastic probabilities, P[i, j] = P(j | i)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bigramlab.errors import UserError
from bigramlab.models.kneser_ney import KneserNey
from bigramlab.models.nll import split_nlls

SMOOTHINGS = ("additive", "kneser_ney")


def mle_probs(counts: Tensor, alpha: float = 0.0) -> Tensor:
    """P = (N + α) / row sums, in float64.  counts: (V, V) -> P: (V, V).

    With α = 0 this is the exact maximum-likelihood estimate. A row never seen in the data has no
    MLE (every distribution is equally likely); it is left all zero, so any bigram from it has
    probability 0 and an infinite NLL, like every other unseen bigram under α = 0.
    """
    smoothed = counts.double() + alpha
    row_sums = smoothed.sum(dim=1, keepdim=True)
    return torch.where(row_sums > 0, smoothed / row_sums.clamp_min(1e-300), 0.0)


@dataclass(frozen=True)
class CountedModel:
    """The counted model of the train counts: P (C, V) for the data's contexts (C,), and its mean
    NLL on each non-empty split. It does not change during training: made once a run.

    additive: P = (N_train + α) / row sums; kneser_ney: bigramlab.models.kneser_ney (α unused).
    `kneser_ney` keeps the fitted model, which gives any context's distribution."""

    alpha: float
    probs: Tensor
    nll: dict[str, float]
    contexts: Tensor
    smoothing: str = "additive"
    kneser_ney: KneserNey | None = None

    def next_probs(self, contexts: Tensor) -> Tensor:
        """P(· | h) (C', V) for any contexts h (C',): its row where h is one of the data's, else
        Kneser–Ney's backed-off distribution, or for additive smoothing the uniform one (zeros
        with α = 0: no word reaches such a context then)."""
        device = self.probs.device  # the report keeps a run's counted model where W is
        query, known = contexts.to(device), self.contexts.to(device)
        row = torch.searchsorted(known, query).clamp(max=len(known) - 1)
        seen = known[row] == query
        out = self.probs[row].clone()
        if not seen.all():
            if self.kneser_ney is not None:
                out[~seen] = self.kneser_ney.probs(query[~seen].cpu()).to(out)
            else:
                out[~seen] = 1.0 / out.shape[1] if self.alpha > 0 else 0.0
        return out.to(contexts.device)

    def log_probs(self, contexts: Tensor) -> Tensor:
        """log P(· | h) (C', V) for any contexts h (C',), in float64."""
        return self.next_probs(contexts).double().log()


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
    order: int = 1,
) -> CountedModel:
    """The counted model of `counts` ({split: N (C, V)}, fitted on "train"), contexts `contexts`
    (C,) of `order` tokens (default: the bigram's, every token), smoothed as `smoothing` says."""
    check_smoothing(smoothing)
    if contexts is None:
        contexts = torch.arange(counts["train"].shape[0])
    if smoothing == "additive":
        probs = mle_probs(counts["train"], alpha)
        return CountedModel(alpha, probs, split_nlls(probs.log(), counts), contexts)
    model = KneserNey(contexts, counts["train"], order)
    probs = model.probs(contexts)
    return CountedModel(alpha, probs, split_nlls(probs.log(), counts), contexts, smoothing, model)
