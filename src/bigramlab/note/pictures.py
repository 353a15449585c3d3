"""The note's four pictures: probability as an area, likelihood as a product of densities, the
NLL surface with the fit's path, and the log's sign; drawn at the end of the fit (Pictures)."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from bigramlab.note.fit import GaussianFit
from bigramlab.note.gaussian import density, interval_probability, mean_nll
from bigramlab.writers.tensorboard import add_png, render, tensorboard


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
