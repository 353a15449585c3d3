"""A model's negative log likelihood of data given as counts, for any model of the package.

For a vocabulary of V tokens and C contexts: N (C, V) counts, N[i, j] = how often token j follows
context i; log P (C, V) the model's log-probabilities of the same contexts. Pure tensor
functions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def seen_counts(counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(rows, tokens, N) of the nonzero counts of N (C, V), dense or a torch sparse COO tensor:
    three (n,) tensors, rows and tokens int64."""
    if counts.is_sparse:
        counts = counts.coalesce()
        rows, tokens = counts.indices()
        return rows, tokens, counts.values()
    rows, tokens = torch.nonzero(counts, as_tuple=True)
    return rows, tokens, counts[rows, tokens]


def dense_rows(counts: Tensor, rows: Tensor) -> Tensor:
    """N[rows] (m, V) as a dense tensor, of N (C, V) dense or sparse COO coalesced (its indices
    sorted by row): a sparse N gives the entries of those rows alone, found by binary search, in
    O(m log n + their entries) rather than a pass over all n entries."""
    if not counts.is_sparse:
        return counts[rows]
    entry_rows, tokens = counts.indices()
    starts = torch.searchsorted(entry_rows, rows)
    lengths = torch.searchsorted(entry_rows, rows, right=True) - starts
    owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
    first = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    position = starts[owner] + torch.arange(len(owner), device=rows.device) - first
    out = torch.zeros(len(rows), counts.shape[1], dtype=counts.dtype, device=counts.device)
    out[owner, tokens[position]] = counts.values()[position]
    return out


def row_totals(counts: Tensor) -> Tensor:
    """N.sum(dim=1) (C,) of counts N (C, V), dense or sparse COO, as a dense tensor."""
    if not counts.is_sparse:
        return counts.sum(dim=1)
    rows, _, values = seen_counts(counts)
    return torch.zeros(counts.shape[0], dtype=values.dtype, device=values.device).index_add_(
        0, rows, values
    )


def nll_sum(log_probs: Tensor, counts: Tensor) -> Tensor:
    """−Σ_ij N[i, j] · log P[i, j], with 0 · log 0 = 0.  log_probs, counts: (C, V) -> scalar.

    `counts` dense or sparse (a torch sparse COO tensor): the sparse form sums over the n-grams
    seen alone, in float64, in memory that grows with them rather than with C · V. A bigram with
    N > 0 and P = 0 makes the sum +inf, not NaN: the model calls the data impossible.
    """
    if counts.is_sparse:
        rows, tokens, values = seen_counts(counts)
        return -(values.double() * log_probs[rows, tokens].double()).sum()
    terms = counts * log_probs
    return -torch.where(counts > 0, terms, torch.zeros_like(terms)).sum()


def mean_nll(log_probs: Tensor, counts: Tensor) -> float | None:
    """Mean NLL per event, −Σ N ⊙ log P / Σ N, as a Python float in float64; None if N is empty.
    Summed over the nonzero counts alone (dense counts are made sparse first): no (C, V)
    temporaries beside log P."""
    total = int(counts.sum())
    if total == 0:
        return None
    sparse = counts if counts.is_sparse else counts.to_sparse()
    return float(nll_sum(log_probs, sparse)) / total


def split_nlls(log_probs: Tensor, counts: dict[str, Tensor]) -> dict[str, float]:
    """{split: mean NLL} of one model log P (V, V) on every non-empty split {split: N (V, V)}."""
    nlls = {split: mean_nll(log_probs, N) for split, N in counts.items()}
    return {split: value for split, value in nlls.items() if value is not None}


def perplexity(nll: float) -> float:
    """exp(NLL), inf where it overflows (an unseen bigram, or a blown-up model)."""
    return math.exp(nll) if nll < 700 else math.inf
