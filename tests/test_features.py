"""The learned model's features (bigramlab.models.features): skip-grams and the families read what
their patterns say, the rows' sum and its gradient, and the checks of a features setting."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bigramlab.errors import UserError
from bigramlab.keys import context_keys
from bigramlab.models.features import (
    check_features,
    check_max_span,
    feature_keys,
    feature_spans,
    row_penalty_scale,
    summed_rows,
    token_classes,
)


def skipgram_patterns(tokens: list[int]) -> list[tuple]:
    """A context's skipgram features written out (oldest token first, None = not read): its
    suffixes of 0..k tokens, then each suffix of 2..k tokens with its newest token hidden."""
    k = len(tokens)
    suffixes = [("suffix", *tokens[k - j :]) for j in range(k + 1)]
    return suffixes + [("skip", *tokens[k - j : k - 1], None) for j in range(2, k + 1)]


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 5),
    V=st.integers(2, 6),
    seed=st.integers(0, 2**16),
)
def test_skipgram_features_share_a_key_exactly_where_their_patterns_agree(k, V, seed) -> None:
    """Two contexts share a feature key in a column iff they read the same tokens there; keys of
    different columns never meet; a feature's span is how far back it reads; the penalty of a
    suffix row is its length's multiplier, of a skip row model.reg_skip."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (40, k), generator=g)
    keys = feature_keys(context_keys(tokens, V), k, V, "skipgram")
    assert keys.shape == (40, 2 * k)
    patterns = [skipgram_patterns(t) for t in tokens.tolist()]
    for f in range(2 * k):
        column = [pattern[f] for pattern in patterns]
        same_pattern = torch.tensor([[a == b for b in column] for a in column])
        assert torch.equal(keys[:, f, None] == keys[None, :, f], same_pattern)
    distinct_per_column = sum(len(set(keys[:, f].tolist())) for f in range(2 * k))
    assert len(set(keys.flatten().tolist())) == distinct_per_column
    spans = feature_spans(keys.flatten(), k, V).view(40, 2 * k)
    assert (spans == torch.tensor([*range(k + 1), *range(2, k + 1)])).all()
    by_length = [10.0 + j for j in range(k + 1)]
    scale = row_penalty_scale(keys.flatten(), k, V, "skipgram", by_length, {"skip": 0.5})
    assert torch.equal(
        scale.view(40, 2 * k), torch.tensor(by_length + [0.5] * (k - 1)).expand(40, -1)
    )


def family_patterns(word: str, i: int, k: int, span: int) -> list[tuple | None]:
    """The features of the context before word[i], written out from the word itself: skipgram's
    of at most `span` tokens, then position (n = tokens so far, capped at k; alone and with the
    last token), start (the first one and two tokens, alone and with the last token, where the
    k-token window still shows the word's start and is past them; None where not), gaps (the
    token d = 3..k back, alone and with the last) and classes (the vowel/other/padding pattern
    of the window, alone and with the last)."""
    padded = "." * k + word[:i]
    tokens = list(padded[len(padded) - k :])
    patterns = skipgram_patterns(tokens[k - span :])
    n, last = min(i, k), tokens[-1]
    patterns += [("position", n), ("position", n, last)]
    for m in (1, 2):
        patterns += [("start", word[:m]), ("start", word[:m], last)] if m < i < k else [None] * 2
    for d in range(3, k + 1):
        patterns += [("gap", d, tokens[-d]), ("gap", d, tokens[-d], last)]
    sound = ["pad" if t == "." else "vowel" if t in "aeiouy" else "other" for t in tokens]
    patterns += [("classes", *sound), ("classes", *sound, last)]
    return patterns


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 6),
    span_back=st.integers(0, 2),
    words=st.lists(st.text("abe", min_size=1, max_size=9), min_size=1, max_size=12),
)
def test_feature_families_read_the_words_length_start_gaps_and_classes(k, span_back, words):
    """Two events share a feature key in a column iff the word's prefix shows the same pattern
    there (its length capped at k, its first tokens while in sight, the token d back, the class
    pattern); -1 exactly where a context has no start feature; keys of different columns never
    meet; each kind of row gets its own penalty multiplier."""
    span = max(1, k - span_back)
    V, itos = 4, ".abe"
    features = "skipgram+position+start+gaps+classes"
    events = [(w, i) for w in words for i in range(len(w) + 1)]
    tokens = torch.tensor(
        [[itos.index(c) for c in ("." * k + w[:i])[-k:]] for w, i in events], dtype=torch.int64
    )
    keys = feature_keys(context_keys(tokens, V), k, V, features, span, token_classes(itos))
    patterns = [family_patterns(w, i, k, span) for w, i in events]
    assert keys.shape == (len(events), len(patterns[0]))
    for f in range(keys.shape[1]):
        column = [pattern[f] for pattern in patterns]
        same = torch.tensor([[a == b for b in column] for a in column])
        assert torch.equal(keys[:, f, None] == keys[None, :, f], same)
        assert torch.equal(keys[:, f] < 0, torch.tensor([p is None for p in column]))
    present = keys[keys >= 0]
    columns = [set(keys[:, f][keys[:, f] >= 0].tolist()) for f in range(keys.shape[1])]
    assert len(set(present.tolist())) == sum(len(c) for c in columns)
    multipliers = {"skip": 2.0, "position": 3.0, "start": 5.0, "gaps": 7.0, "classes": 11.0}
    scale = row_penalty_scale(keys.flatten().clamp(min=0), k, V, features, None, multipliers, span)
    kinds = [1.0] * (span + 1) + [2.0] * (span - 1) + [3.0] * 2 + [5.0] * 4
    kinds += [7.0] * (2 * (k - 2)) + [11.0] * 2
    expected = torch.tensor(kinds).expand(len(events), -1)
    has_key = keys >= 0
    assert torch.equal(scale.view_as(keys)[has_key], expected[has_key])


@settings(max_examples=30, deadline=None)
@given(R=st.integers(0, 6), C=st.integers(1, 5), F=st.integers(1, 4), seed=st.integers(0, 99))
def test_summed_rows_add_a_contexts_rows_and_count_missing_rows_as_zero(R, C, F, seed):
    """summed_rows(W, rows)[c] = Σ_f W[rows[c, f]] over the rows below R (R marks a missing
    row), and its gradient reaches exactly those rows: a loop over the features says the same."""
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(R, 3, generator=generator, requires_grad=True)
    rows = torch.randint(0, R + 1, (C, F), generator=generator)
    got = summed_rows(W, rows)
    expected = torch.stack(
        [sum((W[r] for r in row.tolist() if r < R), W[:0].sum(dim=0)) for row in rows]
    )
    assert torch.allclose(got, expected, atol=1e-6)
    if R:
        weights = torch.randn(C, 3, generator=generator)
        (grad,) = torch.autograd.grad((got * weights).sum(), W)
        (grad_expected,) = torch.autograd.grad((expected * weights).sum(), W)
        assert torch.allclose(grad, grad_expected, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(C=st.integers(1, 40), F=st.integers(1, 5), seed=st.integers(0, 99))
def test_summed_rows_gradient_adds_each_rows_contexts_in_context_order(C, F, seed):
    """RowSum's backward gives row r Σ g[c] over the contexts c that use it, added one context at
    a time in context order (float32, exactly), the order embedding_bag's backward takes when its
    sort of the rows keeps ties in place; missing rows (R) get nothing."""
    generator = torch.Generator().manual_seed(seed)
    R = 3 * F
    W = torch.randn(R, 5, generator=generator, requires_grad=True)
    # Each column its own rows, as each feature kind and length has its own keys.
    rows = 3 * torch.arange(F) + torch.randint(0, 3, (C, F), generator=generator)
    rows[torch.rand(C, F, generator=generator) < 0.3] = R
    g = torch.randn(C, 5, generator=generator)
    (grad,) = torch.autograd.grad(summed_rows(W, rows), W, g)
    expected = torch.zeros(R, 5)
    for c in range(C):
        for r in rows[c].tolist():
            if r < R:
                expected[r] = expected[r] + g[c]
    assert torch.equal(grad, expected)


def test_feature_families_are_checked_in_one_line() -> None:
    """A base first, families known, each once, none on onehot; max_span within the context."""
    for bad, says in [
        ("bag", "model.features='bag' is unknown"),
        ("skipgram+length", "family 'length' is unknown"),
        ("interpolated+start+start", "names a family twice"),
        ("onehot+position", "onehot has a row per whole context"),
        ("position+skipgram", "model.features='position+skipgram' is unknown"),
    ]:
        with pytest.raises(UserError, match=re.escape(says)):
            check_features(bad)
    check_features("interpolated+start+position")
    for bad in (0, 4, 2.5, "2", True):
        with pytest.raises(UserError, match="model.max_span=.* is out of range"):
            check_max_span(bad, 3)
    check_max_span(None, 3)
    check_max_span(3, 3)
