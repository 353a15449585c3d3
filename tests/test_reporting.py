"""The MLE-versus-learned comparison as TensorBoard holds it: read back from the event files and
checked against an independent recomputation from the checkpoint and the data."""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from bigramlab.data.corpora import TextFile
from bigramlab.data.vocab import split_words
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.counted import mle_probs
from bigramlab.models.lm import LanguageModel
from bigramlab.models.nll import mean_nll
from bigramlab.models.sampling import sample_words
from bigramlab.train import train
from bigramlab.training.comparison import (
    ComparisonReport,
    custom_scalars_layout,
    markdown_samples,
    snapshot_steps,
)
from bigramlab.training.datamodule import NgramDataModule
from tests.conftest import bigram_module, compose_config, make_words
from tests.helpers import events

STEPS, EVERY = 30, 10
SCALARS = [
    *(f"nll/{s}" for s in ("train", "val", "test")),
    *(f"counted/nll_{s}" for s in ("train", "val", "test")),
    "ppl/val",
    "counted/ppl_val",
    "compare/gap_val",
    "compare/kl_train",
    "compare/tv_train",
    "compare/max_abs_diff",
    "hp/val_nll",
    "hp/counted_val_nll",
    "hp/gap_val",
    "hp/train_nll",
    "loss/total",
    "loss/nll",
    "loss/reg",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict]:
    tmp_path = tmp_path_factory.mktemp("report")
    words = make_words(400, seed=5)
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    overrides = [
        "dataset=text_file",
        f"dataset.path={path}",
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={EVERY}",
        "callbacks.report.figures_every_n_steps=20",
        "callbacks.progress_bar.refresh_rate=0",
        "counted.alpha=0.5",
        "model.reg=0.001",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    train(cfg)
    return Path(cfg.paths.output_dir), words, cfg


def scalar(acc: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def independent_counts(words: list[str], itos: str) -> dict[tuple[int, int], int]:
    stoi = {ch: i for i, ch in enumerate(itos)}
    pairs = Counter()
    for w in words:
        chs = [".", *w, "."]
        for a, b in zip(chs, chs[1:]):
            pairs[stoi[a], stoi[b]] += 1
    return pairs


def mle_table(counts: dict[tuple[int, int], int], V: int, alpha: float) -> list[list[float]]:
    rows = [[alpha] * V for _ in range(V)]
    for (i, j), n in counts.items():
        rows[i][j] += n
    return [[v / sum(row) if sum(row) else 0.0 for v in row] for row in rows]


def dict_nll(probs, counts: dict[tuple[int, int], int]) -> float:
    return -sum(n * math.log(probs[i][j]) for (i, j), n in counts.items()) / sum(counts.values())


def test_every_tag_is_there_and_nothing_stray(run) -> None:
    run_dir, _, _ = run
    acc = events(run_dir)
    tags = acc.Tags()
    assert set(SCALARS) <= set(tags["scalars"]) and "hp_metric" not in tags["scalars"]
    assert set(tags["images"]) == {f"compare/heatmap_{k}" for k in ("counted", "learned", "diff")}
    assert set(tags["histograms"]) == {"weights/W", "entropy/learned", "entropy/counted"}
    assert "samples" in tags["tensors"] and "custom_scalars__config__" in tags["tensors"]
    validations = [0, 10, 20, 30]
    for tag in SCALARS:
        if not tag.startswith("loss/"):
            assert sorted(scalar(acc, tag)) == validations, tag
    assert sorted(scalar(acc, "loss/total")) == list(range(STEPS))
    assert [e.step for e in acc.Images("compare/heatmap_learned")] == [0, 20, 30]
    assert [e.step for e in acc.Images("compare/heatmap_counted")] == [0]


def test_metrics_json_holds_the_comparison_of_the_last_step(run) -> None:
    run_dir, _, _ = run
    acc = events(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("gap_val", "kl_train", "tv_train", "max_abs_diff"):
        assert metrics[key] == pytest.approx(scalar(acc, f"compare/{key}")[STEPS], abs=1e-6), key
    for split in ("train", "val", "test"):
        assert metrics[f"{split}_nll"] == pytest.approx(
            scalar(acc, f"nll/{split}")[STEPS], abs=1e-6
        )


def test_logged_values_match_an_independent_recomputation(run) -> None:
    run_dir, words, _ = run
    acc = events(run_dir)
    trained = load_checkpoint(run_dir / "checkpoints" / "last.ckpt").model
    W, itos = trained.W, trained.itos
    V = len(itos)
    splits = dict(zip(("train", "val", "test"), split_words(words, [0.8, 0.1, 0.1], 42)))
    counts = {s: independent_counts(ws, itos) for s, ws in splits.items()}
    P_W = W.double().softmax(1).tolist()
    mle = mle_table(counts["train"], V, alpha=0.5)
    mle0 = mle_table(counts["train"], V, alpha=0.0)
    final = {tag: scalar(acc, tag)[STEPS] for tag in SCALARS if not tag.startswith("loss/")}
    for s in ("train", "val", "test"):
        assert final[f"nll/{s}"] == pytest.approx(dict_nll(P_W, counts[s]), abs=1e-5)
        assert final[f"counted/nll_{s}"] == pytest.approx(dict_nll(mle, counts[s]), abs=1e-6)
    assert final["ppl/val"] == pytest.approx(math.exp(final["nll/val"]), rel=1e-6)
    # TensorBoard stores float32: the gap agrees with the difference of the stored values to 1e-6.
    gap = final["nll/val"] - final["counted/nll_val"]
    assert final["compare/gap_val"] == pytest.approx(gap, abs=1e-6)
    total = sum(counts["train"].values())
    row_weight = [
        sum(n for (i, _), n in counts["train"].items() if i == r) / total for r in range(V)
    ]
    tv = sum(
        row_weight[i] * 0.5 * sum(abs(mle[i][j] - P_W[i][j]) for j in range(V)) for i in range(V)
    )
    assert final["compare/tv_train"] == pytest.approx(tv, abs=1e-6)
    max_diff = max(abs(mle[i][j] - P_W[i][j]) for i in range(V) for j in range(V))
    assert final["compare/max_abs_diff"] == pytest.approx(max_diff, abs=1e-6)
    # The identity, at every logged step: excess train NLL over the exact MLE = weighted KL >= 0.
    mle0_train_nll = dict_nll(mle0, counts["train"])
    kl, train_nll = scalar(acc, "compare/kl_train"), scalar(acc, "nll/train")
    for step in kl:
        assert kl[step] == pytest.approx(train_nll[step] - mle0_train_nll, abs=1e-5)
        assert kl[step] >= 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert final["hp/val_nll"] == pytest.approx(metrics["val_nll"], abs=1e-5)
    assert final["hp/counted_val_nll"] == pytest.approx(metrics["counted_val_nll"], abs=1e-6)


def test_images_are_png_and_figures_are_saved(run) -> None:
    run_dir, words, _ = run
    V = len(set("".join(words))) + 1
    for event in events(run_dir).Images("compare/heatmap_diff"):
        assert event.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
        assert Image.open(io.BytesIO(event.encoded_image_string)).size[0] > 20 * V
    names = {p.name for p in (run_dir / "figures").iterdir()}
    assert names == {f"{n}.png" for n in ("heatmap_counted", "heatmap_learned", "heatmap_diff")} | {
        "nll_curves.png"
    }
    for path in (run_dir / "figures").iterdir():
        Image.open(path).verify()


def test_by_default_snapshots_are_log_spaced_and_scalars_at_every_validation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "words.txt"
    path.write_text("\n".join(make_words(50, seed=6)) + "\n")
    overrides = [
        "dataset=text_file",
        f"dataset.path={path}",
        "trainer.max_steps=100",
        "trainer.val_check_interval=5",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    train(cfg)
    acc = events(Path(cfg.paths.output_dir))
    assert [e.step for e in acc.Images("compare/heatmap_counted")] == [0]
    # 0, the validations nearest 100/16 and 100/4, and the end.
    for name in ("learned", "diff"):
        assert [e.step for e in acc.Images(f"compare/heatmap_{name}")] == [0, 5, 25, 100]
    assert [t.step for t in acc.Tensors("samples")] == [0, 5, 25, 100]
    assert sorted(scalar(acc, "compare/kl_train")) == list(range(0, 101, 5))
    # The slider's frames share one frame and colour scale (the colour bar, at the right edge,
    # is the same picture) and their cells change; the last difference has a scale of its own.
    for name in ("learned", "diff"):
        images = [
            np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB"), dtype=int)
            for e in acc.Images(f"compare/heatmap_{name}")
        ]
        bars = [image[:, -90:] for image in images]
        assert all(np.array_equal(bars[0], bar) for bar in bars[1:3])
        assert np.array_equal(bars[0], bars[3]) == (name == "learned")
        assert (np.abs(images[0] - images[2]).max(axis=2) > 0).mean() > 0.05


def test_hparams_session_carries_the_config_and_final_metrics(run) -> None:
    run_dir, _, _ = run
    acc = events(run_dir)
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert metric_tags == {"hp/val_nll", "hp/counted_val_nll", "hp/gap_val", "hp/train_nll"}
    session = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in session.hparams.items()}
    assert values["lr"] == 50 and values["reg"] == 0.001 and values["alpha"] == 0.5
    assert values["dataset"] == "text_file" and values["loss_form"] == "counts"
    assert values["steps"] == STEPS and values["batch_size"] == "null" and values["seed"] == 0
    assert set(scalar(acc, "hp/train_nll")) == {0, 10, 20, 30}


def test_samples_table_and_layout() -> None:
    table = markdown_samples(["ab", ""], ["ab", "c"])
    assert table.splitlines()[2:] == ["| 1 | `ab` | `ab` |", "| 2 | `(empty)` | `c` |"]
    charts = custom_scalars_layout()["bigramlab"]
    assert charts["NLL val: learned vs MLE"] == ["Multiline", ["^nll/val$", "^counted/nll_val$"]]


def test_samples_logged_at_each_snapshot_use_one_seed_for_both_models(run) -> None:
    run_dir, words, cfg = run
    acc = events(run_dir)
    texts = acc.Tensors("samples")
    assert [t.step for t in texts] == [0, 20, 30]  # figures_every_n_steps=20
    rows = texts[-1].tensor_proto.string_val[0].decode().splitlines()[2:]
    counted_words = [row.split("`")[1] for row in rows]
    learned_words = [row.split("`")[3] for row in rows]
    # Redrawn here from both final models, each with a generator seeded with the run's seed.
    trained = load_checkpoint(run_dir / "checkpoints" / "last.ckpt").model
    train_words = split_words(words, cfg.data.split, cfg.data.split_seed)[0]
    V = len(trained.itos)
    mle = torch.tensor(mle_table(independent_counts(train_words, trained.itos), V, 0.5))
    for probs, shown in ((mle, counted_words), (trained.W.double().softmax(dim=1), learned_words)):
        generator = torch.Generator().manual_seed(cfg.seed)
        drawn = sample_words(BigramTable(probs, trained.itos), 10, generator, max_length=40)
        assert [w or "(empty)" for w in drawn] == shown


class BigramTable(LanguageModel):
    """A bigram model given as its table P (V, V): the previous token is the context."""

    context = 1

    def __init__(self, probs: torch.Tensor, itos: str) -> None:
        self.probs, self.itos = probs, itos

    def log_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        return self.probs[contexts].log()

    def describe(self) -> str:
        return "a bigram table"


def test_report_and_batches_keep_host_and_device_tensors_apart(words_file: Path) -> None:
    """Set-up mixes no host tensor (the data module's counts) with one on the model's device. On
    the meta device any such mix raises, as it does between a GPU and the host."""
    meta = torch.device("meta")
    dm = NgramDataModule(TextFile(str(words_file)))
    dm.setup()
    dm.trainer = SimpleNamespace(
        global_rank=0, world_size=1, strategy=SimpleNamespace(root_device=meta)
    )
    assert next(iter(dm.train_dataloader())).counts.device == meta  # moved once, not every step
    trainer = SimpleNamespace(
        datamodule=dm,
        is_global_zero=False,
        loggers=[],
        global_step=0,
        max_steps=30,
        val_check_interval=10,
    )
    model = bigram_module(dm.vocab.itos)
    model._trainer = trainer  # as Lightning's fit does: configure_model, then to the device
    model.configure_model()
    model.to(meta)
    assert model.contexts.device == meta
    report = ComparisonReport(alpha=1.0)
    report.on_fit_start(trainer, model)
    assert report.snapshots.mle.device == meta  # moved once
    assert report.train_counts["train"].device == meta
    assert all(counts.device.type == "cpu" for counts in report.counts.values())
    expected = mean_nll(mle_probs(dm.counts["train"], 1.0).log(), dm.counts["val"])
    assert report.counted.nll["val"] == pytest.approx(expected)


def test_snapshot_steps() -> None:
    assert snapshot_steps(1000, 50, "log") == {0, 50, 250, 1000}  # 1000/16, 1000/4: nearest 50s
    assert snapshot_steps(20, 10, "log") == {0, 10, 20}
    assert snapshot_steps(100, 10, 30) == {0, 30, 60, 90, 100}
    assert snapshot_steps(100, 10, 0) == {100}
    assert snapshot_steps(100, 10, None) is None  # every validation
