"""Every config file composes, resolves, and instantiates what it names; bad values are refused."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bigramlab.errors import UserError
from bigramlab.plumbing.config import checkpoint_path, hyperparameters, validate_train
from bigramlab.train import cpu_threads
from tests.conftest import CONFIG_DIR, bigram_net, compose_config

GROUPS = ["dataset", "data", "model", "optim", "trainer", "logger", "callbacks", "paths"]
OPTIONS = [
    (group, option.stem)
    for group in [*GROUPS, "experiment"]
    for option in sorted((CONFIG_DIR / group).glob("*.yaml"))
]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_resolves(group: str, option: str, tmp_path: Path):
    overrides = [f"{group}={option}"]
    if option == "text_file":
        overrides.append("dataset.path=words.txt")
    cfg = compose_config("train", overrides, tmp_path)
    job_config = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    OmegaConf.to_container(job_config, resolve=True, throw_on_missing=True)
    assert cfg.trainer.max_steps >= 1 and cfg.optim.lr > 0
    validate_train(cfg)


def test_train_config_holds_the_documented_keys_and_defaults(tmp_path: Path) -> None:
    cfg = compose_config("train", [], tmp_path)
    assert cfg.optim.lr == 50 and cfg.model.reg == 0.01 and cfg.model.init_seed == 2147483647
    assert cfg.counted.alpha == 1.0 and list(cfg.data.split) == [0.8, 0.1, 0.1]
    assert cfg.data.batch_size is None and cfg.trainer.max_steps == 1000
    assert cfg.trainer.accelerator == "auto" and cfg.model.loss_form == "counts"
    assert cfg.dataset._target_ == "bigramlab.data.corpora.EnglishWords"


def test_group_targets_instantiate(tmp_path: Path) -> None:
    cfg = compose_config("train", [], tmp_path)
    for option in sorted((CONFIG_DIR / "optim").glob("*.yaml")):
        optim_cfg = compose_config("train", [f"optim={option.stem}"], tmp_path).optim
        model = instantiate(
            cfg.model.module, net=bigram_net(".ab"), optimizer=instantiate(optim_cfg)
        )
        assert model.configure_optimizers().defaults["lr"] == optim_cfg.lr
    for option in sorted((CONFIG_DIR / "dataset").glob("*.yaml")):
        dataset_cfg = compose_config("train", [f"dataset={option.stem}"], tmp_path).dataset
        if OmegaConf.missing_keys(dataset_cfg):
            continue
        assert callable(instantiate(dataset_cfg).load)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    trainer = instantiate(cfg.trainer, logger=instantiate(cfg.logger), callbacks=callbacks)
    assert trainer.max_steps == 1000


def test_experiment_makemore_is_a_short_diff(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=makemore"], tmp_path)
    assert cfg.dataset._target_ == "bigramlab.data.corpora.Names"
    assert list(cfg.data.split) == [1.0, 0.0, 0.0]
    assert (cfg.model.reg, cfg.optim.lr, cfg.trainer.max_steps) == (0.01, 50, 1000)


@pytest.mark.parametrize("name", ["sample", "evaluate"])
def test_sample_and_evaluate_configs_compose(name: str, tmp_path: Path) -> None:
    cfg = compose_config(name, ["ckpt=x.ckpt"], tmp_path)
    assert cfg.ckpt == "x.ckpt" and cfg.seed == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lr=0"], "optim.lr=0 is out of range"),
        (["optim.lr=abc"], "optim.lr='abc' is not a number"),
        (["model.reg=-1"], "model.reg=-1 is out of range"),
        (["counted.alpha=-0.5"], "counted.alpha=-0.5 is out of range"),
        (["trainer.max_steps=0"], "trainer.max_steps=0 is not a whole number >= 1"),
        (["trainer.num_nodes=0"], "trainer.num_nodes=0 is not a whole number >= 1"),
        (["data.batch_size=0"], "data.batch_size=0 is not a whole number >= 1"),
        (["data.split=[0.8,0.1]"], "must be three fractions"),
        (["data.split=[0.8,0.3,-0.1]"], "must be fractions in [0, 1] that sum to 1"),
        (["data.split=[0.0,0.5,0.5]"], "leaves nothing to train on"),
        (["model.loss_form=fast"], "model.loss_form='fast' is unknown"),
        (
            ["callbacks.report.figures_every_n_steps=-5"],
            "callbacks.report.figures_every_n_steps=-5 is not a whole number >= 0",
        ),
        (["dataset=text_file"], "dataset.path is required"),
    ],
)
def test_bad_values_are_refused_before_any_work(overrides, message, tmp_path: Path) -> None:
    cfg = compose_config("train", overrides, tmp_path)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_train(cfg)


@pytest.mark.parametrize(
    "override", ["hparams_search=optuna", "hydra/launcher=slurm", "hydra/launcher=joblib"]
)
def test_sweep_configs_compose(override: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [override], tmp_path)
    if override.startswith("hparams_search"):
        assert cfg.hydra.sweeper.sampler.seed == 1234
        assert cfg.hydra.sweeper.params["optim.lr"] == "tag(log, interval(1, 100))"
    elif override.endswith("slurm"):
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
        assert cfg.hydra.launcher.timeout_min == 30
    else:
        assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
        assert cfg.hydra.launcher.n_jobs == -1  # every core


def test_reg_vs_smoothing_pairs_reg_with_alpha(tmp_path: Path) -> None:
    cfg = compose_config(
        "train", ["experiment=reg_vs_smoothing", "pair={reg:0.3,alpha:30}"], tmp_path
    )
    assert (cfg.model.reg, cfg.counted.alpha) == (0.3, 30)
    assert cfg.dataset._target_ == "bigramlab.data.corpora.Names"
    assert cfg.hydra.mode.name == "MULTIRUN"


@pytest.mark.parametrize("name", ["sample", "evaluate"])
def test_a_missing_checkpoint_says_how_to_give_one(name: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no checkpoint given: add ckpt=<run dir>/checkpoints"):
        checkpoint_path(compose_config(name, [], tmp_path))
    given = compose_config(name, ["ckpt=runs/x/checkpoints/last.ckpt"], tmp_path)
    assert checkpoint_path(given) == "runs/x/checkpoints/last.ckpt"


def test_the_hyperparameters_of_a_run_recorded_before_renames_are_read() -> None:
    """A run recorded with mle.alpha, mle.smoothing and model.impl reports them under their new
    names (the sweep report reads old sweeps)."""
    old = OmegaConf.create(
        {"mle": {"alpha": 0.3, "smoothing": "kneser_ney"}, "model": {"impl": "index"}}
    )
    values = hyperparameters(old, {})
    assert (values["alpha"], values["smoothing"], values["loss_form"]) == (
        0.3,
        "kneser_ney",
        "index",
    )
    new = OmegaConf.create({"counted": {"alpha": 0.5}, "mle": {"alpha": 9.0}})
    assert hyperparameters(new, {})["alpha"] == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.max_span=1"], "model.max_span=1 is not used by model.features=onehot"),
        (["model.reg_by_length=[1,2]"], "model.reg_by_length=[1, 2] is not used by model.features"),
        (
            ["model.features=interpolated", "model.reg_skip=2"],
            "model.reg_skip=2 is not used by model.features=interpolated (it has no skip rows): "
            "remove it, or use model.features=skipgram",
        ),
        (
            ["model.features=skipgram+start", "model.reg_position=0.5"],
            "use model.features=skipgram+position",
        ),
        (["model.reg_classes=2"], "use model.features=interpolated+classes"),
        (["optim=lbfgs", "optim.max_iter=0"], "optim.max_iter=0 is not a whole number >= 1"),
        (
            ["dataset=text_file", "dataset.path=w.txt", "dataset.lowercase=maybe"],
            "dataset.lowercase='maybe' is not a boolean",
        ),
    ],
)
def test_settings_that_would_do_nothing_are_refused(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = compose_config("train", overrides, tmp_path)
    with pytest.raises(UserError, match=re.escape(message)):
        validate_train(cfg)


def test_threads_are_the_cores_this_process_may_use_shared_by_the_runs_processes(
    tmp_path: Path,
) -> None:
    cores = len(os.sched_getaffinity(0))
    assert cpu_threads(compose_config("train", [], tmp_path)) == cores
    assert cpu_threads(compose_config("train", ["trainer=ddp_cpu"], tmp_path)) == max(1, cores // 2)
    assert cpu_threads(compose_config("train", ["threads=3"], tmp_path)) == 3
    with pytest.raises(UserError, match="threads=0 is not a whole number >= 1"):
        cpu_threads(compose_config("train", ["threads=0"], tmp_path))
