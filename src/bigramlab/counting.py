"""The counting estimator (the bigram MLE) and the metrics that compare it with a learned model.

Pure tensor functions, no Lightning: everything here is testable on small random tensors.

Notation (as on the lecture's board), for a vocabulary of V tokens:
    N: (V, V) bigram counts, N[i, j] = how often token j follows token i
    P: (V, V) row-stochastic probabilities, P[i, j] = P(j | i)
    p̂(i) = N[i, :].sum() / N.sum(): how often row i is used in the data
"""

from __future__ import annotations

import torch
from torch import Tensor


def bigram_counts(xs: Tensor, ys: Tensor, vocab_size: int) -> Tensor:
    """N[i, j] = #{k : xs[k] = i and ys[k] = j}.  xs, ys: (n,) int64 -> N: (V, V) int64."""
    flat_index = xs * vocab_size + ys
    if flat_index.is_cuda:
        # torch.bincount on a GPU reads the largest index back to the host to size its output: a
        # sync every step. The size is known, so scatter-add into it instead.
        flat = torch.zeros(vocab_size * vocab_size, dtype=torch.int64, device=xs.device)
        flat.index_add_(0, flat_index, torch.ones_like(flat_index))
    else:
        flat = torch.bincount(flat_index, minlength=vocab_size * vocab_size)
    return flat.view(vocab_size, vocab_size)


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


def nll(log_probs: Tensor, counts: Tensor) -> float | None:
    """Mean NLL per bigram, −Σ N ⊙ log P / Σ N, as a Python float in float64; None if N is empty."""
    total = int(counts.sum())
    if total == 0:
        return None
    return float(nll_sum(log_probs.double(), counts.double())) / total


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
