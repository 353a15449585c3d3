"""The model's loss against the lecture's formula, its three exact forms, and short trainings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bigramlab.comparison.figures import HeatmapFrames
from bigramlab.counting.bigrams import bigram_counts
from bigramlab.data.corpora import TextFile
from bigramlab.data.vocab import Vocab, bigram_pairs, split_words
from bigramlab.errors import UserError
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.losses import nll_sum_counts, nll_sum_index, nll_sum_onehot, penalty
from bigramlab.train import train
from bigramlab.training.comparison import counted_heatmap_png
from tests.conftest import bigram_net, lecture_pairs, train_and_load
from tests.helpers import scalars


def test_initial_W_is_the_lectures_and_logits_are_one_hot_matmul() -> None:
    net = bigram_net(".abcdefghijklmnopqrstuvwxyz")
    g = torch.Generator().manual_seed(2147483647)
    assert torch.equal(net.W.data, torch.randn((27, 27), generator=g))
    x = torch.tensor([0, 5, 26])
    assert torch.allclose(net.logits(x), F.one_hot(x, 27).float() @ net.W)
    assert torch.equal(net.logits(torch.arange(27)), net.W)  # the data's contexts: W itself


@settings(max_examples=50, deadline=None)
@given(
    V=st.integers(2, 30),
    n=st.integers(1, 400),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 3.0),
)
def test_three_impls_give_the_same_loss_and_gradient(V: int, n: int, seed: int, scale: float):
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.randint(V, (n,), generator=g), torch.randint(V, (n,), generator=g)
    W0 = torch.randn((V, V), generator=g) * scale
    results = []
    for loss_of in (
        lambda W: nll_sum_onehot(W, xs, ys) / n,
        lambda W: nll_sum_index(W, xs, ys) / n,
        lambda W: nll_sum_counts(W, bigram_counts(xs, ys, V)) / n,
    ):
        W = W0.clone().requires_grad_(True)
        loss = loss_of(W)
        loss.backward()
        results.append((loss.detach(), W.grad))
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    C=st.integers(1, 60), V=st.integers(1, 9), density=st.floats(0.0, 1.0), seed=st.integers(0, 999)
)
def test_sparse_counts_nll_is_autograds_loss_and_gradient_bit_for_bit(C, V, density, seed):
    """nll_sum_counts on sparse counts (SeenNLL, its own backward) gives the loss and the
    gradient that autograd gives for −Σ n · (W[r, t] − logsumexp_j W[r, j]), exactly."""
    generator = torch.Generator().manual_seed(seed)
    seen = torch.rand(C, V, generator=generator) < density
    counts = (seen * torch.randint(1, 40, (C, V), generator=generator)).to_sparse()
    W = (3 * torch.randn(C, V, generator=generator)).requires_grad_()
    upstream = float(torch.rand((), generator=generator)) + 0.5
    loss = nll_sum_counts(W, counts)
    (grad,) = torch.autograd.grad(loss * upstream, W)
    rows, tokens = counts.indices()
    n = counts.values().float()
    expected = -(n * (W[rows, tokens] - W.logsumexp(dim=1)[rows])).sum()
    (expected_grad,) = torch.autograd.grad(expected * upstream, W)
    assert torch.equal(loss, expected)
    assert torch.equal(grad, expected_grad)


@settings(max_examples=40, deadline=None)
@given(
    R=st.integers(1, 30),
    V=st.integers(1, 12),
    zero_rows=st.integers(0, 3),
    scaled=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_penalty_is_reg_times_the_scaled_sum_of_squares_and_its_gradient(
    R: int, V: int, zero_rows: int, scaled: bool, seed: int
) -> None:
    """penalty = reg · Σ_r s_r Σ_j W[r, j]² / V² (the lecture's reg · mean(W²) for a V × V W),
    gradient 2 · reg · s_r · W[r] / V², rows of zeros included (W starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn((R, V), generator=g)
    W[:zero_rows] = 0
    W.requires_grad_(True)
    scale = torch.rand(R, generator=g) * 3 if scaled else None
    s = scale.double() if scaled else torch.ones(R, dtype=torch.float64)
    reg = 0.37
    value = penalty(W, reg, scale)
    value.backward()
    W64 = W.detach().double()
    # Compared in float32, W's precision.
    torch.testing.assert_close(value, (reg * (s[:, None] * W64**2).sum() / V**2).float())
    torch.testing.assert_close(W.grad, (2 * reg * s[:, None] * W64 / V**2).float())
    if not scaled and R == V:
        torch.testing.assert_close(value, reg * (W.detach() ** 2).mean())


def lecture_losses(words: list[str], steps: int, reg: float, lr: float) -> list[float]:
    """The reference loop from the makemore lecture, verbatim but for V and the step count."""
    xs, ys = lecture_pairs(words)
    xs, ys = torch.tensor(xs), torch.tensor(ys)
    num, V = xs.nelement(), len(set("".join(words))) + 1
    g = torch.Generator().manual_seed(2147483647)
    W = torch.randn((V, V), generator=g, requires_grad=True)
    losses = []
    for _ in range(steps):
        xenc = F.one_hot(xs, num_classes=V).float()
        logits = xenc @ W
        counts = logits.exp()
        probs = counts / counts.sum(1, keepdims=True)
        loss = -probs[torch.arange(num), ys].log().mean() + reg * (W**2).mean()
        losses.append(loss.item())
        W.grad = None
        loss.backward()
        W.data += -lr * W.grad
    return losses


@pytest.mark.parametrize("loss_form", ["counts", "index", "onehot"])
def test_pipeline_reproduces_the_lecture_loop(
    train_config, words_file: Path, loss_form: str
) -> None:
    steps = 30
    reference = lecture_losses(words_file.read_text().split(), steps, reg=0.01, lr=50)
    cfg = train_config(
        "data.split=[1.0,0.0,0.0]",
        "model.reg=0.01",
        "optim.lr=50",
        f"model.loss_form={loss_form}",
        f"trainer.max_steps={steps}",
    )
    train(cfg)
    logged = scalars(Path(cfg.paths.output_dir), "loss/total")
    assert sorted(logged) == list(range(steps))
    for step in (0, 9, steps - 1):
        assert logged[step] == pytest.approx(reference[step], abs=1e-4)


def test_short_training_lowers_the_loss_and_writes_the_run(train_config) -> None:
    cfg = train_config("trainer.max_steps=25")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    losses = scalars(run, "loss/total")
    assert losses[24] < losses[0] - 0.5
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == pytest.approx(metrics) and saved["steps"] == 25
    for key in (
        "train_nll",
        "val_nll",
        "test_nll",
        "counted_train_nll",
        "counted_val_nll",
        "counted_test_nll",
    ):
        assert isinstance(saved[key], float)
    # Validation points at 0 (start), every 10 steps, and the end, at the number of updates done.
    assert sorted(scalars(run, "nll/val")) == [0, 10, 20, 25]
    assert sorted(scalars(run, "counted/nll_val")) == [0, 10, 20, 25]
    assert scalars(run, "nll/train")[25] == pytest.approx(saved["train_nll"], rel=1e-6)
    # One checkpoint, also for a run shorter than the checkpoint interval (100 steps).
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]
    trained = load_checkpoint(run / "checkpoints" / "last.ckpt").model
    W, itos = trained.W, trained.itos
    vocab = Vocab(itos)
    assert W.shape == (len(vocab), len(vocab))
    # The checkpoint holds the final W: its train NLL is the one in metrics.json.
    words = TextFile(cfg.dataset.path).load()
    train_words = split_words(words, cfg.data.split, cfg.data.split_seed)[0]
    counts = bigram_counts(*bigram_pairs(train_words, vocab), len(vocab))
    train_nll = nll_sum_counts(W.double(), counts.double()) / counts.sum()
    assert float(train_nll) == pytest.approx(saved["train_nll"])


def test_mini_batches_train_and_are_reproducible(train_config) -> None:
    first = train(train_config("data.batch_size=32", "trainer.max_steps=15"))
    again = train(train_config("data.batch_size=32", "trainer.max_steps=15"))
    assert first == again
    assert first["train_nll"] < 3.0


def test_alpha_zero_with_an_unseen_held_out_bigram_reports_inf(train_config, tmp_path) -> None:
    path = tmp_path / "rare.txt"
    # 'q' appears once; the seeded split puts it in val, so train never sees its bigrams.
    words = ["ab", "ba"] * 20 + ["aq"]
    path.write_text("\n".join(words) + "\n")
    assert "aq" in split_words(words, [0.5, 0.5, 0.0], seed=42)[1]
    metrics = train(
        train_config(f"dataset.path={path}", "counted.alpha=0", "data.split=[0.5,0.5,0.0]")
    )
    assert metrics["test_nll"] is None and metrics["counted_test_nll"] is None
    mle = [metrics["counted_train_nll"], metrics["counted_val_nll"]]
    assert all(v is not None for v in mle) and float("inf") in mle


class RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_checkpoints_that_would_run_code_or_are_not_checkpoints_are_refused(tmp_path: Path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"W": torch.zeros(2, 2)}, "payload": RunsCode()}, evil)
    with pytest.raises(UserError, match="refusing to load .*could run code"):
        load_checkpoint(evil)
    text = tmp_path / "text.ckpt"
    text.write_text("hello")
    with pytest.raises(UserError, match="is not a PyTorch checkpoint file"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(UserError, match="not a bigramlab checkpoint"):
        load_checkpoint(other)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.parametrize("old", ["", "lm."])
def test_a_checkpoint_of_the_old_format_loads_and_resumes(
    train_config, tmp_path: Path, old: str
) -> None:
    """Checkpoints written before the net had its name call its weights W and row_keys, or
    lm.W and lm.row_keys: they load as the same model, and training resumes."""
    cfg = train_config("model.context=2", "trainer.max_steps=10")
    _, W = train_and_load(cfg, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    state = saved["state_dict"]
    state[f"{old}W"], state[f"{old}row_keys"] = state.pop("net.W"), state.pop("net.row_keys")
    torch.save(saved, ckpt)
    old = load_checkpoint(ckpt)
    assert torch.equal(old.model.W, W) and old.global_step == 10 and old.resumable
    resumed = train_config("model.context=2", "trainer.max_steps=15", f"ckpt_path={ckpt}")
    metrics, _ = train_and_load(resumed, tmp_path / "run")
    assert metrics["steps"] == 15 and metrics["status"] == "ok"


HOST_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


def host_reads(train_config, monkeypatch: pytest.MonkeyPatch, steps: int, *overrides: str) -> int:
    """Tensor values read back to the host (`.item()`, `float(t)`, `if t:` ...) in a whole run: on
    a GPU each is a sync that waits for the device."""
    count = 0

    def counting(name: str):
        method = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            nonlocal count
            count += 1
            return method(self, *args, **kwargs)

        return read

    cfg = train_config(
        f"trainer.max_steps={steps}",
        # Nothing periodic within the run: validation, logging and checkpoints only at the ends.
        "trainer.val_check_interval=100000",
        "trainer.log_every_n_steps=100000",
        "callbacks.checkpoint.every_n_train_steps=100000",
        "callbacks.report.n_samples=0",  # sampled words' lengths depend on W
        "callbacks.progress_bar.refresh_rate=100000",
        *overrides,
    )
    # Figures kept from an earlier run of this process are one-off work: each run draws its own.
    HeatmapFrames.of.cache_clear()
    counted_heatmap_png.cache_clear()
    with monkeypatch.context() as patched:
        for name in HOST_READS:
            patched.setattr(torch.Tensor, name, counting(name))
        train(cfg)
    return count


@pytest.mark.parametrize(
    "overrides",
    # ~1300 train pairs in batches of 8: 80 steps stay within the first epoch (a new epoch's shuffle
    # and the progress bar's end of epoch read a few values, once an epoch).
    [pytest.param([], id="full-batch"), pytest.param(["data.batch_size=8"], id="mini-batch")],
)
def test_training_steps_read_nothing_back_from_the_device(
    train_config, monkeypatch: pytest.MonkeyPatch, overrides: list[str]
) -> None:
    host_reads(train_config, monkeypatch, 5, *overrides)  # one-off work of a first run
    short = host_reads(train_config, monkeypatch, 20, *overrides)
    long = host_reads(train_config, monkeypatch, 80, *overrides)
    # Sixty more steps, not one more read: the losses wait on the device until a log step.
    assert long == short


def test_progress_bar_shows_the_loss_and_no_bar_per_validation(train_config, capfd) -> None:
    train(train_config("callbacks.progress_bar.refresh_rate=5"))
    shown = capfd.readouterr().out  # Lightning's bars write to stdout
    assert "Epoch 0: 100%" in shown and "loss=" in shown
    assert "Validation" not in shown and "Sanity Checking" not in shown
