"""The note's first half, executed: `python -m bigramlab.likelihood` (config: conf/likelihood.yaml).

Prints the note's numbers (probability against likelihood, the log, the MLE) computed beside the
note's own, fits μ and σ of a normal distribution by gradient descent on the mean NLL as a
Lightning module, logs the fit to TensorBoard step by step with its gaps to the closed-form MLE,
and draws the note's pictures (PNG files in the run directory and TensorBoard images).
docs/likelihood.md walks through it.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, ListConfig
from torch import Tensor
from torch.utils.data import DataLoader

from bigramlab.errors import Diverged, UserError
from bigramlab.note.fit import GaussianFit, RepeatData
from bigramlab.note.gaussian import (
    closed_form_mle,
    density,
    interval_probability,
    mean_nll,
    round_parameters,
)
from bigramlab.note.pictures import Pictures
from bigramlab.plumbing.cli import entry_point, exit_now
from bigramlab.plumbing.config import given_settings, whole_number
from bigramlab.training.results import write_metrics

# The note's worked numbers, as it prints them.
NOTE = {
    "probability": 0.3413,
    "data": [48.8292, 49.3087, 52.4836, 53.2384, 57.6151],
    "densities_A": [0.0776, 0.0790, 0.0705, 0.0647, 0.0250],
    "densities_B": [0.0445, 0.0431, 0.0322, 0.0293, 0.0144],
    "product_A": 6.99072501e-07,
    "product_B": 2.6056931140799998e-08,
    "log_example": [0.015, 0.05, 0.01],
    "log_example_product": 7.5e-06,
    "log_float32": -11.800607681274414,
    "mu_mle": 52.295,
    "sigma_mle": 3.167,
}


def data_points(cfg: DictConfig) -> Tensor:
    """The data: `sample.n` points drawn from N(sample.mu, sample.sigma) with `sample.seed`, or
    the list `points`; at least two finite numbers (σ̂ of one point is 0)."""
    if cfg.sample.n is not None:
        if "points" in given_settings():
            raise UserError(
                f"data=[...] and sample.n={cfg.sample.n} both give the data: keep data=[...] to "
                "fit your points, or sample.n to draw them"
            )
        whole_number(cfg, "sample.n", 2, "sample.n=100 (points to draw)")
        whole_number(cfg, "sample.seed", 0, "sample.seed=0")
        for key in ("mu", "sigma"):
            if not isinstance(cfg.sample[key], int | float) or not math.isfinite(cfg.sample[key]):
                raise UserError(f"sample.{key}={cfg.sample[key]!r} is not a finite number")
        if cfg.sample.sigma <= 0:
            raise UserError(f"sample.sigma={cfg.sample.sigma} must be > 0, e.g. sample.sigma=2.5")
        generator = torch.Generator().manual_seed(cfg.sample.seed)
        noise = torch.randn(cfg.sample.n, generator=generator, dtype=torch.float64)
        return cfg.sample.mu + cfg.sample.sigma * noise
    if not isinstance(cfg.points, ListConfig | list):
        raise UserError(f"data={cfg.points!r} is not a list: write data=[1.5,2,3.25]")
    values = list(cfg.points)
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise UserError(f"data={values} must hold numbers only, e.g. data=[1.5,2,3.25]")
    if len(values) < 2:
        raise UserError(
            f"data={values} has {len(values)} point(s): the MLE of σ needs at least two, "
            "e.g. data=[1.5,2,3.25]"
        )
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"data={values} holds a value that is not finite: give finite numbers")
    if len(set(values)) == 1:
        raise UserError(
            f"data={values} has no spread: σ̂ = 0, and the likelihood grows without bound as σ "
            "shrinks, so there is no MLE to fit; give points that differ, e.g. data=[1.5,2,3.25]"
        )
    return torch.tensor(values, dtype=torch.float64)


def describe_data(cfg: DictConfig, x: Tensor) -> str:
    """Which data the fit is of, in words."""
    if cfg.sample.n is not None:
        return (
            f"{len(x)} points drawn from N({cfg.sample.mu:g}, {cfg.sample.sigma:g}) "
            f"(sample.seed={cfg.sample.seed})"
        )
    if x.tolist() == NOTE["data"]:
        return "the note's 5 points"
    return f"your {len(x)} points (data=[...])"


@functools.cache
def note_distributions() -> dict[str, tuple[float, float]]:
    """The note's A and B, {name: (μ, σ)}: the round parameters that give its densities."""
    return {name: round_parameters(NOTE["data"], NOTE[f"densities_{name}"]) for name in "AB"}


def note_numbers() -> list[tuple[str, Any, Any]]:
    """(what, computed, the note's value) for every number the note prints."""
    data = NOTE["data"]
    A, B = note_distributions().values()
    dens_A = [density(x, *A) for x in data]
    dens_B = [density(x, *B) for x in data]
    example = torch.tensor(NOTE["log_example"], dtype=torch.float32)
    log_of_product = torch.log(example.prod())
    sum_of_logs = torch.log(example).sum()
    mu_mle, sigma_mle = closed_form_mle(torch.tensor(data))
    return [
        (
            "P(50 <= x <= 52.5) under N(50, 2.5)",
            interval_probability(50, 52.5, 50, 2.5),
            NOTE["probability"],
        ),
        ("A: the round N(mu, sigma) of its densities", f"N({A[0]:g}, {A[1]:g})", "not given"),
        ("B: the round N(mu, sigma) of its densities", f"N({B[0]:g}, {B[1]:g})", "not given"),
        ("densities under A, rounded", [round(d, 4) for d in dens_A], NOTE["densities_A"]),
        ("densities under B, rounded", [round(d, 4) for d in dens_B], NOTE["densities_B"]),
        (
            "likelihood under A: product of the rounded densities",
            math.prod(NOTE["densities_A"]),
            NOTE["product_A"],
        ),
        (
            "likelihood under B: product of the rounded densities",
            math.prod(NOTE["densities_B"]),
            NOTE["product_B"],
        ),
        ("likelihood under A: product of the exact densities", math.prod(dens_A), "—"),
        ("likelihood under B: product of the exact densities", math.prod(dens_B), "—"),
        ("0.015 * 0.05 * 0.01", math.prod(NOTE["log_example"]), NOTE["log_example_product"]),
        ("float32 log of the product", float(log_of_product), NOTE["log_float32"]),
        ("float32 sum of the logs", float(sum_of_logs), NOTE["log_float32"]),
        ("the two compare equal", bool(log_of_product == sum_of_logs), True),
        ("MLE mu: the sample mean", round(mu_mle, 3), NOTE["mu_mle"]),
        ("MLE sigma: the biased standard deviation", round(sigma_mle, 3), NOTE["sigma_mle"]),
    ]


# --- figures --------------------------------------------------------------------------------------


# --- the command ----------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def likelihood(cfg: DictConfig) -> float:
    """Print the note's numbers, fit the data, draw the pictures; return the fitted mean NLL."""
    x = data_points(cfg)
    whole_number(cfg, "fit.steps", 1, "fit.steps=2000")
    if not (cfg.fit.lr > 0 and cfg.fit.sigma > 0 and math.isfinite(cfg.fit.mu)):
        raise UserError("fit.lr and fit.sigma must be > 0 and fit.mu finite, e.g. fit.lr=0.5")
    run_dir = Path(cfg.paths.output_dir)

    print("the note's numbers, computed from its own data (not the data this run fits):")
    print(f"{'the note':52} {'computed':>42}   the note's value")
    for what, computed, note in note_numbers():
        print(f"{what:52} {_show(computed):>42}   {_show(note)}")

    mle = closed_form_mle(x)
    nll_mle = float(mean_nll(x, x.new_tensor(mle[0]), x.new_tensor(mle[1])))
    model = GaussianFit(cfg.fit.mu, cfg.fit.sigma, cfg.fit.lr, mle, nll_mle)
    logger = L.pytorch.loggers.TensorBoardLogger(
        save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False
    )
    models = {"MLE": mle}
    if x.tolist() == NOTE["data"]:  # the note's A and B explain its own five points
        models = note_distributions() | models
    trainer = L.Trainer(
        max_steps=cfg.fit.steps,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[Pictures(x, models, run_dir / "figures")],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    try:
        trainer.fit(model, train_dataloaders=DataLoader(RepeatData(x), batch_size=None))
    except Diverged as e:
        failed = {"n": len(x), "mu_mle": mle[0], "sigma_mle": mle[1], "steps": e.step}
        write_metrics(run_dir, failed | {"status": "diverged", "reason": str(e)})
        raise

    mu, sigma = float(model.mu.detach()), float(model.log_sigma.detach().exp())
    metrics = {
        "n": len(x),
        "mu": mu,
        "sigma": sigma,
        "mu_mle": mle[0],
        "sigma_mle": mle[1],
        "nll": float(mean_nll(x, x.new_tensor(mu), x.new_tensor(sigma))),
        "nll_mle": nll_mle,
        "steps": trainer.global_step,
        "status": "ok",
    }
    write_metrics(run_dir, metrics)

    print(
        f"\nthe fit of {describe_data(cfg, x)}:\n"
        f"gradient descent, {metrics['steps']} steps: mu {mu:.6f}  sigma {sigma:.6f}\n"
        f"closed form:                  mu {mle[0]:.6f}  sigma {mle[1]:.6f}\n"
        f"run directory: {run_dir}\n"
        f"  tensorboard --logdir {run_dir}"
    )
    return metrics["nll"]


def main() -> Any:
    """`data=[...]` on the command line is the `points` key: `data` is already the name of a
    config group of conf/ (train's), which Hydra would take it for."""
    sys.argv = [re.sub(r"^data=", "points=", arg) for arg in sys.argv]
    return entry_point("likelihood", likelihood)()


if __name__ == "__main__":
    main()
    exit_now()
