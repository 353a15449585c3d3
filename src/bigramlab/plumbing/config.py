"""The configs' own logic: where conf/ is, the resolvers they use, the table of hyperparameters,
and the checks of a composed config that Hydra's types cannot express (run before any data is
read)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from bigramlab.data.batches import check_batches
from bigramlab.data.vocab import SPLIT_RULES, check_split_rule
from bigramlab.errors import UserError
from bigramlab.models.counted import smoothing_setting
from bigramlab.models.features import (
    FAMILIES,
    check_features,
    check_max_span,
    check_reg_by_length,
    parse_features,
)
from bigramlab.models.losses import check_loss_form
from bigramlab.models.smoothing import check_smoothing

# The configs are package data (src/bigramlab/conf, linked from conf/ at the checkout's top), so
# a wheel installed anywhere finds them.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# The hyperparameters of a run, one table: the HParams dashboard's columns, the short names of a
# multirun job's directory, and the sweep report's columns. name -> config key (a config group
# such as `dataset` stands for the option chosen).
HYPERPARAMETERS = {
    "dataset": "dataset",
    "optimizer": "optim",
    "lr": "optim.lr",
    "reg": "model.reg",
    "alpha": "counted.alpha",
    "steps": "trainer.max_steps",
    "batch_size": "data.batch_size",
    "loss_form": "model.loss_form",
    "context": "model.context",
    "features": "model.features",
    "smoothing": "counted.smoothing",
    "seed": "seed",
    "init_seed": "model.init_seed",
    "split_seed": "data.split_seed",
}
GROUPS = ("dataset", "optim")
# Config keys of the table renamed since runs were recorded with them: new -> old.
OLD_KEYS = {
    "counted.alpha": "mle.alpha",
    "counted.smoothing": "mle.smoothing",
    "model.loss_form": "model.impl",
}


def hyperparameters(cfg: DictConfig, choices: dict[str, Any]) -> dict[str, Any]:
    """The table's values in a composed config; `choices`: Hydra's runtime.choices (the option
    chosen in each config group)."""

    def value(key: str) -> Any:
        if key in GROUPS:
            return choices.get(key)
        # A run from before a key was renamed has its value under the old name.
        return OmegaConf.select(cfg, key, default=OmegaConf.select(cfg, OLD_KEYS.get(key, key)))

    return {name: value(key) for name, key in HYPERPARAMETERS.items()}


def _number(cfg: DictConfig, key: str, ok: Callable[[float], bool], need: str) -> None:
    value: Any = OmegaConf.select(cfg, key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{key}={value!r} is not a number: set {key} to {need}") from None
    if not (math.isfinite(number) and ok(number)):
        raise UserError(f"{key}={value} is out of range: set {key} to {need}")


def whole_number(cfg: DictConfig, key: str, minimum: int, example: str) -> None:
    """Raise UserError unless `key` of `cfg` is an int >= minimum; `example` shows a good value."""
    value: Any = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{key}={value!r} is not a whole number >= {minimum}: set e.g. {example}")


def validate_data(cfg: DictConfig) -> None:
    for key in sorted(OmegaConf.missing_keys(cfg.dataset)):
        raise UserError(
            f"{key} is required for this data set: add {key}=..., "
            "e.g. dataset=text_file dataset.path=words.txt"
        )
    split = cfg.data.split
    if not isinstance(split, ListConfig | list) or len(split) != 3:
        raise UserError(
            f"data.split={split} must be three fractions [train, val, test], e.g. [0.8,0.1,0.1]"
        )
    try:
        fractions = [float(f) for f in split]
    except (TypeError, ValueError):
        raise UserError(f"data.split={list(split)} must hold numbers, e.g. [0.8,0.1,0.1]") from None
    if any(not 0 <= f <= 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UserError(
            f"data.split={fractions} must be fractions in [0, 1] that sum to 1, e.g. [0.8,0.1,0.1]"
        )
    if fractions[0] == 0:
        raise UserError(f"data.split={fractions} leaves nothing to train on: give train a share")
    whole_number(cfg, "data.split_seed", 0, "data.split_seed=42")
    lowercase = OmegaConf.select(cfg, "dataset.lowercase")
    if lowercase is not None and not isinstance(lowercase, bool):
        raise UserError(
            f"dataset.lowercase={lowercase!r} is not a boolean: set dataset.lowercase=true or false"
        )
    check_split_rule(OmegaConf.select(cfg, "data.split_rule", default=SPLIT_RULES[0]))


def given_settings() -> dict[str, str]:
    """The keys the command line set (`+` and `~` dropped) and their values as written; empty
    outside a Hydra command."""
    if not HydraConfig.initialized():
        return {}
    overrides = HydraConfig.get().overrides.task
    return {key.lstrip("+~"): value for key, _, value in (o.partition("=") for o in overrides)}


def validate_alpha(cfg: DictConfig) -> None:
    """counted.alpha and counted.smoothing (runs from before counted.smoothing: additive); a
    counted.alpha given for Kneser–Ney, which has no use for it, is refused rather than
    ignored."""
    _number(cfg, "counted.alpha", lambda x: x >= 0, "a smoothing count >= 0, e.g. counted.alpha=1")
    smoothing = OmegaConf.select(cfg, "counted.smoothing", default="additive")
    check_smoothing(smoothing)
    if smoothing == "kneser_ney" and "counted.alpha" in given_settings():
        raise UserError(
            f"counted.alpha={cfg.counted.alpha} is not used by counted.smoothing=kneser_ney (its "
            "discounts come from the counts): remove counted.alpha, or use "
            "counted.smoothing=additive"
        )


def smoothing_name(cfg: DictConfig) -> str:
    """The counted model's smoothing as the configs spell it: `counted.smoothing=additive
    counted.alpha=1.0`, or `counted.smoothing=kneser_ney`."""
    return smoothing_setting(cfg.counted.smoothing, cfg.counted.alpha)


def validate_train(cfg: DictConfig) -> None:
    """Raise UserError naming the first bad value and what to set instead."""
    _number(cfg, "optim.lr", lambda x: x > 0, "a positive learning rate, e.g. optim.lr=50")
    _number(cfg, "model.reg", lambda x: x >= 0, "a regularisation strength >= 0, e.g. 0.01")
    for family in ("skip", *FAMILIES):
        key = f"model.reg_{family}"
        _number(cfg, key, lambda x: x >= 0, f"a penalty multiplier >= 0, e.g. {key}=2")
    validate_alpha(cfg)
    whole_number(cfg, "trainer.max_steps", 1, "trainer.max_steps=1000")
    whole_number(cfg, "trainer.val_check_interval", 1, "trainer.val_check_interval=50")
    whole_number(cfg, "trainer.num_nodes", 1, "trainer.num_nodes=2")
    whole_number(cfg, "seed", 0, "seed=0")
    whole_number(cfg, "model.init_seed", 0, "model.init_seed=2147483647")
    if cfg.data.batch_size is not None:
        whole_number(cfg, "data.batch_size", 1, "data.batch_size=1024, or null for full batch")
    every = OmegaConf.select(cfg, "callbacks.report.figures_every_n_steps")
    if every is not None and every != "log":
        whole_number(
            cfg,
            "callbacks.report.figures_every_n_steps",
            0,
            "figures_every_n_steps=100 (0: the end only), log or null",
        )
    whole_number(cfg, "model.context", 1, "model.context=3 (tokens of context; 1: the bigram)")
    check_batches(cfg.model.context, cfg.data.batch_size, cfg.model.loss_form)
    by_length = OmegaConf.select(cfg, "model.reg_by_length")
    if by_length is not None and not isinstance(by_length, ListConfig | list):
        by_length = str(by_length)  # a number or a word: not a list of multipliers
    check_features(cfg.model.features)
    max_span = OmegaConf.select(cfg, "model.max_span")
    check_max_span(max_span, cfg.model.context)
    check_reg_by_length(by_length, cfg.model.context, max_span)
    check_unused_model_settings(cfg)
    check_loss_form(cfg.model.loss_form)
    if "max_iter" in cfg.optim:
        whole_number(cfg, "optim.max_iter", 1, "optim.max_iter=20 (iterations a step)")
    validate_data(cfg)


def check_unused_model_settings(cfg: DictConfig) -> None:
    """Refuse a model setting that the chosen features would ignore: model.max_span or
    model.reg_by_length with onehot (no suffix rows), model.reg_skip without skipgram, a
    model.reg_<family> (other than its default 1) without that family."""
    base, families = parse_features(cfg.model.features)
    features = cfg.model.features
    if base == "onehot":
        for key in ("max_span", "reg_by_length"):
            value = OmegaConf.select(cfg, f"model.{key}")
            if value is not None:
                raise UserError(
                    f"model.{key}={value} is not used by model.features=onehot (one row per whole "
                    f"context, no suffix rows): remove it, or use model.features=interpolated"
                )
    unused = {"skip": base != "skipgram"} | {f: f not in families for f in FAMILIES}
    for family, is_unused in unused.items():
        value = OmegaConf.select(cfg, f"model.reg_{family}", default=1.0)
        if is_unused and value != 1.0:
            with_it = "skipgram" if family == "skip" else f"{base}+{family}"
            if family != "skip" and base == "onehot":
                with_it = f"interpolated+{family}"
            raise UserError(
                f"model.reg_{family}={value} is not used by model.features={features} (it has no "
                f"{family} rows): remove it, or use model.features={with_it}"
            )


# The settings that decide which words a run is scored on, beside the data set's own (`dataset`,
# the option chosen, and `dataset.<key>`): recorded in every checkpoint, and taken from it by
# evaluate unless the command line sets them.
SPLIT_KEYS = ("data.split", "data.split_seed", "data.split_rule")
COUNTED_KEYS = ("counted.smoothing", "counted.alpha")


def run_data_settings(
    cfg: DictConfig, dataset_choice: str | None, cwd: str | Path | None = None
) -> dict[str, Any]:
    """What decides a run's data and its counted model, flat and plain (`dataset`, `dataset.path`,
    `data.split`, ..., `counted.alpha`): the data set's option and settings but for where it is
    cached (a file's path made absolute, so that it names the same file from anywhere; the
    class by its name), the split
    and the counted model's smoothing. Runs from before data.split_rule used randperm. `cwd`: the
    directory a relative path is relative to (the run's; default the current one)."""
    settings: dict[str, Any] = {"dataset": dataset_choice}
    for key, value in cfg.dataset.items():
        if key == "cache_dir":
            continue
        if key == "path" and isinstance(value, str) and value:
            value = str(Path(cwd or Path.cwd(), value).absolute())
        if key == "_target_":  # by class: runs from before the subpackages name its old module
            value = str(value).rpartition(".")[2]
        settings[f"dataset.{key}"] = value
    for key in (*SPLIT_KEYS, *COUNTED_KEYS):
        settings[key] = OmegaConf.select(
            cfg, key, default=OmegaConf.select(cfg, OLD_KEYS.get(key, key))
        )
    settings["data.split_rule"] = settings["data.split_rule"] or SPLIT_RULES[0]
    settings["counted.smoothing"] = settings["counted.smoothing"] or "additive"
    return {
        key: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
        for key, v in settings.items()
    }


def recorded_run_settings(
    ckpt_path: str | Path, recorded: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The data settings of the run that wrote the checkpoint at `ckpt_path`: `recorded` (what the
    checkpoint holds), else read from its run's `.hydra/config.yaml` and `.hydra/hydra.yaml`
    (`<run>/checkpoints/<name>.ckpt`; the data set's option, where hydra.yaml is not there, is
    the one of the same class); None where neither is there."""
    if recorded:
        return dict(recorded)
    hydra_dir = Path(ckpt_path).absolute().parent.parent / ".hydra"
    if not (hydra_dir / "config.yaml").is_file():
        return None
    run_cfg = OmegaConf.load(hydra_dir / "config.yaml")
    choice = cwd = None
    if (hydra_dir / "hydra.yaml").is_file():
        runtime = OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime
        choice, cwd = OmegaConf.select(runtime, "choices.dataset"), runtime.get("cwd")
    if "dataset" not in run_cfg:
        return None
    # A relative dataset.path is the run's, from the directory it ran in.
    settings = run_data_settings(run_cfg, choice, cwd)
    if choice is None:  # the option of conf/dataset/ whose class the run's data set is
        settings["dataset"] = next(
            (
                option.stem
                for option in sorted((Path(CONFIG_DIR) / "dataset").glob("*.yaml"))
                if str(OmegaConf.load(option).get("_target_")).rpartition(".")[2]
                == settings["dataset._target_"]
            ),
            None,
        )
    return settings


def checkpoint_path(cfg: DictConfig) -> str:
    """`ckpt` of the sample and evaluate configs, or a UserError saying how to give it."""
    if OmegaConf.is_missing(cfg, "ckpt") or cfg.ckpt is None:
        raise UserError("no checkpoint given: add ckpt=<run dir>/checkpoints/last.ckpt")
    return str(cfg.ckpt)


def job_dir_name(num: int, override_dirname: str) -> str:
    """A multirun job's directory name, readable in TensorBoard's run list: `3_lr=10,reg=0.01`.

    `override_dirname` is Hydra's `key=value,key=value` of the job's overrides. Keys of the
    hyperparameter table get their short name (`optim.lr` -> `lr`), others their last part where
    that is unambiguous; a dict value `pair={reg:0.1,alpha:1}` is spelled out; floats are written
    with at most 4 significant digits (Optuna's draws have 17); `/` becomes `_`.
    """
    short_names = {key: name for name, key in HYPERPARAMETERS.items()}
    items = []
    # Hydra joins the overrides with `,`; a comma inside {...} or [...] is part of a value.
    for item in re.split(r",(?![^{\[]*[}\]])", override_dirname) if override_dirname else []:
        key, _, value = item.partition("=")
        if value.startswith("{") and value.endswith("}"):
            items.extend(tuple(kv.split(":", 1)) for kv in value[1:-1].split(","))
        else:
            items.append((key, value))
    short = [short_names.get(key, key.rsplit(".", 1)[-1]) for key, _ in items]
    keys = [s if short.count(s) == 1 else key for s, (key, _) in zip(short, items)]
    values = [_short_number(v) for _, v in items]
    name = ",".join(f"{k}={v}" for k, v in zip(keys, values)).replace("/", "_")[:120]
    return f"{num}_{name}" if name else str(num)


def _short_number(value: str) -> str:
    """A float written with at most 4 significant digits: `0.00026671234` -> `0.0002667`,
    `1000000000.0` -> `1e+09`; integers and other values as they are."""
    if re.fullmatch(r"-?(\d+\.\d*|\.\d+|\d+(\.\d*)?e[-+]?\d+)", value, flags=re.IGNORECASE):
        return f"{float(value):.4g}"
    return value


def resumes_in_place(ckpt_path: str | None) -> bool:
    """Whether a run resumes in the directory of the run it resumes: `ckpt_path` is a file
    `<run>/checkpoints/<name>.ckpt`. Any other path (missing, a directory, a file elsewhere) gets
    a run directory of its own, which the failure policy removes if the path is refused."""
    if not ckpt_path:
        return False
    path = Path(ckpt_path).absolute()
    return path.is_file() and path.parent.name == "checkpoints"


def run_dir_of(ckpt_path: str | None, default: str) -> str:
    """The run directory to write into: a resumed run (`ckpt_path=<run>/checkpoints/x.ckpt`) goes
    on in the directory of the run it resumes, so its curves continue in the same TensorBoard run;
    any other run gets `default`."""
    if resumes_in_place(ckpt_path):
        return str(Path(str(ckpt_path)).absolute().parent.parent)
    return default


def config_subdir_of(ckpt_path: str | None, now: str) -> str:
    """Where Hydra records a run's config: `.hydra`, or for a run resumed in place
    `.hydra/resume_<now>`, so that the record of the run it resumes is never overwritten."""
    return f".hydra/resume_{now}" if resumes_in_place(ckpt_path) else ".hydra"


def register_resolvers() -> None:
    """The resolvers of conf/ (idempotent):

    bigramlab.job_dir, bigramlab.run_dir, bigramlab.config_subdir  run directories (see above)
    bigramlab.cwd        the working directory the command was started in, like Hydra's
                         `${hydra:runtime.cwd}`, but also where the sweep directory is resolved,
                         before Hydra's runtime config exists
    bigramlab.hparams    the hyperparameter table's values in the config it is resolved in
    """
    resolvers: dict[str, Callable[..., Any]] = {
        "bigramlab.job_dir": job_dir_name,
        "bigramlab.run_dir": run_dir_of,
        "bigramlab.config_subdir": config_subdir_of,
        "bigramlab.cwd": os.getcwd,
        "bigramlab.hparams": lambda *, _root_: hyperparameters(
            _root_, dict(HydraConfig.get().runtime.choices)
        ),
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()  # on import: every use of conf/ imports this module
