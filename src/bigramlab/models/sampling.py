"""Words drawn from any language model of the package (bigramlab.models.lm), one token at a time
from `.` until `.` again: a LearnedLM, a checkpoint's or one in training, or a CountedModel,
additive or Kneser–Ney.
"""

from __future__ import annotations

import torch

from bigramlab.keys import next_keys
from bigramlab.models.lm import LanguageModel

CUT = "…"  # ends a word cut at max_length


def sample_words(
    model: LanguageModel,
    n: int,
    generator: torch.Generator,
    max_length: int | None = None,
) -> list[str]:
    """n words: start at the context of k `.`s (k the model's context), draw the next token
    from P(· | context) until `.` comes again. The same generator state gives the same draws
    for any model of the same V and order, so where two models agree they draw the same words.

    A model that rarely ends words (one trained on a single very long line) can make words of any
    length; `max_length` cuts them there and marks the cut with `…`.
    """
    itos, context, V = model.itos, model.context, model.vocab_size
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
