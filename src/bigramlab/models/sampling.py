"""Words drawn from a model, one token at a time from `.` until `.` again.

A model is given as `next_probs(context key) -> P(· | context)` (V,) (bigramlab.counting.ngrams
keys: for the bigram, the previous token), or for the bigram as its matrix P (V, V).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from bigramlab.counting.ngrams import next_keys
from bigramlab.models.counted import CountedModel
from bigramlab.models.features import feature_keys, row_index

if TYPE_CHECKING:  # the model module imports Lightning, which sample.py does not load
    from bigramlab.models.learned import BigramLM

CUT = "…"  # ends a word cut at max_length
NextProbs = Callable[[int], Tensor]


def sample_words(
    model: NextProbs | Tensor,
    itos: str,
    n: int,
    generator: torch.Generator,
    max_length: int | None = None,
    order: int = 1,
) -> list[str]:
    """n words: start at the context of `order` `.`s, draw the next token from P(· | context)
    until `.` comes again. The same generator state gives the same draws for any model of the
    same V and order.

    A model that rarely ends words (one trained on a single very long line) can make words of any
    length; `max_length` cuts them there and marks the cut with `…`.
    """
    next_probs = model.__getitem__ if isinstance(model, Tensor) else model
    V = len(itos)
    words = []
    for _ in range(n):
        out = []
        key = 0
        while max_length is None or len(out) < max_length:
            ix = int(torch.multinomial(next_probs(key), num_samples=1, generator=generator))
            if ix == 0:
                break
            out.append(itos[ix])
            key = int(next_keys(torch.tensor(key), torch.tensor(ix), order, V))
        else:
            out.append(CUT)
        words.append("".join(out))
    return words


def counted_next_probs(counted: CountedModel, contexts: Tensor) -> NextProbs:
    """A counted model's P(· | h) for any context h: its row where h is one of `contexts` (the
    data's, those of counted.probs), else Kneser–Ney's backed-off distribution, or for additive
    smoothing the uniform one (zeros with α = 0: such a context is never reached then)."""
    probs = counted.probs.cpu()
    V = probs.shape[1]

    def next_probs(key: int) -> Tensor:
        row = int(torch.searchsorted(contexts, torch.tensor(key)).clamp(max=len(contexts) - 1))
        if int(contexts[row]) == key:
            return probs[row]
        if counted.kneser_ney is not None:
            return counted.kneser_ney.probs(torch.tensor([key]))[0]
        return torch.full((V,), 1.0 / V if counted.alpha > 0 else 0.0, dtype=probs.dtype)

    return next_probs


def weights_next_probs(W: Tensor, row_keys: Tensor, order: int, features: str) -> NextProbs:
    """A learned model's P(· | h) = softmax(features(h) @ W) for any context h (W (R, V), its rows'
    feature keys (R,)): a feature without a row adds nothing (bigramlab.models.features). In W's
    dtype."""
    W = W.detach().cpu()
    padded = torch.cat([W, W.new_zeros(1, W.shape[1])])  # the zero row of a missing feature
    row_keys = row_keys.cpu()
    V = W.shape[1]

    def next_probs(key: int) -> Tensor:
        rows = row_index(row_keys, feature_keys(torch.tensor([key]), order, V, features))[0]
        return padded[rows].sum(dim=0).softmax(dim=0)

    return next_probs


def learned_next_probs(pl_module: BigramLM) -> NextProbs:
    """weights_next_probs of a training module's current W."""
    hparams = pl_module.hparams
    W = pl_module.W.double()
    return weights_next_probs(W, pl_module.row_keys, hparams.context, hparams.features)
