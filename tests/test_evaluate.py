"""evaluate's splits: the corpus counted in pieces gives each split's NLL as its words do."""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import bigramlab
from bigramlab.counting.bigrams import bigram_counts
from bigramlab.data.corpora import TextFile
from bigramlab.data.vocab import Vocab, bigram_pairs, split_words
from bigramlab.errors import UserError
from bigramlab.evaluate import evaluate, split_rows
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.counted import mle_probs
from bigramlab.models.learned import LearnedLM
from bigramlab.models.nll import mean_nll
from bigramlab.plumbing.config import recorded_run_settings
from tests.conftest import compose_config, make_words, train_and_load

SPLIT = [0.7, 0.2, 0.1]


@pytest.mark.parametrize("accent", ["", "é"], ids=["ascii", "decoded"])
def test_split_rows_equal_those_of_the_split_words(tmp_path: Path, accent: str) -> None:
    words = [w + accent for w in make_words(300, seed=2)]
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    # The checkpoint's vocabulary may hold more characters than the data, in another order.
    vocab = Vocab("." + "".join(sorted(set("".join(words)) | set("xyz"), reverse=True)))
    V = len(vocab.itos)
    g = torch.Generator().manual_seed(0)
    log_probs = torch.randn(V, V, generator=g, dtype=torch.float64).log_softmax(dim=1)
    model = LearnedLM(vocab.itos, 1, "onehot", torch.arange(V), log_probs)
    rows = split_rows(model, TextFile(str(path)), SPLIT, 5, alpha=0.5)
    assert [row[0] for row in rows] == ["train", "val", "test"]
    parts = split_words(words, SPLIT, 5)
    # The counted model of training: over the data's own vocabulary, fitted on train.
    data_vocab = Vocab.from_words(words)
    P = mle_probs(bigram_counts(*bigram_pairs(parts[0], data_vocab), len(data_vocab)), 0.5)
    for (_, n_words, n_bigrams, value, counted, rowless), part in zip(rows, parts):
        counts = bigram_counts(*bigram_pairs(part, vocab), V)
        assert (n_words, n_bigrams) == (len(part), int(counts.sum()))
        assert value == pytest.approx(mean_nll(log_probs, counts), rel=1e-12)
        own = bigram_counts(*bigram_pairs(part, data_vocab), len(data_vocab))
        assert counted == pytest.approx(mean_nll(P.log(), own), rel=1e-12)
        assert rowless == 0


def test_the_unsmoothed_counted_model_calls_unseen_bigrams_impossible(tmp_path: Path) -> None:
    # One-letter words: each word's bigrams (.a, a.) are its own, so val and test have bigrams
    # train never saw.
    path = tmp_path / "words.txt"
    path.write_text("\n".join("abcdefghij") + "\n")
    model = LearnedLM(".abcdefghij", 1, "onehot", torch.arange(11), torch.zeros(11, 11))
    rows = split_rows(model, TextFile(str(path)), [0.6, 0.2, 0.2], 0, alpha=0.0)
    counted = {row.split: row.counted_nll for row in rows}
    assert math.isfinite(counted["train"]) and math.isinf(counted["val"])


def test_a_character_the_checkpoint_lacks_is_named(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("abc\nabd\n")
    with pytest.raises(UserError, match=r"character 'd' \(in .*words.txt\) is not in the vocab"):
        model = LearnedLM(".abc", 1, "onehot", torch.arange(4), torch.zeros(4, 4))
        split_rows(model, TextFile(str(path)), SPLIT, 0)


def trained_run(train_config, tmp_path: Path, *overrides: str) -> Path:
    """A 20-step run of the small words file (conftest) with `overrides`: its checkpoint."""
    cfg = train_config(*overrides)
    train_and_load(cfg, tmp_path / "run")
    return tmp_path / "run" / "checkpoints" / "last.ckpt"


def evaluate_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    capsys.readouterr()
    evaluate(compose_config("evaluate", list(overrides), tmp_path))
    return capsys.readouterr().out


def test_a_checkpoint_records_the_data_settings_of_its_run(
    train_config, tmp_path: Path, words_file: Path
) -> None:
    ckpt = trained_run(train_config, tmp_path, "data.split_rule=lecture", "data.split_seed=7")
    settings = load_checkpoint(ckpt).run_settings
    assert settings is not None
    assert settings["dataset"] == "text_file"
    assert settings["dataset.path"] == str(words_file.absolute())
    assert (settings["data.split_rule"], settings["data.split_seed"]) == ("lecture", 7)
    assert (settings["counted.smoothing"], settings["counted.alpha"]) == ("additive", 1.0)


def test_evaluate_on_other_data_says_every_split_is_held_out(
    train_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = trained_run(train_config, tmp_path, "data.split_rule=lecture")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(make_words(100, seed=9)) + "\n")
    out = evaluate_output(
        tmp_path, capsys, f"ckpt={ckpt}", "dataset=text_file", f"dataset.path={other}"
    )
    assert f"data: dataset=text_file dataset.path={other}: not the run's data" in out
    assert "every split is held-out to this model" in out
    assert "data.split_rule=lecture, as the run's, from the checkpoint" in out


def test_a_checkpoint_without_the_record_takes_its_run_directorys_config(
    train_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints written before the record: the run's .hydra/config.yaml says the split."""
    cfg = train_config("data.split_rule=lecture", "counted.alpha=0.5")
    train_and_load(cfg, tmp_path / "run")
    ckpt_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    del ckpt["run_settings"]
    torch.save(ckpt, ckpt_path)
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    out = evaluate_output(tmp_path, capsys, f"ckpt={ckpt_path}")
    assert "data.split_rule=lecture, from the run's .hydra/config.yaml" in out
    lines = out.splitlines()
    test_row = next(line.split() for line in lines if line.startswith("test "))
    assert float(test_row[3]) == pytest.approx(metrics["test_nll"], abs=1e-6)
    assert float(test_row[5]) == pytest.approx(metrics["counted_test_nll"], abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["words=[]"], "words=[] holds no word"),
        (['words=[emma,""]'], "holds an empty word"),
        (["+model.context=8"], "model.context=8 is not used by evaluate"),
    ],
)
def test_evaluate_refuses_what_it_would_ignore_or_misread(
    train_config, tmp_path: Path, capsys: pytest.CaptureFixture[str], args, message
) -> None:
    ckpt = trained_run(train_config, tmp_path)
    with pytest.raises(UserError, match=re.escape(message)):
        evaluate_output(tmp_path, capsys, f"ckpt={ckpt}", *args)


def test_a_run_trains_with_the_threads_it_is_given_and_records_them(
    train_config, tmp_path: Path
) -> None:
    before = torch.get_num_threads()
    try:
        metrics, _ = train_and_load(train_config("threads=1"), tmp_path / "run")
        assert metrics["threads"] == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_metrics_json_records_bigramlabs_version(train_config, tmp_path: Path) -> None:
    metrics, _ = train_and_load(train_config("trainer.max_steps=2"), tmp_path / "run")
    assert metrics["version"] == bigramlab.__version__
    assert importlib.metadata.version("bigramlab") == bigramlab.__version__


def test_a_runs_relative_data_path_is_read_from_the_directory_it_ran_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint without the record: its run's .hydra/ config names dataset.path as given,
    relative to the directory the run was started in (hydra.yaml's runtime.cwd), not evaluate's."""
    hydra_dir = tmp_path / "run" / ".hydra"
    hydra_dir.mkdir(parents=True)
    run_cfg = {"dataset": {"_target_": "bigramlab.data.corpora.TextFile", "path": "w.txt"}}
    OmegaConf.save(OmegaConf.create(run_cfg), hydra_dir / "config.yaml")
    runtime = {"cwd": str(tmp_path / "where"), "choices": {"dataset": "text_file"}}
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": runtime}}), hydra_dir / "hydra.yaml")
    monkeypatch.chdir(tmp_path)
    settings = recorded_run_settings(tmp_path / "run" / "checkpoints" / "last.ckpt", None)
    assert settings is not None and settings["dataset"] == "text_file"
    assert settings["dataset.path"] == str(tmp_path / "where" / "w.txt")
