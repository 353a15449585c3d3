"""The counted estimators (the MLE, smoothed) and the metrics that compare a learned model to them.

Pure tensor functions, no Lightning: everything here is testable on small random tensors. Both the
TensorBoard report (at every validation) and the final metrics.json call `compare`.

Notation (as on the lecture's board), for a vocabulary of V tokens and C contexts (for the bigram,
C = V, the context being the previous token; bigramlab.ngrams for longer ones):
    N: (C, V) counts, N[i, j] = how often token j follows context i
    P: (C, V) row-stochastic probabilities, P[i, j] = P(j | i)
    p̂(i) = N[i, :].sum() / N.sum(): how often row i is used in the data
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bigramlab.errors import UserError
from bigramlab.kneser_ney import KneserNey

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


def nll_sum(log_probs: Tensor, counts: Tensor) -> Tensor:
    """−Σ_ij N[i, j] · log P[i, j], with 0 · log 0 = 0.  log_probs, counts: (V, V) -> scalar.

    A bigram with N > 0 and P = 0 makes the sum +inf, not NaN: the model calls the data impossible.
    """
    terms = counts * log_probs
    return -torch.where(counts > 0, terms, torch.zeros_like(terms)).sum()


def mean_nll(log_probs: Tensor, counts: Tensor) -> float | None:
    """Mean NLL per bigram, −Σ N ⊙ log P / Σ N, as a Python float in float64; None if N is empty."""
    total = int(counts.sum())
    if total == 0:
        return None
    return float(nll_sum(log_probs.double(), counts.double())) / total


def split_nlls(log_probs: Tensor, counts: dict[str, Tensor]) -> dict[str, float]:
    """{split: mean NLL} of one model log P (V, V) on every non-empty split {split: N (V, V)}."""
    nlls = {split: mean_nll(log_probs, N) for split, N in counts.items()}
    return {split: value for split, value in nlls.items() if value is not None}


def kl_to_mle(counts: Tensor, log_probs: Tensor) -> Tensor:
    """Σ_i p̂(i) · KL(P̂(·|i) ‖ P(·|i)), P̂ the unsmoothed MLE of `counts`.  -> scalar float64.

    Rows never seen have p̂(i) = 0 and contribute nothing. Equal, on the data that gave `counts`,
    to NLL(P) − NLL(P̂): the excess NLL of any model over the MLE is exactly this KL, hence ≥ 0.
    """
    counts = counts.double()
    log_mle = mle_probs(counts, 0.0).log()
    terms = counts * (log_mle - log_probs.double())
    return torch.where(counts > 0, terms, torch.zeros_like(terms)).sum() / counts.sum()


def tv_distance(counts: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """Σ_i p̂(i) · ½ Σ_j |P[i, j] − Q[i, j]|, rows weighted by how often the data uses them."""
    counts = counts.double()
    row_weight = counts.sum(dim=1) / counts.sum()
    row_tv = 0.5 * (p.double() - q.double()).abs().sum(dim=1)
    return (row_weight * row_tv).sum()


def max_abs_diff(p: Tensor, q: Tensor) -> Tensor:
    """max_ij |P[i, j] − Q[i, j]|."""
    return (p.double() - q.double()).abs().max()


def row_entropy(probs: Tensor) -> Tensor:
    """H(P(·|i)) = −Σ_j P[i, j] log P[i, j] in nats, per row.  probs: (V, V) -> (V,)."""
    probs = probs.double()
    terms = probs * probs.log()
    return -torch.where(probs > 0, terms, torch.zeros_like(terms)).sum(dim=1)


def perplexity(nll: float) -> float:
    """exp(NLL), inf where it overflows (an unseen bigram, or a blown-up model)."""
    return math.exp(nll) if nll < 700 else math.inf


@dataclass(frozen=True)
class CountedModel:
    """The counted model of the train counts: P (C, V) for the data's contexts, and its mean NLL
    on each non-empty split. It does not change during training: made once a run.

    additive: P = (N_train + α) / row sums; kneser_ney: bigramlab.kneser_ney (α unused).
    `kneser_ney` keeps the fitted model, which gives any context's distribution."""

    alpha: float
    probs: Tensor
    nll: dict[str, float]
    smoothing: str = "additive"
    kneser_ney: KneserNey | None = None


def check_smoothing(smoothing: str) -> None:
    """Raise UserError unless `smoothing` is one of SMOOTHINGS."""
    if smoothing not in SMOOTHINGS:
        raise UserError(
            f"mle.smoothing={smoothing!r} is unknown: choose one of {', '.join(SMOOTHINGS)}"
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
    if smoothing == "additive":
        probs = mle_probs(counts["train"], alpha)
        return CountedModel(alpha, probs, split_nlls(probs.log(), counts))
    if contexts is None:
        contexts = torch.arange(counts["train"].shape[0])
    model = KneserNey(contexts, counts["train"], order)
    probs = model.probs(contexts)
    return CountedModel(alpha, probs, split_nlls(probs.log(), counts), smoothing, model)


def bigram_marginal(probs: Tensor, contexts: Tensor, weights: Tensor, order: int) -> Tensor:
    """The V x V view of a model of longer contexts: row x is the average of P(· | h) over the
    contexts h that end in token x, weighted by `weights` (C,) (how often the data has h; equal
    weights where a token ends no weighted context). probs (C, V) -> (V, V). For the bigram
    (order 1) it is P itself; for the unsmoothed MLE weighted by the train counts, the bigram
    MLE."""
    if order == 1:
        return probs
    V = probs.shape[1]
    last = contexts % V
    weights = weights.double()
    totals = torch.zeros(V, dtype=torch.float64).index_add_(0, last, weights)
    weights = torch.where(totals[last] > 0, weights, 1.0)
    totals = torch.zeros(V, dtype=torch.float64).index_add_(0, last, weights)
    summed = torch.zeros(V, V, dtype=torch.float64).index_add_(
        0, last, weights[:, None] * probs.double()
    )
    return summed / totals.clamp_min(1e-300)[:, None]


# The comparison's numbers beside the per-split NLLs, as metrics.json and TensorBoard name them.
COMPARISON_KEYS = ("gap_val", "kl_train", "tv_train", "max_abs_diff")


def compare(
    logits: Tensor, train_counts: Tensor, counted: CountedModel, learned_nll: dict[str, float]
) -> dict[str, float]:
    """The learned model P_W = softmax(logits) (logits (C, V): W for the bigram) beside the
    counted one, as named numbers:

        mle_<split>_nll  the counted model's NLL on each non-empty split
        gap_val          learned − counted NLL on val (where there is a val split)
        kl_train         Σ_x p̂(x) KL(P̂(·|x) ‖ P_W(·|x)), P̂ the unsmoothed train MLE; equal to
                         NLL_train(learned) − NLL_train(MLE, α=0), the part training can remove
        tv_train         Σ_x p̂(x) TV(P_counted(·|x), P_W(·|x))
        max_abs_diff     max |P_counted − P_W|

    `learned_nll` ({split: mean NLL}) is the learned model's own, measured by the caller (exact
    per split: from the counts, or summed over processes by torchmetrics). `train_counts` (C, V)
    and `counted.probs` are moved to the logits' device unless they are there (the report keeps
    them there).
    """
    W = logits.detach().double()
    P_W = W.softmax(dim=1)
    probs = counted.probs.to(W.device)
    train = train_counts.to(W.device)
    values = {f"mle_{split}_nll": value for split, value in counted.nll.items()}
    if "val" in learned_nll and "val" in counted.nll:
        values["gap_val"] = learned_nll["val"] - counted.nll["val"]
    values["kl_train"] = float(kl_to_mle(train, W.log_softmax(dim=1)))
    values["tv_train"] = float(tv_distance(train, probs, P_W))
    values["max_abs_diff"] = float(max_abs_diff(probs, P_W))
    return values
