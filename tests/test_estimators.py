"""The counting estimator and the comparison metrics, as identities over random data."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bigramlab.comparison.metrics import (
    compare,
    kl_to_mle,
    max_abs_diff,
    row_entropy,
    tv_distance,
)
from bigramlab.counting.bigrams import bigram_counts
from bigramlab.models.counted import AdditiveModel, mle_probs
from bigramlab.models.learned import LearnedLM
from bigramlab.models.nll import dense_rows, mean_nll


@st.composite
def counts_and_weights(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    V = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    n = draw(st.integers(1, 300))
    xs = torch.randint(V, (n,), generator=g)
    ys = torch.randint(V, (n,), generator=g)
    W = torch.randn((V, V), generator=g, dtype=torch.float64) * draw(st.floats(0.1, 5))
    return bigram_counts(xs, ys, V), W


def test_counts_match_a_python_loop() -> None:
    xs = torch.tensor([0, 1, 1, 2, 0, 1])
    ys = torch.tensor([1, 2, 2, 0, 1, 0])
    N = bigram_counts(xs, ys, 3)
    expected = torch.zeros(3, 3, dtype=torch.int64)
    for x, y in zip(xs.tolist(), ys.tolist()):
        expected[x, y] += 1
    assert torch.equal(N, expected)


def test_mle_rows_are_distributions_and_unseen_rows_are_zero() -> None:
    N = torch.tensor([[0, 3, 1], [0, 0, 0], [2, 2, 0]])
    P = mle_probs(N, alpha=0.0)
    assert torch.allclose(P[0], torch.tensor([0.0, 0.75, 0.25], dtype=torch.float64))
    assert torch.equal(P[1], torch.zeros(3, dtype=torch.float64))
    smoothed = mle_probs(N, alpha=1.0)
    assert torch.allclose(smoothed.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(smoothed[0], torch.tensor([1 / 7, 4 / 7, 2 / 7], dtype=torch.float64))


def test_unseen_bigram_under_alpha_zero_gives_inf_not_nan() -> None:
    train = torch.tensor([[1, 1], [1, 0]])
    held_out = torch.tensor([[0, 0], [0, 1]])  # (1 -> 1) never seen in train
    log_p = mle_probs(train, 0.0).log()
    assert mean_nll(log_p, held_out) == math.inf
    assert math.isclose(mean_nll(log_p, train), -(2 * math.log(0.5) + math.log(1.0)) / 3)
    assert mean_nll(log_p, torch.zeros(2, 2)) is None


@settings(max_examples=60, deadline=None)
@given(counts_and_weights())
def test_nll_gap_to_mle_is_the_weighted_kl(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    N, W = data
    log_p = W.log_softmax(1)
    gap = mean_nll(log_p, N) - mean_nll(mle_probs(N, 0.0).log(), N)
    kl = float(kl_to_mle(N, log_p))
    assert math.isclose(kl, gap, rel_tol=1e-9, abs_tol=1e-9)
    assert kl >= -1e-12


@settings(max_examples=60, deadline=None)
@given(counts_and_weights())
def test_mle_has_the_lowest_nll_on_its_own_data(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    N, W = data
    assert mean_nll(mle_probs(N, 0.0).log(), N) <= mean_nll(W.log_softmax(1), N) + 1e-12
    # A learned model with W = log P̂ (where defined) reproduces the MLE's NLL exactly.
    P = mle_probs(N, 0.0)
    assert math.isclose(mean_nll(P.log(), N), mean_nll(P.clamp_min(1e-300).log().log_softmax(1), N))


@settings(max_examples=40, deadline=None)
@given(counts_and_weights())
def test_tv_and_max_diff_bounds(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    N, W = data
    P, Q = mle_probs(N, 1.0), W.softmax(1)
    tv = float(tv_distance(N, P, Q))
    assert 0.0 <= tv <= 1.0 + 1e-12
    assert float(tv_distance(N, P, P)) == 0.0
    diff = float(max_abs_diff(P, Q))
    assert 0.0 <= diff <= 1.0 and tv <= diff * P.shape[1] / 2 + 1e-12


def test_row_entropy_of_uniform_and_one_hot_rows() -> None:
    P = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(row_entropy(P), torch.tensor([math.log(4), 0.0], dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(
    C=st.integers(1, 40),
    V=st.integers(1, 8),
    density=st.floats(0.0, 1.0),
    m=st.integers(0, 30),
    alpha=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 999),
)
def test_additive_rows_from_sparse_counts_are_rows_of_its_dense_p(C, V, density, m, alpha, seed):
    """dense_rows(N, rows) = N.to_dense()[rows] (repeated and empty rows included), and the
    additive model's rows and P made from the sparse counts are those of the dense counts, so
    that it can keep the counts instead of P."""
    g = torch.Generator().manual_seed(seed)
    dense = (torch.rand(C, V, generator=g) < density) * torch.randint(1, 9, (C, V), generator=g)
    sparse = dense.to_sparse().coalesce()
    rows = torch.randint(0, C, (m,), generator=g)
    assert torch.equal(dense_rows(sparse, rows), dense[rows])
    model = AdditiveModel({"train": sparse}, torch.arange(C), 1, "." * V, alpha)
    P = mle_probs(dense, alpha)
    assert torch.equal(model.probs, P)
    assert torch.equal(model.row_probs(rows), P[rows])


@settings(max_examples=30, deadline=None)
@given(V=st.integers(2, 8), seed=st.integers(0, 10_000), alpha=st.floats(0.01, 5.0))
def test_compare_of_two_models_is_their_nlls_gap_kl_and_distances(V, seed, alpha) -> None:
    """compare(learned, counted, ...) on a bigram: each model's NLL per split, the gap on val,
    kl_train = NLL_train(learned) − NLL_train(MLE) (the identity), and TV and the largest
    difference of their tables, against the formulas written out on dense tables."""
    g = torch.Generator().manual_seed(seed)
    counts = {s: torch.randint(0, 4, (V, V), generator=g) for s in ("train", "val")}
    for N in counts.values():
        N[:, 0] += 1  # every context seen in train, and val never empty
    itos = "." + "abcdefg"[: V - 1]
    contexts = torch.arange(V)
    learned = LearnedLM(itos, 1, "onehot", contexts, torch.randn(V, V, generator=g))
    counted = AdditiveModel(counts, contexts, 1, itos, alpha)
    got = compare(learned, counted, contexts, counts)

    log_P = learned.W.detach().double().log_softmax(dim=1)
    Q = mle_probs(counts["train"], alpha)
    for split, N in counts.items():
        assert got[f"{split}_nll"] == pytest.approx(mean_nll(log_P, N), rel=1e-12)
        assert got[f"counted_{split}_nll"] == pytest.approx(mean_nll(Q.log(), N), rel=1e-12)
    assert got["gap_val"] == pytest.approx(got["val_nll"] - got["counted_val_nll"], rel=1e-12)
    mle_train = mean_nll(mle_probs(counts["train"]).log(), counts["train"])
    assert got["kl_train"] == pytest.approx(got["train_nll"] - mle_train, abs=1e-12)
    P = log_P.exp()
    weight = counts["train"].sum(dim=1).double() / counts["train"].sum()
    tv = (weight * 0.5 * (P - Q).abs().sum(dim=1)).sum()
    assert got["tv_train"] == pytest.approx(float(tv), abs=1e-12)
    assert got["max_abs_diff"] == pytest.approx(float((P - Q).abs().max()), abs=1e-12)
