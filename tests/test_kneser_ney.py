"""The counted models at longer contexts: Kneser–Ney against its formulas written with dicts, its
distributions and fallback discounts, and every counted model through the one interface."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bigramlab.counting.ngrams import ngram_counts_of_words
from bigramlab.data.vocab import SPLITS, Vocab, split_words
from bigramlab.keys import context_tokens
from bigramlab.models.kneser_ney import FALLBACK_DISCOUNTS, KneserNey
from bigramlab.models.nll import mean_nll
from bigramlab.models.smoothing import counted_model
from tests.conftest import make_words
from tests.helpers import events_by_loop

SPLIT = [0.7, 0.2, 0.1]


def kneser_ney_by_dicts(words: list[str], k: int, vocab: str) -> dict:
    """Interpolated modified Kneser–Ney written from its formulas with dicts of strings: P(w | h)
    for every context h of k characters (a function of h)."""
    top = events_by_loop(words, k)
    counts = {k: top}  # counts[j][(h, w)], h of j characters
    for j in range(k - 1, -1, -1):
        cont: Counter = Counter()
        for h, w in counts[j + 1]:
            cont[h[1:], w] += 1
        counts[j] = cont
    discounts = {}
    for j, c in counts.items():
        n = [sum(1 for v in c.values() if v == r) for r in (1, 2, 3, 4)]
        if min(n) == 0:
            discounts[j] = FALLBACK_DISCOUNTS
            continue
        y = n[0] / (n[0] + 2 * n[1])
        d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
        ok = all(0 < x <= r for r, x in enumerate(d, start=1))
        discounts[j] = d if ok else FALLBACK_DISCOUNTS
    by_context = {j: defaultdict(dict) for j in counts}
    for j, c in counts.items():
        for (h, w), v in c.items():
            by_context[j][h][w] = v

    def prob(h: str, w: str) -> float:
        p = 1 / len(vocab)
        for j in range(0, k + 1):
            seen = by_context[j].get(h[len(h) - j :] if j else "", {})
            total = sum(seen.values())
            if total == 0:
                continue
            d1, d2, d3 = discounts[j]
            disc = {v: d1 if v == 1 else d2 if v == 2 else d3 for v in seen.values()}
            gamma = sum(disc[v] for v in seen.values())
            a = seen.get(w, 0)
            p = (max(a - disc.get(a, 0), 0) + gamma * p) / total
        return p

    return prob


@pytest.mark.parametrize("k", [1, 2, 3])
def test_kneser_ney_equals_its_formulas_written_with_dicts(k: int) -> None:
    words = make_words(300, seed=k, alphabet="abcde")
    vocab = Vocab.from_words(words)
    contexts, counts = ngram_counts_of_words({"train": words}, vocab, k)
    model = KneserNey(counts, contexts, k, vocab.itos)
    # Seen contexts and unseen ones (every context of k characters, including ones never seen).
    every = torch.arange(len(vocab) ** k)
    probs = model.next_probs(every)
    reference = kneser_ney_by_dicts(words, k, vocab.itos)
    tokens = context_tokens(every, k, len(vocab))
    for row in range(0, len(every), max(1, len(every) // 60)):
        h = "".join(vocab.itos[t] for t in tokens[row].tolist())
        expected = [reference(h, w) for w in vocab.itos]
        torch.testing.assert_close(probs[row], torch.tensor(expected, dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(alphabet="abcd", min_size=1, max_size=6), min_size=1, max_size=40),
    st.integers(1, 4),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=20),
)
def test_kneser_ney_distributions_sum_to_one_for_seen_and_unseen_contexts(words, k, queries):
    vocab = Vocab.from_words(words)
    V = len(vocab)
    contexts, counts = ngram_counts_of_words({"train": words}, vocab, k)
    model = KneserNey(counts, contexts, k, vocab.itos)
    keys = torch.cat([contexts, torch.tensor(queries) % V**k])
    probs = model.next_probs(keys)
    assert bool((probs > 0).all())
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(keys), dtype=torch.float64))


@pytest.mark.parametrize("smoothing", ["additive", "kneser_ney"])
@pytest.mark.parametrize("k", [1, 3])
def test_every_counted_model_answers_the_same_questions(smoothing: str, k: int) -> None:
    """Each kind, through the one interface: its rows are P of the data's contexts and its NLL
    is theirs on the counts; any context, and any shorter history it backs off to, gets a
    distribution (summing to 1)."""
    words = make_words(200, seed=k, alphabet="abcd")
    vocab = Vocab.from_words(words)
    V = len(vocab)
    parts = dict(zip(SPLITS, split_words(words, (0.8, 0.2, 0.0), 1)))
    contexts, counts = ngram_counts_of_words(parts, vocab, k)
    model = counted_model(counts, 0.5, smoothing, contexts, k, itos=vocab.itos)
    assert model.context == k and model.describe().startswith(f"counted.smoothing={smoothing}")
    torch.testing.assert_close(model.next_probs(contexts), model.probs)
    assert model.nll["val"] == pytest.approx(mean_nll(model.log_probs(contexts), counts["val"]))
    every = torch.arange(V**k)
    ones = torch.ones(V**k, dtype=torch.float64)
    torch.testing.assert_close(model.next_probs(every).sum(dim=1), ones)
    for length in range(k):
        shorter = torch.arange(V**length)
        sums = model.shorter_probs(shorter, length).sum(dim=1)
        torch.testing.assert_close(sums, torch.ones(len(shorter), dtype=torch.float64))
        assert set(model.shorter_contexts(length).tolist()) <= set(shorter.tolist())


def test_kneser_ney_falls_back_where_counts_of_counts_give_no_discount() -> None:
    words = ["ab", "ba"]  # every count is 1: n2 = n3 = n4 = 0
    vocab = Vocab.from_words(words)
    contexts, counts = ngram_counts_of_words({"train": words}, vocab, 2)
    model = KneserNey(counts, contexts, 2, vocab.itos)
    assert all(order.fallback and order.discounts == FALLBACK_DISCOUNTS for order in model.orders)
