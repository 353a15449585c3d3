"""Longer contexts: k-gram counting, Kneser–Ney against a direct implementation of its formulas,
and the learned models of any order (the KL identity at k = 2 and 3, sampling, evaluation)."""

from __future__ import annotations

import json
import math
import random
import re
import string
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bigramlab.comparison.metrics import kl_to_mle
from bigramlab.counting import ngrams
from bigramlab.counting.ngrams import (
    check_context,
    context_keys,
    context_tokens,
    count_ngrams,
    event_keys,
    ngram_counts_of_words,
)
from bigramlab.data.corpora import TextFile
from bigramlab.data.datamodule import ngram_data
from bigramlab.data.vocab import SPLITS, Vocab, split_words
from bigramlab.errors import UserError
from bigramlab.models.counted import mle_probs
from bigramlab.models.features import (
    check_features,
    check_max_span,
    feature_keys,
    feature_spans,
    logits,
    row_penalty_scale,
    token_classes,
)
from bigramlab.models.kneser_ney import FALLBACK_DISCOUNTS, KneserNey
from bigramlab.models.nll import mean_nll
from bigramlab.models.smoothing import counted_model
from bigramlab.train import optimizer_note
from tests.conftest import assert_same_counts, make_words, train_and_load

SPLIT = [0.7, 0.2, 0.1]


def events_by_loop(words: list[str], k: int) -> Counter:
    """(context string, next character) of every event, the lecture's way with k `.`s of padding."""
    found: Counter = Counter()
    for w in words:
        chars = ["."] * k + list(w) + ["."]
        for i in range(k, len(chars)):
            found["".join(chars[i - k : i]), chars[i]] += 1
    return found


def as_strings(vocab: Vocab, k: int, contexts: torch.Tensor, N: torch.Tensor) -> Counter:
    tokens = context_tokens(contexts, k, len(vocab))
    found: Counter = Counter()
    for row, col in torch.nonzero(N).tolist():
        found["".join(vocab.itos[t] for t in tokens[row].tolist()), vocab.itos[col]] = int(
            N[row, col]
        )
    return found


def test_event_keys_are_the_padded_contexts() -> None:
    vocab = Vocab.from_words(["emma", "ab"])
    contexts, tokens = event_keys(vocab.encode_words(["emma", "ab"]).numpy(), 3, len(vocab))
    shown = [
        "".join(vocab.itos[t] for t in row)
        for row in context_tokens(torch.from_numpy(contexts), 3, len(vocab)).tolist()
    ]
    assert shown == ["...", "..e", ".em", "emm", "mma", "...", "..a", ".ab"]
    assert "".join(vocab.itos[t] for t in tokens) == "emma.ab."


@pytest.mark.parametrize("accent", ["", "é"], ids=["ascii", "decoded"])
@pytest.mark.parametrize(
    "k,tally", [(1, "bincount"), (1, "sort"), (2, "bincount"), (3, "sort"), (6, "sort")]
)
def test_count_ngrams_equals_a_loop_over_the_split_words(
    tmp_path: Path, k: int, accent: str, tally: str, monkeypatch
) -> None:
    # One table of every key (np.bincount), or each piece's keys sorted and the pieces merged.
    monkeypatch.setattr(
        "bigramlab.counting.ngrams.SMALL_TABLE", 1 << 22 if tally == "bincount" else 0
    )
    # Keys made in blocks of 7 events, so that contexts straddle blocks as well as pieces.
    monkeypatch.setattr("bigramlab.counting.ngrams.BLOCK", 7)
    # Mixed case, lower-cased when read; pieces of a few hundred bytes, so that words of every
    # split meet in a piece and one word count carries over from piece to piece.
    words = [w.upper() if i % 3 == 0 else w for i, w in enumerate(make_words(400, seed=3))]
    words = [w + accent for w in words]
    path = tmp_path / "w.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 300)
    counted = count_ngrams(TextFile(str(path), lowercase=True), k, SPLIT, 7)
    words = [w.lower() for w in words]
    parts = split_words(words, SPLIT, 7)
    assert counted.n_words == {s: len(p) for s, p in zip(SPLITS, parts)}
    dense = counted.dense_counts()
    for split, part in zip(SPLITS, parts):
        assert as_strings(counted.vocab, k, counted.contexts, dense[split]) == (
            events_by_loop(part, k)
        )
    table, counts = ngram_counts_of_words(dict(zip(SPLITS, parts)), counted.vocab, k)
    assert torch.equal(table, counted.contexts)
    assert all(torch.equal(counts[s], dense[s]) for s in SPLITS)


def test_an_order_too_long_for_64_bit_keys_is_refused_with_the_longest_that_fits() -> None:
    check_context(11, 27)
    with pytest.raises(UserError, match=r"model.context=12 is too long .* use model.context <= 11"):
        check_context(12, 27)


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
def test_logits_sum_the_rows_a_context_has_and_count_missing_rows_as_zero(R, C, F, seed):
    """logits(W, rows)[c] = Σ_f W[rows[c, f]] over the rows below R (R marks a missing row), and
    its gradient reaches exactly those rows: a loop over the features says the same."""
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(R, 3, generator=generator, requires_grad=True)
    rows = torch.randint(0, R + 1, (C, F), generator=generator)
    got = logits(W, rows)
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
def test_logits_gradient_adds_each_rows_contexts_in_context_order(C, F, seed):
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
    (grad,) = torch.autograd.grad(logits(W, rows), W, g)
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
    model = KneserNey(counts, contexts, k)
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
    model = KneserNey(counts, contexts, k)
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
    model = counted_model(counts, 0.5, smoothing, contexts, k)
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
    model = KneserNey(counts, contexts, 2)
    assert all(order.fallback and order.discounts == FALLBACK_DISCOUNTS for order in model.orders)


@pytest.mark.parametrize("k", [2, 3])
def test_onehot_gap_to_the_mle_is_the_kl_at_order_k(train_config, tmp_path: Path, k: int):
    """NLL_train(learned) − NLL_train(MLE, α=0) = Σ_x p̂(x) KL(P̂(·|x) ‖ P_W(·|x)) for the trained
    W, from metrics.json; and training (reg 0) lowers it."""
    cfg = train_config(
        f"model.context={k}", "model.reg=0", "counted.alpha=0", "trainer.max_steps=30"
    )
    metrics, W = train_and_load(cfg, tmp_path / "out")
    assert metrics["kl_train"] == pytest.approx(
        metrics["train_nll"] - metrics["counted_train_nll"], abs=1e-9
    )
    counted = count_ngrams(TextFile(cfg.dataset.path), k, [0.8, 0.1, 0.1], 42)
    N = counted.dense_counts()["train"]
    assert W.shape == (len(counted.contexts), len(counted.vocab))
    W0 = torch.randn(W.shape, generator=torch.Generator().manual_seed(2147483647))
    before = float(kl_to_mle(N, W0.double().log_softmax(dim=1)))
    assert metrics["kl_train"] < before
    gap = mean_nll(W.double().log_softmax(dim=1), N) - mean_nll(mle_probs(N).log(), N)
    assert metrics["kl_train"] == pytest.approx(gap, abs=1e-6)


def syllable_words(n: int, seed: int = 0) -> list[str]:
    """Words of 1 to 3 syllables: what comes next depends on more than the last letter."""
    rng = random.Random(seed)
    syllables = ["ka", "ri", "na", "ot", "el", "mi", "ra", "de"]
    return ["".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(n)]


def assert_evaluate_and_sample(
    ckpt: Path, data: list[str], describe: str, val_nll: float, letters: str
) -> None:
    """evaluate names the checkpoint's model and gives metrics.json's val NLL on `data`; sample
    draws 20 words of the data's letters."""
    run = [sys.executable, "-m", "bigramlab.evaluate", f"ckpt={ckpt}", *data]
    out = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert describe in out
    val = next(line for line in out.splitlines() if line.startswith("val "))
    assert float(val.split()[3]) == pytest.approx(val_nll, abs=1e-5)
    sample = [sys.executable, "-m", "bigramlab.sample", f"ckpt={ckpt}", "n=20"]
    drawn = subprocess.run(sample, capture_output=True, text=True, check=True).stdout.split()
    assert len(drawn) == 20 and all(set(w) <= set(letters) for w in drawn)


@pytest.mark.slow
def test_interpolated_lbfgs_beats_the_bigram_on_held_out_data_and_sample_evaluate_run(
    train_config, tmp_path: Path
) -> None:
    path = tmp_path / "syllables.txt"
    path.write_text("\n".join(syllable_words(600)) + "\n")
    data = ["dataset=text_file", f"dataset.path={path}"]
    bigram, _ = train_and_load(train_config(*data, "trainer.max_steps=200"), tmp_path / "bigram")
    cfg = train_config(
        *data,
        "model.context=3",
        "model.features=interpolated",
        "optim=lbfgs",
        "trainer.max_steps=5",
        "trainer.val_check_interval=1",
    )
    metrics, _ = train_and_load(cfg, tmp_path / "interp")
    assert metrics["val_nll"] < bigram["val_nll"] - 0.1
    ckpt = tmp_path / "interp" / "checkpoints" / "last.ckpt"
    assert_evaluate_and_sample(
        ckpt,
        [*data, "counted.smoothing=kneser_ney"],
        "model.context=3 model.features=interpolated",
        metrics["val_nll"],
        "kaurinotelmd",
    )
    # A run of another order (on the same data) refuses to resume from it.
    again = train_config(
        *data,
        "model.context=2",
        "model.features=interpolated",
        "optim=lbfgs",
        "trainer.max_steps=9",
        f"ckpt_path={ckpt}",
    )
    with pytest.raises(UserError, match="model of another kind .*model.context=3"):
        train_and_load(again, tmp_path / "again")
    assert json.loads((tmp_path / "interp" / "metrics.json").read_text())["status"] == "ok"


def test_sgd_where_it_does_not_suit_the_model_gets_a_note_naming_lbfgs(train_config) -> None:
    """Interpolated and skipgram with plain SGD get the note; onehot with SGD and any features
    with L-BFGS do not."""
    for features in ("interpolated", "skipgram"):
        note = optimizer_note(train_config("model.context=3", f"model.features={features}"))
        assert note is not None
        assert f"model.features={features} with optim=sgd (lr 50)" in note and "optim=lbfgs" in note
    onehot = optimizer_note(train_config("model.context=3"))
    assert onehot is not None and onehot.startswith("note: model.context=3 with optim=sgd")
    assert "optim=lbfgs trainer.max_steps=15" in onehot
    assert optimizer_note(train_config("model.context=1")) is None
    lbfgs = train_config("model.context=3", "model.features=skipgram", "optim=lbfgs")
    assert optimizer_note(lbfgs) is None


def alternating_words(n: int, seed: int = 0) -> list[str]:
    """Words a1 x1 a2 x2 …: each a_{i+1} is the letter after a_i in "abcde" (cyclically), each x_i
    is random noise from the other 21 letters: what follows a noise letter depends on the token
    before it."""
    rng = random.Random(seed)
    words = []
    for _ in range(n):
        a = rng.randrange(5)
        letters = []
        for _ in range(rng.randint(1, 4)):
            letters += ["abcde"[a], rng.choice("fghijklmnopqrstuvwxyz")]
            a = (a + 1) % 5
        words.append("".join(letters))
    return words


@pytest.mark.slow
def test_skipgram_learns_what_the_token_before_last_says_and_is_not_exported(
    train_config, tmp_path: Path
) -> None:
    """With few words, the skip (a_i, *) generalises over the noise letter that interpolated's
    suffix (a_i, x_i) must see in every combination; evaluate and sample read the checkpoint,
    export refuses it in one line."""
    path = tmp_path / "alternating.txt"
    path.write_text("\n".join(alternating_words(200)) + "\n")
    data = [
        "dataset=text_file",
        f"dataset.path={path}",
        "data.split=[0.3,0.7,0]",
        "model.context=3",
        "optim=lbfgs",
        "model.reg=0.01",
        "trainer.max_steps=5",
        "trainer.val_check_interval=1",
    ]
    val = {}
    for features in ("interpolated", "skipgram"):
        metrics, _ = train_and_load(
            train_config(*data, f"model.features={features}"), tmp_path / features
        )
        val[features] = metrics["val_nll"]
    assert val["skipgram"] < val["interpolated"] - 0.05, val
    ckpt = tmp_path / "skipgram" / "checkpoints" / "last.ckpt"
    assert_evaluate_and_sample(
        ckpt,
        data[:3],
        "model.context=3 model.features=skipgram",
        val["skipgram"],
        "abcdefghijklmnopqrstuvwxyz",
    )
    export = [sys.executable, "-m", "bigramlab.export", f"ckpt={ckpt}", "out=m.arpa"]
    refused = subprocess.run(export, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "cannot be written as ARPA" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.arpa").exists()


@pytest.mark.slow
def test_position_learns_the_words_length_and_families_evaluate_sample_resume(
    train_config, tmp_path: Path
) -> None:
    """Words of exactly 5 random letters: with bigram suffixes alone the end of a word is a guess,
    with +position it is known (val NLL far lower). The model of every family evaluates to its
    val NLL, samples, resumes to the W of an uninterrupted run, and export refuses it."""
    rng = random.Random(5)
    path = tmp_path / "five.txt"
    path.write_text("\n".join("".join(rng.choices("abcdefgh", k=5)) for _ in range(400)) + "\n")
    data = ["dataset=text_file", f"dataset.path={path}", "data.split=[0.5,0.5,0]"]
    common = [*data, "model.context=6", "model.max_span=1", "optim=lbfgs", "model.reg=0.01"]
    steps = ["trainer.max_steps=4", "trainer.val_check_interval=1"]
    val = {}
    for features in ("interpolated", "interpolated+position"):
        cfg = train_config(*common, *steps, f"model.features={features}")
        val[features], _ = train_and_load(cfg, tmp_path / features)
    gain = val["interpolated"]["val_nll"] - val["interpolated+position"]["val_nll"]
    assert gain > 0.2, val  # the end's entropy among 9 outcomes, ~0.4 nats at 6 positions

    every = "skipgram+position+start+gaps+classes"
    family = [*common, f"model.features={every}", "callbacks.checkpoint.every_n_train_steps=1"]
    metrics, W_straight = train_and_load(train_config(*family, *steps), tmp_path / "straight")
    ckpt = tmp_path / "straight" / "checkpoints" / "last.ckpt"
    assert_evaluate_and_sample(
        ckpt, data, f"model.context=6 model.features={every} model.max_span=1",
        metrics["val_nll"], "abcdefgh",
    )  # fmt: skip
    half = [*family, "trainer.max_steps=2", "trainer.val_check_interval=1"]
    train_and_load(train_config(*half), tmp_path / "resumed")
    resume = f"ckpt_path={tmp_path / 'resumed' / 'checkpoints' / 'last.ckpt'}"
    _, W_resumed = train_and_load(train_config(*family, *steps, resume), tmp_path / "resumed")
    assert torch.allclose(W_resumed, W_straight, atol=1e-5)
    export = [sys.executable, "-m", "bigramlab.export", f"ckpt={ckpt}", "out=m.arpa"]
    refused = subprocess.run(export, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "cannot be written as ARPA" in refused.stderr
    assert "a skip hides the newest, +position reads beyond the suffixes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.arpa").exists()


def test_a_corpus_too_big_to_count_is_refused_with_its_estimate_before_its_split_is_drawn(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(3000, alphabet=string.ascii_lowercase)) + "\n")
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 4000)  # a sample of ~4,000 events
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 2**19)

    def drawn(*args, **kwargs):
        raise AssertionError("the splits were drawn before the memory was checked")

    monkeypatch.setattr("bigramlab.counting.ngrams.split_assignment", drawn)
    # Random letters: nearly every 6-gram is new, so the sample's Heaps exponent is near 1 and
    # the estimate near one pair an event (about 16,500 events, 48 bytes each): 0.8 MB.
    with pytest.raises(
        UserError,
        match=r"^counting .*w.txt at model.context=5 needs more than this machine's 512.0 KiB: "
        r"about [0-9.]+ KiB for the splits of 3,000 words and about 1[0-9],[0-9]{3} distinct "
        r"n-grams \(Heaps' law from the first 4,[0-9]{3} events\): use a shorter model.context or "
        r"less data$",
    ):
        count_ngrams(TextFile(str(path)), 5, SPLIT, 0)


def test_a_repetitive_corpus_over_the_bound_is_counted_when_its_estimate_fits(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(20, seed=4) * 1500) + "\n")
    expected = count_ngrams(TextFile(str(path)), 5, SPLIT, 0)
    events = sum(expected.n_words.values()) + sum(int(N.sum()) for N in expected.counts.values())
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 4000)
    # Memory for half of one pair an event: the bound (one pair an event) does not fit, the
    # estimate of a corpus of 20 words repeated (a few hundred pairs) does.
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 32 * events)
    sampled = []
    real_sample = ngrams._sample_heaps
    monkeypatch.setattr(
        "bigramlab.counting.ngrams._sample_heaps",
        lambda *args: sampled.append(real_sample(*args)) or sampled[-1],
    )
    found = count_ngrams(TextFile(str(path)), 5, SPLIT, 0)
    assert len(sampled) == 1 and 0 < sampled[0][0] <= sampled[0][1] < 200
    assert_same_counts(found, expected)


def test_a_count_whose_start_misleads_its_estimate_stops_before_the_merge(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    # The first pieces one word repeated, the rest random: the sample sees one n-gram in
    # every event and the estimate is far too low.
    path.write_text(
        "\n".join(["abc"] * 2000 + make_words(3000, alphabet="abcdefghijklmnop")) + "\n"
    )
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 4000)
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 400 * 2**10)
    with pytest.raises(
        UserError,
        match=r"counting .*w.txt at model.context=5 needs more than this machine's 400.0 KiB: the "
        r"[0-9,]+ distinct n-grams found before the end of the file already need [0-9.]+ KiB: use "
        r"a shorter model.context",
    ):
        count_ngrams(TextFile(str(path)), 5, SPLIT, 0)
    count_ngrams(TextFile(str(path)), 2, SPLIT, 0)  # 3 x 17^3 keys: within the bound


def test_pieces_merged_as_they_come_give_the_counts_of_one_piece(tmp_path: Path, monkeypatch):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(3000, seed=9)) + "\n")
    whole = count_ngrams(TextFile(str(path)), 5, SPLIT, 3)
    monkeypatch.setattr("bigramlab.data.corpora.CHUNK_BYTES", 300)  # about 70 pieces
    pieces = count_ngrams(TextFile(str(path)), 5, SPLIT, 3)
    assert_same_counts(pieces, whole)


def test_an_order_too_large_to_train_in_memory_is_refused_before_its_dense_counts(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(make_words(2000)) + "\n")
    monkeypatch.setattr("bigramlab.counting.ngrams.physical_memory", lambda: 2**20)
    contexts = len(count_ngrams(TextFile(str(path)), 4, SPLIT, 0).contexts)
    with pytest.raises(
        UserError,
        match=rf"model.context=4 on .*w.txt needs about .*MiB to train \({contexts:,} contexts x "
        r"11 tokens\), more than this machine's 1.0 MiB: use a shorter model.context",
    ):
        ngram_data(TextFile(str(path)), SPLIT, 0, with_pairs=False, context=4)
    ngram_data(TextFile(str(path)), SPLIT, 0, with_pairs=False, context=2)


@pytest.mark.slow
def test_ngram_orders_experiment_and_its_report(tmp_path: Path) -> None:
    """experiment=ngram_orders (two feature sets x two orders x two penalties here) and
    `python -m bigramlab.report --by-order`: each order's learned row is its best job on dev, and
    the report's Kneser–Ney is the jobs' own."""
    path = tmp_path / "syllables.txt"
    path.write_text("\n".join(syllable_words(600, seed=1)) + "\n")
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "bigramlab.train",
        "experiment=ngram_orders",
        "dataset=text_file",
        f"dataset.path={path}",
        "model.context=1,3",
        "model.reg=0.004,0.016",
        "trainer.max_steps=3",
        "trainer.val_check_interval=1",
        "callbacks.progress_bar.refresh_rate=0",
        f"hydra.sweep.dir={sweep}",
    ]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    jobs = []
    for p in sweep.glob("*/metrics.json"):
        name = p.parent.name
        k, features = int(name.split("context=")[1][0]), name.split("features=")[1].split(",")[0]
        jobs.append(json.loads(p.read_text()) | {"k": k, "features": features})
    assert len(jobs) == 8 and all(job["status"] == "ok" for job in jobs)
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigramlab.report",
            str(sweep),
            "--by-order",
            "--data",
            str(path),
            "--orders",
            "1-3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.returncode == 0, report.stderr
    rows = [
        line.strip("| ").split(" | ")
        for line in (sweep / "ngram_report.md").read_text().splitlines()
        if line.startswith("| ")
    ]
    table = {(r[0], int(r[1])): (float(r[2]), float(r[3])) for r in rows if r[1].isdigit()}
    for k in (1, 3):
        for features in ("interpolated", "skipgram"):
            mine = [job for job in jobs if job["k"] == k and job["features"] == features]
            best = min(mine, key=lambda job: job["val_nll"])
            learned = next(
                v
                for (name, kk), v in table.items()
                if kk == k and name.startswith(f"learned, {features}")
            )
            assert learned == (round(best["val_nll"], 4), round(best["test_nll"], 4))
        kn = table["counted, interpolated modified Kneser–Ney", k]
        assert kn == pytest.approx(
            (mine[0]["counted_val_nll"], mine[0]["counted_test_nll"]), abs=6e-5
        )
    assert {k for (name, k) in table if name.startswith("counted, additive")} == {1, 2, 3}
    # A run on the default (randperm) split beside them: refused in one line, no table written.
    other = tmp_path / "randperm"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bigramlab.train",
            "dataset=text_file",
            f"dataset.path={path}",
            "trainer.max_steps=3",
            "trainer.val_check_interval=1",
            "callbacks.progress_bar.refresh_rate=0",
            f"hydra.run.dir={other}",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=600,
    )
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigramlab.report",
            str(sweep),
            str(other),
            "--by-order",
            "--data",
            str(path),
            "--out",
            str(tmp_path / "both"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2 and not (tmp_path / "both").exists()
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: ") and "were trained on different splits of the words" in line
    assert "'lecture'" in line and "'randperm'" in line


@pytest.mark.slow
def test_contexts_never_seen_get_finite_nlls_and_evaluate_says_which_had_no_row(
    train_config, tmp_path: Path
) -> None:
    """Other data than the checkpoint's: interpolated backs off to the suffixes it has, Kneser–Ney
    to lower orders, and onehot predicts a context without a row uniformly, which evaluate
    reports."""
    other = tmp_path / "other.txt"
    other.write_text("\n".join(w[::-1] + "ja" for w in make_words(200, seed=5)) + "\n")
    for features, optim in (("onehot", "sgd"), ("interpolated", "lbfgs")):
        cfg = train_config(
            "model.context=3", f"model.features={features}", f"optim={optim}", "trainer.max_steps=3"
        )
        train_and_load(cfg, tmp_path / features)
        ckpt = tmp_path / features / "checkpoints" / "last.ckpt"
        run = [
            sys.executable,
            "-m",
            "bigramlab.evaluate",
            f"ckpt={ckpt}",
            "dataset=text_file",
            f"dataset.path={other}",
            "counted.smoothing=kneser_ney",
        ]
        out = subprocess.run(run, capture_output=True, text=True, check=True).stdout
        rows = {
            line.split()[0]: line.split()
            for line in out.splitlines()
            if line.split()[:1] in (["train"], ["val"], ["test"])
        }
        assert all(
            math.isfinite(float(row[3])) and math.isfinite(float(row[5])) for row in rows.values()
        )
        no_row = [line for line in out.splitlines() if "has no row for" in line]
        assert bool(no_row) == (features == "onehot")


@pytest.mark.slow
def test_an_lbfgs_run_repeats_bit_for_bit(train_config, tmp_path: Path) -> None:
    """The backward of W[rows] sums each row's gradient across threads in no fixed order unless
    the run is deterministic (trainer.deterministic): then two runs give the same W."""
    path = tmp_path / "many.txt"
    path.write_text("\n".join(make_words(20000, seed=2, alphabet=string.ascii_lowercase)) + "\n")
    weights = []
    for attempt in range(2):
        cfg = train_config(
            f"dataset.path={path}",
            "model.context=4",
            "model.features=interpolated",
            "optim=lbfgs",
            "trainer.max_steps=3",
            "callbacks.report.figures_every_n_steps=0",
        )
        weights.append(train_and_load(cfg, tmp_path / f"run{attempt}")[1])
    assert torch.equal(weights[0], weights[1])
