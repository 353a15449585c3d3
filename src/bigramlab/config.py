"""Checks of a composed config that Hydra's types cannot express, run before any data is read."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from bigramlab.errors import UserError
from bigramlab.model import IMPLS


def _number(cfg: DictConfig, key: str, ok: Callable[[float], bool], need: str) -> None:
    value: Any = OmegaConf.select(cfg, key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{key}={value!r} is not a number: set {key} to {need}") from None
    if not (math.isfinite(number) and ok(number)):
        raise UserError(f"{key}={value} is out of range: set {key} to {need}")


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


def validate_train(cfg: DictConfig) -> None:
    """Raise UserError naming the first bad value and what to set instead."""
    _number(cfg, "optim.lr", lambda x: x > 0, "a positive learning rate, e.g. optim.lr=50")
    _number(cfg, "model.reg", lambda x: x >= 0, "a regularisation strength >= 0, e.g. 0.01")
    _number(cfg, "mle.alpha", lambda x: x >= 0, "a smoothing count >= 0, e.g. mle.alpha=1")
    _number(
        cfg, "trainer.max_steps", lambda x: x >= 1 and x == int(x), "a whole number of steps >= 1"
    )
    _number(
        cfg,
        "trainer.val_check_interval",
        lambda x: x >= 1 and x == int(x),
        "a whole number of steps >= 1, e.g. 50",
    )
    if cfg.data.batch_size is not None:
        _number(
            cfg,
            "data.batch_size",
            lambda x: x >= 1 and x == int(x),
            "a whole number >= 1, or null for full batch",
        )
    if OmegaConf.select(cfg, "callbacks.report.figures_every_n_steps") is not None:
        _number(
            cfg,
            "callbacks.report.figures_every_n_steps",
            lambda x: x >= 0 and x == int(x),
            "a whole number of steps >= 0 (0: heatmaps at the end only), or null",
        )
    if cfg.model.impl not in IMPLS:
        raise UserError(
            f"model.impl={cfg.model.impl!r} is unknown: choose one of {', '.join(IMPLS)}"
        )
    validate_data(cfg)


def checkpoint_path(cfg: DictConfig) -> str:
    """`ckpt` of the sample and evaluate configs, or a UserError saying how to give it."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise UserError("no checkpoint given: add ckpt=<run dir>/checkpoints/last.ckpt")
    return str(cfg.ckpt)


SHORT_KEYS = {"optim.lr": "lr", "model.reg": "reg", "mle.alpha": "alpha", "model.impl": "impl",
              "data.batch_size": "batch", "trainer.max_steps": "steps"}  # fmt: skip


def job_dir_name(num: int, override_dirname: str) -> str:
    """A multirun job's directory name, readable in TensorBoard's run list: `3_lr=10,reg=0.01`.

    `override_dirname` is Hydra's `key=value,key=value` of the job's overrides. Keys are shortened
    to their last part (`optim.lr` -> `lr`, `trainer.max_steps` -> `steps`) where that is
    unambiguous, a dict value `pair={reg:0.1,alpha:1}` is spelled out, and `/` (which would make
    subdirectories) becomes `_`.
    """
    items = []
    for item in re.split(r",(?![^{]*})", override_dirname) if override_dirname else []:
        key, _, value = item.partition("=")
        if value.startswith("{") and value.endswith("}"):
            items.extend(tuple(kv.split(":", 1)) for kv in value[1:-1].split(","))
        else:
            items.append((key, value))
    short = [SHORT_KEYS.get(key, key.rsplit(".", 1)[-1]) for key, _ in items]
    keys = [s if short.count(s) == 1 else key for s, (key, _) in zip(short, items)]
    name = ",".join(f"{k}={v}" for k, (_, v) in zip(keys, items)).replace("/", "_")[:120]
    return f"{num}_{name}" if name else str(num)


def run_dir_of(ckpt_path: str | None, default: str) -> str:
    """The run directory to write into: a resumed run (`ckpt_path=<run>/checkpoints/x.ckpt`) goes
    on in the directory of the run it resumes, so its curves continue in the same TensorBoard run;
    any other run gets `default`."""
    if ckpt_path:
        path = Path(ckpt_path).absolute()
        if path.parent.name == "checkpoints":
            return str(path.parent.parent)
    return default


def register_resolvers() -> None:
    """`${bigramlab.job_dir:...}`, `${bigramlab.run_dir:...}` and `${bigramlab.cwd:}` for the
    configs; idempotent.

    `bigramlab.cwd` is the working directory the command was started in, like Hydra's
    `${hydra:runtime.cwd}`, but also available where the sweep directory is resolved, before
    Hydra's own runtime config exists.
    """
    if not OmegaConf.has_resolver("bigramlab.job_dir"):
        OmegaConf.register_new_resolver("bigramlab.job_dir", job_dir_name)
    if not OmegaConf.has_resolver("bigramlab.run_dir"):
        OmegaConf.register_new_resolver("bigramlab.run_dir", run_dir_of)
    if not OmegaConf.has_resolver("bigramlab.cwd"):
        OmegaConf.register_new_resolver("bigramlab.cwd", os.getcwd)
