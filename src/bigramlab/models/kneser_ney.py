"""Interpolated modified Kneser–Ney (Chen and Goodman 1998), at any order, from (k+1)-gram counts.

For a context h of j tokens (j = k … 0) and its suffix h' of j - 1 tokens:

    P_j(w | h) = max(a_j(h, w) - D_j(a), 0) / a_j(h) + γ_j(h) · P_{j-1}(w | h')
    γ_j(h)     = (D_j1 · N1(h) + D_j2 · N2(h) + D_j3+ · N3+(h)) / a_j(h)
    P_{-1}(w)  = 1 / V                          (the lowest order meets the uniform distribution)

where a_j(h) = Σ_w a_j(h, w), N_r(h) = how many w have a_j(h, w) = r (r ≥ 3 for N3+), and a
context whose a_j(h) = 0 (never seen at this order) takes P_{j-1}(· | h') whole. The adjusted
counts a_j are the raw counts at the highest order (j = k), continuation counts below it:
a_j(h, w) = how many distinct tokens x make x h w a seen (j+2)-gram. The `.` padding a word's
start is an ordinary token here (a word-start context's continuation count is 1), unlike KenLM,
which keeps raw counts for the n-grams that start with <s> (docs/ngrams.md compares the two). The
discounts of each order come from that order's counts of counts n_r (how many (h, w) have a_j = r):

    Y = n1 / (n1 + 2 n2),  D_j1 = 1 - 2Y n2/n1,  D_j2 = 2 - 3Y n3/n2,  D_j3+ = 3 - 4Y n4/n3

valid where 0 < D_jr ≤ r (a discount of 0 would leave a context no mass for the lower order and
give unseen tokens probability 0); where they are not (a count of counts is 0, as at the low
orders of a character model), the order takes the fallback discounts (KenLM's
--discount_fallback: 0.5, 1, 1.5). Each P_j(· | h) sums to 1 because Σ_w D(a) = γ_j(h) · a_j(h).
Pure tensor code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bigramlab.models.counted import CountedModel
from bigramlab.models.nll import seen_counts

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


@dataclass(frozen=True)
class Order:
    """One order's statistics: its contexts' keys (C_j,) sorted, adjusted counts (C_j, V) float64,
    and discounts (D1, D2, D3+); `fallback` says whether they are the fallback ones."""

    contexts: Tensor
    adjusted: Tensor
    discounts: tuple[float, float, float]
    fallback: bool


def discounts(adjusted: np.ndarray, fallback: tuple[float, float, float]) -> tuple[tuple, bool]:
    """Chen and Goodman's (D1, D2, D3+) from the counts of counts of the nonzero adjusted counts;
    (fallback, True) where one is undefined or outside (0, r]."""
    n = [int(np.count_nonzero(adjusted == r)) for r in (1, 2, 3, 4)]
    if min(n) == 0:
        return fallback, True
    y = n[0] / (n[0] + 2 * n[1])
    found = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
    if all(0 < d <= r for r, d in enumerate(found, start=1)):
        return found, False
    return fallback, True


def _grouped(keys: np.ndarray, tokens: np.ndarray, values: np.ndarray, V: int) -> tuple:
    """(context keys (C,), dense (C, V) float64) of sparse (context, token, value) triples."""
    contexts, rows = np.unique(keys, return_inverse=True)
    dense = np.zeros((len(contexts), V))
    np.add.at(dense, (rows, tokens), values)
    return torch.from_numpy(contexts), torch.from_numpy(dense)


class KneserNey(CountedModel):
    """Interpolated modified Kneser–Ney of the train counts N (C, V) of contexts `contexts` (C,) of
    `context` tokens (bigramlab.counting.ngrams keys): `orders[j]` holds the statistics of the
    contexts of j tokens, j = 0 … k; `probs_of(keys, j)` gives P_j(· | h) of any contexts."""

    smoothing = "kneser_ney"

    def __init__(
        self,
        counts: dict[str, Tensor],
        contexts: Tensor,
        context: int,
        itos: str,
        fallback: tuple[float, float, float] = FALLBACK_DISCOUNTS,
    ) -> None:
        self.fallback = fallback
        super().__init__(counts, contexts, context, itos)

    def fit(self, train: Tensor) -> None:
        V, k = self.vocab_size, self.context
        rows, tokens, raw = (t.numpy() for t in seen_counts(train))
        raw = raw.astype(np.float64)
        context_of_event = self.contexts.numpy()[rows]
        # From the highest order down: `seen` are the distinct (suffix of j + 1 tokens, token) seen.
        seen = context_of_event * V + tokens
        adjusted_keys, adjusted_tokens, adjusted = context_of_event, tokens, raw
        levels = []
        for j in range(k, -1, -1):
            if j < k:
                suffix, token = np.divmod(seen, V)
                h = suffix % V**j
                grams, continuation = np.unique(h * V + token, return_counts=True)
                seen = grams
                adjusted_keys, adjusted_tokens = np.divmod(grams, V)
                adjusted = continuation.astype(np.float64)
            found, fell_back = discounts(adjusted, self.fallback)
            keys, dense = _grouped(adjusted_keys, adjusted_tokens, adjusted, V)
            levels.append(Order(keys, dense, tuple(found), fell_back))
        self.orders: list[Order] = levels[::-1]  # index j: contexts of j tokens
        self.probs = self.probs_of(self.contexts)

    def unseen_probs(self, keys: Tensor) -> Tensor:
        return self.probs_of(keys)

    def shorter_contexts(self, length: int) -> Tensor:
        return self.orders[length].contexts

    def shorter_probs(self, keys: Tensor, length: int) -> Tensor:
        return self.probs_of(keys, length)

    def probs_of(self, keys: Tensor, length: int | None = None) -> Tensor:
        """P_length(· | h) for contexts `keys` (m,) of `length` tokens (default: the model's k):
        (m, V) float64, rows sum to 1."""
        V = self.vocab_size
        probs = torch.full((len(keys), V), 1.0 / V, dtype=torch.float64)
        levels = self.orders if length is None else self.orders[: length + 1]
        for j, level in enumerate(levels):
            h = keys % V**j
            index = torch.searchsorted(level.contexts, h).clamp(max=len(level.contexts) - 1)
            seen = level.contexts[index] == h
            adjusted = level.adjusted[index]
            total = adjusted.sum(dim=1, keepdim=True)
            d1, d2, d3 = level.discounts
            discount = torch.where(adjusted >= 3, d3, torch.where(adjusted == 2, d2, d1))
            discount = torch.where(adjusted > 0, discount, 0.0)
            gamma = discount.sum(dim=1, keepdim=True)
            mixed = ((adjusted - discount).clamp_min(0) + gamma * probs) / total.clamp_min(1e-300)
            probs = torch.where(seen[:, None] & (total > 0), mixed, probs)
        return probs
