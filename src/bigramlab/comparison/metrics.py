"""The metrics that compare a learned model with the counted one: pure tensor functions, no
Lightning, testable on small random tensors; `compare` takes any two language models
(bigramlab.models.lm). Both the TensorBoard report (at every validation) and the final
metrics.json call it.

Notation as in bigramlab.models.counted; p̂(i) = N[i, :].sum() / N.sum(): how often row i is used
in the data.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bigramlab.models.lm import LanguageModel
from bigramlab.models.nll import row_totals, seen_counts, split_nlls


def kl_to_mle(counts: Tensor, log_probs: Tensor) -> Tensor:
    """Σ_i p̂(i) · KL(P̂(·|i) ‖ P(·|i)), P̂ the unsmoothed MLE of `counts`.  -> scalar float64.

    Rows never seen have p̂(i) = 0 and contribute nothing. Equal, on the data that gave `counts`,
    to NLL(P) − NLL(P̂): the excess NLL of any model over the MLE is exactly this KL, hence ≥ 0.
    Summed over the nonzero counts alone (`counts` dense or sparse): no (C, V) temporaries.
    """
    rows, tokens, n = seen_counts(counts)
    n = n.double()
    totals = torch.zeros(counts.shape[0], dtype=torch.float64, device=n.device)
    totals.index_add_(0, rows, n)
    log_mle = (n / totals[rows]).log()
    return (n * (log_mle - log_probs[rows, tokens].double())).sum() / n.sum()


def tv_distance(counts: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """Σ_i p̂(i) · ½ Σ_j |P[i, j] − Q[i, j]|, rows weighted by how often the data uses them
    (`counts` dense or sparse)."""
    totals = row_totals(counts).double()
    row_weight = totals / totals.sum()
    row_tv = 0.5 * (p.double() - q.double()).abs_().sum(dim=1)
    return (row_weight * row_tv).sum()


def max_abs_diff(p: Tensor, q: Tensor) -> Tensor:
    """max_ij |P[i, j] − Q[i, j]|."""
    return (p.double() - q.double()).abs_().max()


def row_entropy(probs: Tensor) -> Tensor:
    """H(P(·|i)) = −Σ_j P[i, j] log P[i, j] in nats, per row.  probs: (V, V) -> (V,)."""
    return -torch.special.xlogy(probs.double(), probs.double()).sum(dim=1)  # 0 · log 0 = 0


def bigram_marginal(probs: Tensor, contexts: Tensor, weights: Tensor, context: int) -> Tensor:
    """The V x V view of a model of longer contexts: row x is the average of P(· | h) over the
    contexts h that end in token x, weighted by `weights` (C,) (how often the data has h; equal
    weights where a token ends no weighted context). probs (C, V) -> (V, V). For the bigram
    (order 1) it is P itself; for the unsmoothed MLE weighted by the train counts, the bigram
    MLE."""
    if context == 1:
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
    learned: LanguageModel,
    counted: LanguageModel,
    contexts: Tensor,
    counts: dict[str, Tensor],
    learned_nll: dict[str, float] | None = None,
    counted_nll: dict[str, float] | None = None,
) -> dict[str, float]:
    """Two language models of the same contexts side by side on counts {split: N (C, V)} of the
    contexts `contexts` (C,), as named numbers (P_W: `learned`'s, P_counted: `counted`'s):

        <split>_nll          the learned model's NLL on each non-empty split
        counted_<split>_nll  the counted model's NLL on each non-empty split
        gap_val          learned − counted NLL on val (where there is a val split)
        kl_train         Σ_x p̂(x) KL(P̂(·|x) ‖ P_W(·|x)), P̂ the unsmoothed train MLE; equal to
                         NLL_train(learned) − NLL_train(MLE, α=0), the part training can remove
        tv_train         Σ_x p̂(x) TV(P_counted(·|x), P_W(·|x))
        max_abs_diff     max |P_counted − P_W|

    `learned_nll` and `counted_nll` ({split: mean NLL}) are the models' NLLs where the caller
    has them (the learned one summed over processes by torchmetrics; the counted one, which
    training does not change, kept); otherwise they are computed here from the counts.
    """
    # One (C, V) float64 of each model at a time beside the inputs.
    log_P_W = learned.log_probs(contexts)
    if learned_nll is None:
        learned_nll = split_nlls(log_P_W, counts)
    train = counts["train"].to(log_P_W.device)
    values: dict[str, float] = {f"{split}_nll": value for split, value in learned_nll.items()}
    kl_train = float(kl_to_mle(train, log_P_W))
    P_W = log_P_W.exp_()
    log_counted = counted.log_probs(contexts).to(P_W.device)
    if counted_nll is None:
        counted_nll = split_nlls(log_counted, counts)
    probs = log_counted.exp_()
    values |= {f"counted_{split}_nll": value for split, value in counted_nll.items()}
    if "val" in learned_nll and "val" in counted_nll:
        values["gap_val"] = learned_nll["val"] - counted_nll["val"]
    values["kl_train"] = kl_train
    values["tv_train"] = float(tv_distance(train, probs, P_W))
    values["max_abs_diff"] = float(max_abs_diff(probs, P_W))
    return values
