"""Words drawn from a bigram model P (V, V), one token at a time from `.` until `.` again."""

from __future__ import annotations

import torch
from torch import Tensor

CUT = "…"  # ends a word cut at max_length


def sample_words(
    probs: Tensor, itos: str, n: int, generator: torch.Generator, max_length: int | None = None
) -> list[str]:
    """n words: start at `.`, draw the next token from P[token] until `.` comes again. The same
    generator state gives the same draws for any model of the same V.

    A model that rarely ends words (one trained on a single very long line) can make words of any
    length; `max_length` cuts them there and marks the cut with `…`.
    """
    words = []
    for _ in range(n):
        out = []
        ix = 0
        while max_length is None or len(out) < max_length:
            ix = int(torch.multinomial(probs[ix], num_samples=1, generator=generator))
            if ix == 0:
                break
            out.append(itos[ix])
        else:
            out.append(CUT)
        words.append("".join(out))
    return words
