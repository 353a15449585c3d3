"""Contexts of k tokens as integer keys, the arithmetic that counting, the models, evaluate and
export share.

A word is predicted one token at a time from the k tokens before it, the word wrapped in `.` and
padded on the left with `.` so that every token has a full context. A context c_1 … c_k (c_k the
most recent token) of a vocabulary of V tokens is the integer

    key = c_k + c_{k-1}·V + … + c_1·V^(k-1)

so that key % V^j is the key of its last j tokens (its suffix of length j): Kneser–Ney's lower
orders and the interpolated features group contexts by these suffixes with integer arithmetic.

    context_tokens, context_keys   a context's tokens from its key, and its key from its tokens
    next_keys                      the context after a token
    gram_keys, event_keys          the (context, next token) of every token of framed words
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bigramlab.errors import UserError

MAX_KEY = 2**62  # the keys of (part, context, next) are int64
BLOCK = 1 << 15  # events whose keys are made together (gram_keys)


def check_context(context: int, vocab_size: int) -> None:
    """Raise UserError unless the (context, next token) keys of `context` tokens fit in 64 bits."""
    if 3 * vocab_size ** (context + 1) >= MAX_KEY:
        largest = max(k for k in range(1, 64) if 3 * vocab_size ** (k + 1) < MAX_KEY)
        raise UserError(
            f"model.context={context} is too long for a vocabulary of {vocab_size} tokens "
            f"({vocab_size}^{context + 1} n-grams do not fit a 64-bit key): use model.context <= "
            f"{largest}"
        )


def _powers(context: int, vocab_size: int) -> Tensor:
    return vocab_size ** torch.arange(context - 1, -1, -1, dtype=torch.int64)


def context_tokens(keys: Tensor, context: int, vocab_size: int) -> Tensor:
    """The tokens of contexts: keys (C,) -> (C, k) int64, the oldest token first."""
    return keys[:, None] // _powers(context, vocab_size) % vocab_size


def context_keys(tokens: Tensor, vocab_size: int) -> Tensor:
    """The keys of contexts: tokens (C, k), the oldest first -> (C,) int64 (context_tokens'
    inverse)."""
    return (tokens.long() * _powers(tokens.shape[1], vocab_size)).sum(dim=1)


def next_keys(keys: Tensor, tokens: Tensor, context: int, vocab_size: int) -> Tensor:
    """The context after `tokens` (n,) follow contexts `keys` (n,): the oldest token drops out."""
    return keys % vocab_size ** (context - 1) * vocab_size + tokens


def gram_keys(
    ids: np.ndarray,
    context: int,
    vocab_size: int,
    dtype: type = np.int64,
    parts: np.ndarray | None = None,
    n_parts: int = 1,
) -> np.ndarray:
    """The key (context · V + next) · n_parts + part of every event of a framed sequence
    `.w1.w2. … .wn.` of token ids (0 = `.`): ids (L,) -> (L - 1,) of `dtype`, the event of ids[p]
    at p - 1; `parts` (L - 1,) the part of each event (none: the key is context · V + next).

    The context of ids[p] is the k tokens before it, every token up to the last `.` among them read
    as `.` (a word's padding). By Horner's rule over k shifted slices, each step multiplying by V,
    or by 0 where the token it adds is a `.`, which starts the context again. The events are taken
    in blocks of BLOCK, so that a block's keys stay in the CPU's cache through its 2k + 2 passes."""
    n_events = len(ids) - 1
    # The context's own key in int32 where V^k fits: half the bytes through the k steps.
    narrow = np.int32 if vocab_size**context < 2**31 else dtype
    # padded[o + j] is token j of the window of event o: context tokens j < k, the next one j = k.
    padded = np.concatenate((np.zeros(context - 1, dtype=ids.dtype), ids))
    keys = np.empty(n_events, dtype=dtype)
    for start in range(0, n_events, BLOCK):
        size = min(BLOCK, n_events - start)
        window = padded[start : start + size + context].astype(narrow)
        scale = (window != 0).astype(narrow)
        scale *= narrow(vocab_size)
        block = window[:size].copy()
        for j in range(1, context):
            block *= scale[j : j + size]
            block += window[j : j + size]
        wide = keys[start : start + size]
        wide[:] = block
        wide *= dtype(vocab_size)
        wide += window[context : context + size]
        if parts is not None:
            wide *= dtype(n_parts)
            wide += parts[start : start + size]
    return keys


def event_keys(ids: np.ndarray, context: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(context keys, next tokens) of every event of a framed sequence of token ids (gram_keys):
    ids (L,) -> two (L - 1,) int64."""
    return np.divmod(gram_keys(ids, context, vocab_size), vocab_size)
