"""Words drawn from any model of the package, one token at a time from `.` until `.` again.

A model is anything with `log_probs(contexts) -> log P(· | context)` ((C,) context keys of
bigramlab.counting.ngrams -> (C, V)): a LearnedLM, a checkpoint's or one in training, or a
CountedModel, additive or Kneser–Ney.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from bigramlab.counting.ngrams import next_keys

CUT = "…"  # ends a word cut at max_length


class LanguageModel(Protocol):
    def log_probs(self, contexts: Tensor) -> Tensor: ...


def sample_words(
    model: LanguageModel,
    itos: str,
    n: int,
    generator: torch.Generator,
    max_length: int | None = None,
    context: int = 1,
) -> list[str]:
    """n words: start at the context of `context` `.`s, draw the next token from P(· | context)
    until `.` comes again. The same generator state gives the same draws for any model of the
    same V and order, so where two models agree they draw the same words.

    A model that rarely ends words (one trained on a single very long line) can make words of any
    length; `max_length` cuts them there and marks the cut with `…`.
    """
    V = len(itos)
    words = []
    with torch.no_grad():
        for _ in range(n):
            out = []
            key = torch.zeros(1, dtype=torch.int64)
            while max_length is None or len(out) < max_length:
                probs = model.log_probs(key)[0].exp().cpu()
                ix = int(torch.multinomial(probs, num_samples=1, generator=generator))
                if ix == 0:
                    break
                out.append(itos[ix])
                key = next_keys(key, torch.tensor([ix]), context, V)
            else:
                out.append(CUT)
            words.append("".join(out))
    return words
