"""The learned models of longer contexts trained: the KL identity at k = 2 and 3, L-BFGS on the
interpolated, skip-gram and family features, sampling and evaluation of them, the ngram_orders
experiment and its report, and a repeatable L-BFGS run."""

from __future__ import annotations

import json
import math
import random
import string
from pathlib import Path

import pytest
import torch

from bigramlab.comparison.metrics import kl_to_mle
from bigramlab.counting.ngrams import count_ngrams
from bigramlab.data.corpora import TextFile
from bigramlab.errors import UserError
from bigramlab.models.counted import mle_probs
from bigramlab.models.nll import mean_nll
from bigramlab.train import optimizer_note
from tests.conftest import make_words, train_and_load
from tests.helpers import run_in_process


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
    evaluated = run_in_process("bigramlab.evaluate", f"ckpt={ckpt}", *data, cwd=ckpt.parent)
    assert evaluated.returncode == 0, evaluated.stderr
    out = evaluated.stdout
    assert describe in out
    val = next(line for line in out.splitlines() if line.startswith("val "))
    assert float(val.split()[3]) == pytest.approx(val_nll, abs=1e-5)
    drawn = run_in_process(
        "bigramlab.sample", f"ckpt={ckpt}", "n=20", cwd=ckpt.parent
    ).stdout.split()
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
    refused = run_in_process("bigramlab.export", f"ckpt={ckpt}", "out=m.arpa", cwd=tmp_path)
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
    refused = run_in_process("bigramlab.export", f"ckpt={ckpt}", "out=m.arpa", cwd=tmp_path)
    assert refused.returncode == 2 and "cannot be written as ARPA" in refused.stderr
    assert "a skip hides the newest, +position reads beyond the suffixes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.arpa").exists()


@pytest.mark.slow
def test_ngram_orders_experiment_and_its_report(tmp_path: Path) -> None:
    """experiment=ngram_orders (two feature sets x two orders x two penalties here) and
    `python -m bigramlab.report --by-order`: each order's learned row is its best job on dev, and
    the report's Kneser–Ney is the jobs' own."""
    path = tmp_path / "syllables.txt"
    path.write_text("\n".join(syllable_words(600, seed=1)) + "\n")
    sweep = tmp_path / "sweep"
    command = [
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
    assert run_in_process("bigramlab.train", *command, cwd=tmp_path).returncode == 0
    jobs = []
    for p in sweep.glob("*/metrics.json"):
        name = p.parent.name
        k, features = int(name.split("context=")[1][0]), name.split("features=")[1].split(",")[0]
        jobs.append(json.loads(p.read_text()) | {"k": k, "features": features})
    assert len(jobs) == 8 and all(job["status"] == "ok" for job in jobs)
    by_order = ["--by-order", "--data", str(path), "--orders", "1-3"]
    report = run_in_process("bigramlab.report", str(sweep), *by_order, cwd=tmp_path)
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
    run = ["dataset=text_file", f"dataset.path={path}", "trainer.max_steps=3"]
    run += ["trainer.val_check_interval=1", "callbacks.progress_bar.refresh_rate=0"]
    assert (
        run_in_process("bigramlab.train", *run, f"hydra.run.dir={other}", cwd=tmp_path).returncode
        == 0
    )
    both = ["--by-order", "--data", str(path), "--out", str(tmp_path / "both")]
    refused = run_in_process("bigramlab.report", str(sweep), str(other), *both, cwd=tmp_path)
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
        other_data = ["dataset=text_file", f"dataset.path={other}", "counted.smoothing=kneser_ney"]
        evaluated = run_in_process("bigramlab.evaluate", f"ckpt={ckpt}", *other_data, cwd=tmp_path)
        assert evaluated.returncode == 0, evaluated.stderr
        out = evaluated.stdout
        rows = {
            line.split()[0]: line.split()
            for line in out.splitlines()
            if line.split()[:1] in (["train"], ["val"], ["test"])
        }
        assert all(
            math.isfinite(float(row[3])) and math.isfinite(float(row[5])) for row in rows.values()
        )
        no_row = [line for line in out.splitlines() if "has learned nothing of" in line]
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
