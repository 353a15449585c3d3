"""The learned model's features: which rows of W a context of k tokens adds up to its logits.

`model.features` names a base and, joined by `+`, any feature families added to it
(`skipgram+position+start`):

    onehot        one row per context (the lecture's model): logits = one_hot(context) @ W; alone
    interpolated  one row per suffix of the context, of every length 0..s (the empty suffix is a
                  row every context shares, a bias): logits = multi_hot(context) @ W, the sum of
                  the s + 1 rows of its suffixes
    skipgram      interpolated's rows and one more per span j = 2..s: the suffix of j tokens with
                  its most recent token hidden, c_{-j} … c_{-2} *; it generalises over the last
                  token (after "ann" and "anx" alike), which no suffix does
    +position     the number n of the word's tokens so far (0..k, k meaning "k or more"), once
                  alone and once with the last token: where in the word the context is, beyond
                  what the suffixes see (the end of a word depends on its length)
    +start        the word's first token and its first two tokens, alone and with the last
                  token, in every context that still sees the word's start (n < k) and is past
                  them: how a word began, seen from any later position in the window
    +gaps         for each distance d = 3..k, the token d back alone and with the last token,
                  the tokens between hidden (c_{-d} * … *, c_{-d} * … * c_{-1}): longer skips
    +classes      the pattern of token classes (the padding, vowels, the rest: token_classes) over
                  the whole window, alone and with the last token: the shape of the word's
                  sounds so far, shared by every context of that shape

s = `model.max_span` (null: k) bounds the suffixes and skips, so that a long window k can feed
position and start while the n-gram rows stay short. `.` appears in a context only as the padding
before a word, so n is the count of tokens other than `.`.

A feature's span is how far back it looks: j for a suffix of j tokens and for a skip of span j
(which reads j - 1 tokens). A row is named by an integer feature key: for onehot the context's key
(bigramlab.counting.ngrams); for a suffix of j tokens its key offset by V^0 + … + V^(j-1), so
that suffixes of different lengths never share a key; for a skip of span j, the key of its j - 1
tokens offset likewise, after every suffix key of the context (V^0 + … + V^s); the families' keys
after those, in ranges of their own. A context without a family's feature (no start in sight) has
the key -1 there, which no row has.

W has one row per key of `row_keys` (sorted); a context whose feature has no row (never seen in
the data W was made for) gets nothing from it: for onehot, logits 0, the uniform distribution.
Pure tensor functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bigramlab.errors import UserError

BASES = ("onehot", "interpolated", "skipgram")
FAMILIES = ("position", "start", "gaps", "classes")
START_TOKENS = 2  # +start: the first token, and the first two
VOWELS = "aeiouy"  # +classes


def parse_features(features: str) -> tuple[str, tuple[str, ...]]:
    """`skipgram+position` -> ("skipgram", ("position",)); no check (see check_features)."""
    base, *families = str(features).split("+")
    return base, tuple(families)


def check_features(features: str) -> None:
    """Raise UserError unless `features` is a base of BASES, then any of FAMILIES joined by `+`,
    each once (onehot alone: its row per context already sees everything in the window)."""
    base, families = parse_features(features)
    example = "skipgram+position+start"
    if base not in BASES:
        raise UserError(
            f"model.features={features!r} is unknown: choose one of {', '.join(BASES)}, "
            f"optionally with families {', '.join('+' + f for f in FAMILIES)} (e.g. {example})"
        )
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise UserError(
            f"model.features={features!r}: family {unknown[0]!r} is unknown: add any of "
            f"{', '.join('+' + f for f in FAMILIES)} to interpolated or skipgram (e.g. {example})"
        )
    if len(set(families)) != len(families):
        raise UserError(
            f"model.features={features!r} names a family twice: name each once (e.g. {example})"
        )
    if base == "onehot" and families:
        raise UserError(
            f"model.features={features!r}: onehot has a row per whole context and takes no "
            f"families: use interpolated or skipgram with them (e.g. {example})"
        )


def check_max_span(max_span: int | None, context: int) -> None:
    """Raise UserError unless `max_span` is None or a whole number in 1..context."""
    if max_span is not None and (
        isinstance(max_span, bool) or not isinstance(max_span, int) or not 1 <= max_span <= context
    ):
        raise UserError(
            f"model.max_span={max_span} is out of range for model.context={context}: set it to a "
            f"whole number from 1 to {context} (the longest suffix), or null for {context}"
        )


def longest_span(context: int, max_span: int | None) -> int:
    """s, the longest suffix and skip: model.max_span, or the context k where that is null."""
    return context if max_span is None else max_span


def check_reg_by_length(
    by_length: Sequence[float] | None, context: int, max_span: int | None = None
) -> None:
    """Raise UserError unless `by_length` is None or s + 1 multipliers, one per suffix length
    (s = longest_span(context, max_span))."""
    span = longest_span(context, max_span)
    if by_length is not None and (isinstance(by_length, str) or len(by_length) != span + 1):
        raise UserError(
            f"model.reg_by_length={by_length} needs {span + 1} values for suffixes of at most "
            f"{span} tokens (one per suffix length 0..{span}), e.g. "
            f"[{','.join(['1'] * (span + 1))}], or null"
        )


def suffix_offset(length: int, vocab_size: int) -> int:
    """V^0 + … + V^(length-1): added to a suffix's key, it gives the suffix's feature key."""
    return sum(vocab_size**i for i in range(length))


def token_classes(itos: str) -> Tensor:
    """Each token's class for +classes (V,) int64: 0 the padding `.`, 1 a vowel (a, e, i, o, u, y
    in either case), 2 anything else."""
    return torch.tensor(
        [0 if t == "." else 1 if t.lower() in VOWELS else 2 for t in itos], dtype=torch.int64
    )


def family_sizes(context: int, vocab_size: int, span: int) -> dict[str, int]:
    """How many feature keys each kind of row has, in the order of their key ranges."""
    V, k = vocab_size, context
    return {
        "suffix": suffix_offset(span + 1, V),
        "skip": suffix_offset(span, V),
        "position": (k + 1) * (V + 1),
        "start": suffix_offset(START_TOKENS + 1, V) * (V + 1),
        "gaps": max(k - 2, 0) * (V + V * V),
        "classes": 3**k * (V + 1),
    }


def family_offsets(context: int, vocab_size: int, span: int) -> dict[str, int]:
    """Where each kind of feature key starts, and `end` where they stop (family_sizes' order)."""
    offsets, at = {}, 0
    for kind, size in family_sizes(context, vocab_size, span).items():
        offsets[kind], at = at, at + size
    return offsets | {"end": at}


def feature_keys(
    contexts: Tensor,
    context: int,
    vocab_size: int,
    features: str,
    max_span: int | None = None,
    classes: Tensor | None = None,
) -> Tensor:
    """The feature keys of contexts (C,): (C, 1) for onehot; for the others (C, F), the suffixes
    by length (s + 1), then skipgram's skips of span 2..s (s - 1), then each family's in the
    order named (position: 2; start: 2 · START_TOKENS; gaps: 2 per distance 3..k; classes: 2),
    -1 where a context has no such feature. `classes`: token_classes of the vocabulary, which
    +classes needs."""
    V, k = vocab_size, context
    base, families = parse_features(features)
    if base == "onehot":
        return contexts[:, None]
    span = longest_span(k, max_span)
    offsets = family_offsets(k, V, span)
    keys = [suffix_offset(n, V) + contexts % V**n for n in range(span + 1)]
    if base == "skipgram":
        earlier = contexts // V  # the context without its most recent token
        keys += [
            offsets["skip"] + suffix_offset(n - 1, V) + earlier % V ** (n - 1)
            for n in range(2, span + 1)
        ]
    if not families:
        return torch.stack(keys, dim=1)
    # tokens[:, d - 1]: the token d back (1: the newest)
    tokens = contexts[:, None] // V ** torch.arange(k, device=contexts.device) % V
    so_far = (tokens != 0).sum(dim=1)  # n: the word's tokens in the window
    last = tokens[:, 0]
    for family in families:
        at = offsets[family]
        if family == "position":
            keys += [at + so_far, at + k + 1 + so_far * V + last]
        elif family == "start":
            for m in range(1, START_TOKENS + 1):
                seen = (so_far < k) & (so_far > m)  # the start in sight, and not the suffix of n
                first = suffix_offset(m, V) + contexts // V ** (so_far - m).clamp(min=0) % V**m
                with_last = suffix_offset(START_TOKENS + 1, V) * (1 + last) + first
                keys += [torch.where(seen, at + first, -1), torch.where(seen, at + with_last, -1)]
        elif family == "gaps":
            for d in range(3, k + 1):
                base_d = at + (d - 3) * (V + V * V)
                keys += [base_d + tokens[:, d - 1], base_d + V + tokens[:, d - 1] * V + last]
        elif family == "classes":
            if classes is None:
                raise ValueError("+classes needs the vocabulary's token_classes")
            of_tokens = classes.to(contexts.device)[tokens]  # (C, k), newest first
            pattern = (of_tokens * 3 ** torch.arange(k, device=contexts.device)).sum(dim=1)
            keys += [at + pattern, at + 3**k * (1 + last) + pattern]
    return torch.stack(keys, dim=1)


def row_index(row_keys: Tensor, keys: Tensor) -> Tensor:
    """Rows of W for feature keys (any shape): the index into `row_keys`, len(row_keys) where a
    key has no row (the zero row that `summed_rows` adds)."""
    if len(row_keys) == 0:
        return torch.zeros_like(keys)
    index = torch.searchsorted(row_keys, keys).clamp(max=len(row_keys) - 1)
    return torch.where(row_keys[index] == keys, index, len(row_keys))


def summed_rows(W: Tensor, rows: Tensor) -> Tensor:
    """Σ_f W[rows[:, f]], a missing row (index len(W)) counting as zeros: W (R, V), rows (C, F)
    -> (C, V). Memory is (C, V), never (C, F, V) (RowSum)."""
    if len(W) == 0:
        return W.new_zeros(rows.shape[0], W.shape[1])
    return RowSum.apply(W, rows)


class RowSum(torch.autograd.Function):
    """logits = Σ_f W[rows[:, f]] and its gradient ∂/∂W[r] = Σ_{(c, f): rows[c, f] = r} g[c].

    Forward: one embedding_bag sum, a missing row weighted 0 (appending a zero row to W would
    copy W, and its gradient, at every call). Backward: one index_add_ of the incoming gradient
    g (C, V) per column f, into an (R + 1, V) gradient whose last row takes the missing ones.
    embedding_bag's own backward lays out a (C·F, V) copy of g first (C·F·V floats: the peak of
    an L-BFGS step at k = 6 on `words`); this one adds g as it is, F times. A row
    key belongs to one column (each column is one feature kind and length), so each row adds
    its contexts in context order, as embedding_bag's backward does where its sort of the rows
    keeps ties in place: on words at k = 6 and names up to k = 10 with every family, the same
    gradient bit for bit (docs/benchmark.md)."""

    @staticmethod
    def forward(ctx: Any, W: Tensor, rows: Tensor) -> Tensor:
        ctx.save_for_backward(rows)
        ctx.n_rows = len(W)
        present = rows < len(W)
        return F.embedding_bag(
            rows.clamp(max=len(W) - 1), W, mode="sum", per_sample_weights=present.to(W.dtype)
        )

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (rows,) = ctx.saved_tensors
        grad_W = grad.new_zeros(ctx.n_rows + 1, grad.shape[1])
        for f in range(rows.shape[1]):
            # A column as int64: index_add_'s int32 path is several times slower.
            grad_W.index_add_(0, rows[:, f].long(), grad)
        return grad_W[:-1], None


def feature_spans(row_keys: Tensor, context: int, vocab_size: int) -> Tensor:
    """The span (0..s) of each suffix or skip key (R,) -> (R,) int64, s = `context` here: a
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
    multipliers: dict[str, float] | None = None,
    max_span: int | None = None,
) -> Tensor | None:
    """Each row's multiplier of the penalty (R,): by_length[j] (or 1) for the rows of suffixes of
    j tokens, multipliers[kind] for the rows of the other kinds ("skip" and FAMILIES; 1
    where not given); None where every row has the same penalty."""
    multipliers = {kind: m for kind, m in (multipliers or {}).items() if m != 1}
    if parse_features(features)[0] == "onehot" or (by_length is None and not multipliers):
        return None
    span = longest_span(context, max_span)
    offsets = family_offsets(context, vocab_size, span)
    suffix = row_keys < offsets["skip"]
    scale = torch.ones(len(row_keys))
    if by_length is not None:
        spans = feature_spans(row_keys[suffix], span, vocab_size)
        scale[suffix] = torch.tensor(by_length, dtype=torch.float32)[spans]
    kinds = list(offsets)  # in the order of their key ranges, "end" last
    for kind, end in zip(kinds[1:-1], kinds[2:], strict=True):
        if kind in multipliers:
            scale[(row_keys >= offsets[kind]) & (row_keys < offsets[end])] = multipliers[kind]
    return scale.float()
