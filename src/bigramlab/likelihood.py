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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from bigramlab.comparison.figures import render
from bigramlab.comparison.report import add_png
from bigramlab.errors import Diverged, UserError
from bigramlab.gaussian import (
    closed_form_mle,
    density,
    interval_probability,
    mean_nll,
    round_parameters,
)
from bigramlab.plumbing.cli import entry_point, exit_now
from bigramlab.plumbing.config import given_settings, whole_number
from bigramlab.plumbing.results import write_metrics
from bigramlab.training.callbacks import add_scalars, tensorboard

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


class GaussianFit(L.LightningModule):
    """μ and σ = exp(s) of a normal distribution (s keeps σ positive), fitted by plain gradient
    descent on the mean NLL of the data, in float64. Logs fit/{mu,sigma,nll} every step and
    gap/{mu,sigma,nll} to the closed-form MLE (μ̂, σ̂)."""

    def __init__(
        self, mu: float, sigma: float, lr: float, mle: tuple[float, float], nll_mle: float
    ) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(mu, dtype=torch.float64))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma), dtype=torch.float64))
        self.lr = lr
        self.mle = mle
        self.nll_mle = nll_mle  # the closed form's mean NLL: the floor the fit approaches
        self.path: list[tuple[float, float]] = [(mu, sigma)]  # (μ, σ) after each step

    def training_step(self, x: Tensor, batch_idx: int) -> Tensor:
        sigma = self.log_sigma.exp()
        nll = mean_nll(x, self.mu, sigma)
        step = self.trainer.global_step
        if not (torch.isfinite(nll) and torch.isfinite(self.mu) and torch.isfinite(sigma)):
            raise Diverged(
                f"gradient descent diverged at step {step} (mu={float(self.mu.detach()):g}, "
                f"sigma={float(sigma.detach()):g}) with fit.lr={self.lr:g}: lower fit.lr below "
                f"2·σ̂² = {2 * self.mle[1] ** 2:.3g}",
                step,
            )
        mu_mle, sigma_mle = self.mle
        # The values before this step's update, at the step they belong to (as train's losses).
        writer = tensorboard(self.trainer)
        if writer is not None:
            values = {
                "fit/mu": self.mu,
                "fit/sigma": sigma,
                "fit/nll": nll,
                "gap/mu": self.mu - mu_mle,
                "gap/sigma": sigma - sigma_mle,
                "gap/nll": nll - self.nll_mle,
            }
            add_scalars(writer, {tag: float(v.detach()) for tag, v in values.items()}, step)
        return nll

    def on_train_batch_end(self, outputs: Any, batch: Tensor, batch_idx: int) -> None:
        self.path.append((float(self.mu.detach()), float(self.log_sigma.detach().exp())))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class RepeatData(IterableDataset):
    """The whole data set as every batch: full-batch gradient descent."""

    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            yield self.x


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


def probability_figure() -> Figure:
    """The area under N(50, 2.5) between 50 and 52.5: a probability, parameters fixed."""
    fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    xs = np.linspace(40, 60, 400)
    ax.plot(xs, [density(x, 50, 2.5) for x in xs], color="C0", label="N(μ=50, σ=2.5)")
    shade = np.linspace(50, 52.5, 100)
    area = interval_probability(50, 52.5, 50, 2.5)
    ax.fill_between(
        shade,
        [density(x, 50, 2.5) for x in shade],
        alpha=0.4,
        color="C0",
        label=f"P(50 ≤ x ≤ 52.5) = {area:.4f}",
    )
    ax.set(xlabel="x", ylabel="density p(x | μ, σ)", title="Probability: parameters fixed")
    ax.legend()
    return fig


def likelihood_figure(x: Tensor, models: dict[str, tuple[float, float]]) -> Figure:
    """The data points under each model {name: (μ, σ)} (the note's A and B, and the MLE), each
    point's density marked: a likelihood, data fixed, is the product of those heights."""
    fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    points = x.tolist()
    low, high = min(points), max(points)
    span = high - low
    xs = np.linspace(low - span - 5, high + span + 5, 400)
    for index, (name, (mu, sigma)) in enumerate(models.items()):
        colour = f"C{index}"
        likelihood = math.prod(density(p, mu, sigma) for p in points)
        ax.plot(
            xs,
            [density(v, mu, sigma) for v in xs],
            color=colour,
            label=f"{name}: N({mu:.4g}, {sigma:.4g}), L = {likelihood:.3g}",
        )
        ax.plot(points, [density(p, mu, sigma) for p in points], "o", color=colour, markersize=4)
    ax.plot(points, [0] * len(points), "|", color="black", markersize=15, label="data")
    ax.set(xlabel="x", ylabel="density", title="Likelihood: data fixed, parameters vary")
    ax.legend(fontsize=8)
    return fig


def surface_figure(x: Tensor, path: list[tuple[float, float]], mle: tuple[float, float]) -> Figure:
    """The mean NLL over (μ, σ) with the path of gradient descent to the closed-form MLE."""
    fig = Figure(figsize=(7, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    mus = [m for m, _ in path] + [mle[0]]
    sigmas = [s for _, s in path] + [mle[1]]
    mu_grid = torch.linspace(min(mus) - 2, max(mus) + 2, 200, dtype=torch.float64)
    sigma_grid = torch.linspace(
        max(min(sigmas) * 0.5, 1e-3), max(sigmas) * 1.3, 200, dtype=torch.float64
    )
    M, S = torch.meshgrid(mu_grid, sigma_grid, indexing="xy")
    surface = mean_nll(x, M, S)
    # Clipped at its 60th percentile: the far corner (small σ, far μ) would take every colour.
    clipped = surface.clamp(max=float(torch.quantile(surface, 0.6)))
    contours = ax.contourf(M, S, clipped, levels=30, cmap="viridis")
    fig.colorbar(contours, ax=ax, label="mean NLL")
    ax.plot(
        *zip(*path),
        color="white",
        linewidth=1.2,
        marker=".",
        markersize=2,
        label=f"gradient descent ({len(path) - 1} steps)",
    )
    ax.plot(*mle, "r*", markersize=14, label=f"closed form: μ̂={mle[0]:.4f}, σ̂={mle[1]:.4f}")
    ax.set(xlabel="μ", ylabel="σ", title="NLL surface and the path of gradient descent")
    # A grey box: the path's white line would not show on a white legend.
    ax.legend(loc="upper right", fontsize=8, facecolor="0.7", framealpha=0.9)
    return fig


def log_figure() -> Figure:
    """ln p is negative on (0, 1] and rises with p; −ln p is positive and falls: a loss."""
    fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    p = np.linspace(0.005, 1, 400)
    ax.plot(p, np.log(p), label="ln p (log likelihood of one point)")
    ax.plot(p, -np.log(p), label="−ln p (its NLL: 0 at p = 1, large for unlikely data)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xlabel="p", ylabel="value", title="Why the minus sign")
    ax.legend()
    return fig


class Pictures(L.Callback):
    """The note's four pictures at the end of the fit, as PNG files in `figures_dir` and as
    TensorBoard images (figures/<name>), while the run's event file is open."""

    def __init__(self, x: Tensor, models: dict[str, tuple[float, float]], figures_dir: Path):
        self.x, self.models, self.figures_dir = x, models, figures_dir

    def on_train_end(self, trainer: L.Trainer, pl_module: GaussianFit) -> None:
        figures = {
            "probability": probability_figure(),
            "likelihood": likelihood_figure(self.x, self.models),
            "nll_surface": surface_figure(self.x, pl_module.path, self.models["MLE"]),
            "log": log_figure(),
        }
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        writer = tensorboard(trainer)
        for name, fig in figures.items():
            png = render(fig)
            (self.figures_dir / f"{name}.png").write_bytes(png)
            if writer is not None:
                add_png(writer, f"figures/{name}", png, trainer.global_step)


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
