"""μ and σ of a normal distribution fitted by plain gradient descent on the mean NLL, as a
Lightning module over the whole data set as every batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from bigramlab.errors import Diverged
from bigramlab.note.gaussian import mean_nll
from bigramlab.writers.tensorboard import add_scalars, tensorboard


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
