"""The learned model's features: which rows of W a context of k tokens adds up to its logits.

    onehot        one row per context (the lecture's model): logits = one_hot(context) @ W
    interpolated  one row per suffix of the context, of every length 0..k (the empty suffix is a
                  row every context shares, a bias): logits = multi_hot(context) @ W, the sum of
                  the k + 1 rows of its suffixes
    skipgram      interpolated's rows and one more per span j = 2..k: the suffix of j tokens with
                  its most recent token hidden, c_{-j} … c_{-2} *; it generalises over the last
                  token (after "ann" and "anx" alike), which no suffix does

A feature's span is how far back it looks: j for a suffix of j tokens and for a skip of span j
(which reads j - 1 tokens). A row is named by an integer feature key: for onehot the context's key
(bigramlab.counting.ngrams); for a suffix of j tokens its key offset by V^0 + … + V^(j-1), so
that suffixes of different lengths never share a key; for a skip of span j, the key of its j - 1
tokens offset likewise, after every suffix key of the context (V^0 + … + V^k).

W has one row per key of `row_keys` (sorted); a context whose feature has no row (never seen in
the data W was made for) gets nothing from it: for onehot, logits 0, the uniform distribution.
Pure tensor functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bigramlab.errors import UserError

FEATURES = ("onehot", "interpolated", "skipgram")


def check_features(features: str) -> None:
    """Raise UserError unless `features` is one of FEATURES."""
    if features not in FEATURES:
        raise UserError(
            f"model.features={features!r} is unknown: choose one of {', '.join(FEATURES)}"
        )


def check_reg_by_length(by_length: Sequence[float] | None, context: int) -> None:
    """Raise UserError unless `by_length` is None or k + 1 multipliers, one per suffix length."""
    if by_length is not None and (isinstance(by_length, str) or len(by_length) != context + 1):
        raise UserError(
            f"model.reg_by_length={by_length} needs {context + 1} values for model.context="
            f"{context} (one per suffix length 0..{context}), e.g. "
            f"[{','.join(['1'] * (context + 1))}], or null"
        )


def suffix_offset(length: int, vocab_size: int) -> int:
    """V^0 + … + V^(length-1): added to a suffix's key, it gives the suffix's feature key."""
    return sum(vocab_size**i for i in range(length))


def feature_keys(contexts: Tensor, context: int, vocab_size: int, features: str) -> Tensor:
    """The feature keys of contexts (C,): (C, 1) for onehot, (C, k + 1) for interpolated (the
    suffixes by length), (C, 2k) for skipgram (the suffixes, then the skips of span 2..k)."""
    V = vocab_size
    if features == "onehot":
        return contexts[:, None]
    keys = [suffix_offset(n, V) + contexts % V**n for n in range(context + 1)]
    if features == "skipgram":
        skips = suffix_offset(context + 1, V)
        earlier = contexts // V  # the context without its most recent token
        keys += [
            skips + suffix_offset(n - 1, V) + earlier % V ** (n - 1) for n in range(2, context + 1)
        ]
    return torch.stack(keys, dim=1)


def row_index(row_keys: Tensor, keys: Tensor) -> Tensor:
    """Rows of W for feature keys (any shape): the index into `row_keys`, len(row_keys) where a
    key has no row (the zero row that `logits` appends)."""
    if len(row_keys) == 0:
        return torch.zeros_like(keys)
    index = torch.searchsorted(row_keys, keys).clamp(max=len(row_keys) - 1)
    return torch.where(row_keys[index] == keys, index, len(row_keys))


def logits(W: Tensor, rows: Tensor) -> Tensor:
    """Σ_f W[rows[:, f]], a missing row (index len(W)) counting as zeros: W (R, V), rows (C, F)
    -> (C, V). One embedding_bag sum: memory is (C, V), not (C, F, V), and its backward adds
    into one (R, V) gradient instead of one a feature."""
    padded = torch.cat([W, W.new_zeros(1, W.shape[1])])
    return F.embedding_bag(rows, padded, mode="sum", padding_idx=len(W))


def feature_spans(row_keys: Tensor, context: int, vocab_size: int) -> Tensor:
    """The span (0..k) of each interpolated or skipgram feature key (R,) -> (R,) int64: a
    suffix's length, a skip's length with its hidden token."""
    offsets = torch.tensor([suffix_offset(n, vocab_size) for n in range(1, context + 2)])
    spans = torch.searchsorted(offsets, row_keys, right=True)
    skip = row_keys >= offsets[-1]
    spans[skip] = torch.searchsorted(offsets, row_keys[skip] - offsets[-1], right=True) + 1
    return spans


def row_penalty_scale(
    row_keys: Tensor,
    context: int,
    vocab_size: int,
    features: str,
    by_length: list[float] | None,
    skip: float = 1.0,
) -> Tensor | None:
    """Each row's multiplier of the penalty (R,): by_length[j] (or 1) for the rows of suffixes of
    j tokens, `skip` for skipgram's skip rows; None where every row has the same penalty."""
    if features == "onehot" or (by_length is None and (features != "skipgram" or skip == 1)):
        return None
    spans = feature_spans(row_keys, context, vocab_size)
    scale = torch.ones(len(row_keys)) if by_length is None else torch.tensor(by_length)[spans]
    scale[row_keys >= suffix_offset(context + 1, vocab_size)] = skip
    return scale.float()


def model_rows(train_contexts: Tensor, context: int, vocab_size: int, features: str) -> Tensor:
    """The feature keys W has rows for, sorted: the features of the contexts seen in training."""
    return torch.unique(feature_keys(train_contexts, context, vocab_size, features))
