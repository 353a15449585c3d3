"""The ARPA listing of a learned model (bigramlab.arpa), for LearnedLM.arpa_listing.

Onehot: its rows' contexts listed, everything else uniform (logits 0). Interpolated: the context
of every row listed (a padded suffix as its whole padded context), each with the logits of the
suffixes it has; KenLM's backoff to the longest listed suffix is then exact. An interpolated
model of suffixes up to s < k tokens (model.max_span) reads only s tokens: it is written as the
model of context s. Skipgram and the families have no listing (LearnedLM.arpa_listing refuses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from bigramlab.arpa import History, Listing, by_length, history
from bigramlab.keys import context_tokens
from bigramlab.models.features import (
    feature_keys,
    feature_spans,
    row_index,
    suffix_offset,
    summed_rows,
)

if TYPE_CHECKING:
    from bigramlab.models.learned import LearnedLM


def learned_listing(model: LearnedLM) -> Listing:
    """The listing of an onehot or interpolated model (see the module's docstring)."""
    V, itos = model.vocab_size, model.itos
    context = model.span
    W = model.W.detach().double()
    if model.features == "onehot":
        tokens = context_tokens(model.row_keys, context, V).tolist()
        listed = {history(t, itos): row for t, row in zip(tokens, W.softmax(dim=1))}
        uniform = torch.full((V,), 1.0 / V, dtype=torch.float64)
        return Listing(listed, lambda hists: uniform.expand(len(hists), V), uniform, context)

    def probs(keys: Tensor, length: int) -> Tensor:
        rows = row_index(model.row_keys, feature_keys(keys, length, V, "interpolated"))
        return summed_rows(W, rows).softmax(dim=1)

    lengths = feature_spans(model.row_keys, context, V)
    listed: dict[History, Tensor] = {}
    for length in range(1, context + 1):
        suffixes = model.row_keys[lengths == length] - suffix_offset(length, V)
        padded = suffixes // V ** (length - 1) == 0
        # A padded suffix fixes its whole context: the padding is all that comes before it.
        for keys, n in ((suffixes[padded], context), (suffixes[~padded], length)):
            for t, row in zip(context_tokens(keys, n, V).tolist(), probs(keys, n)):
                listed[history(t, itos)] = row

    def lower(hists: list[History]) -> Tensor:
        return by_length(hists, itos, probs)

    return Listing(listed, lower, probs(torch.zeros(1, dtype=torch.int64), 0)[0], context)
