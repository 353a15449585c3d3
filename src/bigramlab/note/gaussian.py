"""The note's first half as math: a normal distribution, probability against likelihood, the log,
and the maximum-likelihood estimate. Pure functions, no Lightning.

    density      p(x | μ, σ) = exp(−(x − μ)² / 2σ²) / (σ √(2π))
    probability  P(a ≤ x ≤ b | μ, σ) = Φ((b − μ)/σ) − Φ((a − μ)/σ)   (parameters fixed)
    likelihood   L(μ, σ | x) = Π_i p(x_i | μ, σ)                     (data fixed)
    mean NLL     −(1/n) Σ_i log p(x_i | μ, σ) = log σ + log √(2π) + mean((x − μ)²) / 2σ²
    MLE          μ̂ = mean(x),  σ̂ = √(mean((x − μ̂)²))  (the biased standard deviation)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def density(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def interval_probability(a: float, b: float, mu: float, sigma: float) -> float:
    """P(a ≤ x ≤ b) under N(μ, σ), from the normal CDF Φ(z) = (1 + erf(z / √2)) / 2."""

    def cdf(z: float) -> float:
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    return cdf((b - mu) / sigma) - cdf((a - mu) / sigma)


def mean_nll(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """−(1/n) Σ log p(x_i | μ, σ).  x: (n,); mu, sigma: the same shape S (() for one model, a
    grid for a surface) -> S."""
    z = (x - mu.unsqueeze(-1)) / sigma.unsqueeze(-1)
    return torch.log(sigma) + LOG_SQRT_2PI + (z**2).mean(dim=-1) / 2


def closed_form_mle(x: Tensor) -> tuple[float, float]:
    """(μ̂, σ̂): the sample mean and the biased standard deviation, which minimise the mean NLL."""
    x = x.double()
    mu = x.mean()
    return float(mu), float(((x - mu) ** 2).mean().sqrt())


def round_parameters(
    data: Sequence[float],
    densities: Sequence[float],
    mus: Sequence[float] = range(101),
    sigmas: Sequence[float] = range(1, 31),
) -> tuple[float, float]:
    """The round (μ, σ) whose densities at `data`, rounded as `densities` are, equal them: the
    note gives the densities under two distributions but not their parameters."""
    digits = max(len(f"{d:.10g}".split(".")[-1]) for d in densities)
    for mu, sigma in itertools.product(mus, sigmas):
        if all(round(density(x, mu, sigma), digits) == d for x, d in zip(data, densities)):
            return float(mu), float(sigma)
    raise ValueError("no round (mu, sigma) in the range gives these densities")
