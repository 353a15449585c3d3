"""TensorBoard reporting: the counted model beside the learned one, at every validation.

Written with TensorBoard's SummaryWriter at `trainer.global_step`, the number of gradient updates
so far, so that a validation point and the training loss logged at the same step describe the
same W. The step losses (loss/total, loss/nll, loss/reg) are StepLosses'
(bigramlab.training.callbacks).
At every validation (cheap: a few (V, V) operations and a dozen scalars):

    nll/<split>           learned model, data NLL of the whole split (torchmetrics, no penalty)
    counted/nll_<split>       counted model P = (N_train + α) / row sums
    ppl/val, counted/ppl_val  exp of the NLL
    compare/gap_val       nll/val − counted/nll_val
    compare/kl_train      Σ_x p̂(x) KL(P̂(·|x) ‖ P_W(·|x)) = nll/train − NLL_train(MLE, α=0)
    compare/tv_train      Σ_x p̂(x) TV(P_counted(·|x), P_W(·|x))
    compare/max_abs_diff  max |P_counted − P_W|
    hp/{val_nll,counted_val_nll,gap_val,train_nll}   the metrics of the HParams dashboard

At the snapshot steps (`figures_every_n_steps`; by default 0, ≈ max/16, ≈ max/4 and the end, so
that TensorBoard's image slider shows the learned model converge; with a context of k > 1 tokens
the heatmaps are V × V bigram marginals, bigramlab.comparison.metrics.bigram_marginal, each row the
average of P(· | h) over the contexts h ending in that token, weighted by their train counts):

    compare/heatmap_{learned,diff}  images (compare/heatmap_counted once, at the start), on fixed
                                    colour scales (the last diff on its own), the last with
                                    every cell's value
    samples                         words of both models side by side (text)
    weights/W, entropy/{learned,counted}  histograms
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from tensorboard.plugins.text.summary_v2 import text_pb
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from bigramlab.comparison.figures import HeatmapFrames, heatmap, nice_ceiling, nll_curves
from bigramlab.comparison.metrics import bigram_marginal, compare, row_entropy
from bigramlab.data.vocab import SPLITS
from bigramlab.models.counted import CountedModel
from bigramlab.models.nll import perplexity, row_totals, split_nlls
from bigramlab.models.sampling import sample_words
from bigramlab.training.callbacks import counted_of
from bigramlab.training.datamodule import NgramData
from bigramlab.training.module import LanguageModelModule
from bigramlab.writers.tensorboard import add_png, add_scalars, render, tensorboard

SAMPLE_MAX_LENGTH = 40  # characters of a sampled word shown in the samples table


def heatmap_titles(context: int) -> dict[str, str]:
    """The heatmaps' titles: at a context of k > 1 tokens each row is a bigram marginal (the
    contexts ending in that character, averaged by their train counts), not a row of softmax(W)."""
    if context == 1:
        return {
            "counted": "counted P",
            "learned": "learned P_W = softmax(W)",
            "diff": "P_W − P_counted",
        }
    averaged = f"(k = {context}), averaged over the\ncontexts that end in each character"
    return {
        "counted": f"counted P {averaged}",
        "learned": f"learned P_W {averaged}",
        "diff": f"P_W − P_counted {averaged}",
    }


HP_METRICS = ("hp/val_nll", "hp/counted_val_nll", "hp/gap_val", "hp/train_nll")


def custom_scalars_layout() -> dict[str, dict[str, list[Any]]]:
    """TensorBoard's Custom Scalars tab: per split, learned and MLE NLL on one chart; the gap."""
    charts: dict[str, list[Any]] = {
        f"NLL {split}: learned vs MLE": ["Multiline", [f"^nll/{split}$", f"^counted/nll_{split}$"]]
        for split in SPLITS
    }
    charts["gap on val: learned − MLE"] = ["Multiline", ["^compare/gap_val$"]]
    charts["KL(MLE ‖ learned) on train"] = ["Multiline", ["^compare/kl_train$"]]
    return {"bigramlab": charts}


def comparison_scalars(
    learned_nll: dict[str, float], compared: dict[str, float]
) -> dict[str, float]:
    """TensorBoard tag -> value of one validation: `learned_nll` {split: NLL} and the output of
    bigramlab.comparison.metrics.compare."""
    scalars = {f"nll/{split}": value for split, value in learned_nll.items()}
    scalars |= {
        f"counted/nll_{split}": compared[f"counted_{split}_nll"]
        for split in SPLITS
        if f"counted_{split}_nll" in compared
    }
    for name in ("kl_train", "tv_train", "max_abs_diff"):
        scalars[f"compare/{name}"] = compared[name]
    if "gap_val" in compared:
        scalars["ppl/val"] = perplexity(learned_nll["val"])
        scalars["counted/ppl_val"] = perplexity(compared["counted_val_nll"])
        scalars["compare/gap_val"] = compared["gap_val"]
        scalars["hp/val_nll"] = learned_nll["val"]
        scalars["hp/counted_val_nll"] = compared["counted_val_nll"]
        scalars["hp/gap_val"] = compared["gap_val"]
    scalars["hp/train_nll"] = learned_nll["train"]
    return scalars


def markdown_samples(counted_words: list[str], learned_words: list[str]) -> str:
    """A Markdown table of words from both models, side by side."""
    rows = ["| # | MLE (counted) | learned |", "|---|---|---|"]
    for i, (a, b) in enumerate(zip(counted_words, learned_words), start=1):
        rows.append(f"| {i} | `{a or '(empty)'}` | `{b or '(empty)'}` |")
    return "\n".join(rows)


def snapshot_steps(
    max_steps: int, val_check_interval: int, every: int | str | None
) -> set[int] | None:
    """The validation steps that get heatmaps, samples and histograms; None: every validation.

    every: "log" (step 0, the validations nearest max/16 and max/4, and the last step), an
    interval N > 0 (0, N, 2N, ... and the last step), or 0 (the last step only).
    """
    if every is None:
        return None
    if every == "log":
        nearest = {
            max(1, round(max_steps / d / val_check_interval)) * val_check_interval for d in (16, 4)
        }
        return {0, max_steps} | {s for s in nearest if s < max_steps}
    if every == 0:
        return {max_steps}
    return set(range(0, max_steps, int(every))) | {max_steps}


@functools.lru_cache(maxsize=4)
def counted_heatmap_png(itos: str, probs: bytes, scale: float, title: str) -> bytes:
    """The counted model's heatmap as PNG, from its probabilities' bytes ((V, V) float64), with
    its colour scale's top `scale` (percent): drawn once in a process, for all the jobs of a sweep
    on the same data and α."""
    V = len(itos)
    matrix = torch.from_numpy(np.frombuffer(probs, dtype=np.float64).reshape(V, V).copy())
    return render(heatmap(matrix, itos, title, scale=scale))


class ComparisonReport(L.Callback):
    """Logs the learned model against the counted one at the start and at each validation: the
    scalars every time, and at the snapshot steps the figures of `Snapshots`.

    alpha, smoothing: the counted model's (counted.*). n_samples: words sampled from each model at a
    snapshot. figures_every_n_steps: the snapshot steps (see snapshot_steps). hparams: the run's
    hyperparameters for the HParams dashboard (bigramlab.plumbing.config.hyperparameters).
    figures_dir: where the final figures are saved as PNG.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        smoothing: str = "additive",
        n_samples: int = 10,
        sample_seed: int = 0,
        figures_every_n_steps: int | str | None = "log",
        hparams: dict[str, Any] | None = None,
        figures_dir: str | None = None,
    ) -> None:
        self.alpha = alpha
        self.smoothing = smoothing
        self.figures_every_n_steps = figures_every_n_steps
        self.hparams = {k: "null" if v is None else v for k, v in dict(hparams or {}).items()}
        self.snapshots = Snapshots(n_samples, sample_seed, figures_dir)
        self.history_steps: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> None:
        data = trainer.datamodule.data
        self.counts = data.counts  # on the host: for the NLLs of a resumed run's first point
        counted = counted_of(data, self.alpha, self.smoothing)
        self.counted_nll = counted.nll
        # Kept where the net is, so that validations compare without copying them again; the
        # contexts are the module's own (its net keeps their rows, which training uses too).
        device = pl_module.device
        self.counted = counted.to(device)
        self.train_counts = {"train": data.counts["train"].to(device)}
        self.snapshots.start(pl_module, data, counted)
        self.steps = snapshot_steps(
            trainer.max_steps, int(trainer.val_check_interval), self.figures_every_n_steps
        )
        writer = tensorboard(trainer)
        # A resumed run has all this already (its step is restored after this hook: not yet > 0).
        if writer is None or trainer.ckpt_path is not None:
            return
        writer.add_custom_scalars(custom_scalars_layout())
        experiment, session_start, _ = hparams_summary(self.hparams, dict.fromkeys(HP_METRICS, 0.0))
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(session_start)
        add_png(writer, "compare/heatmap_counted", self.snapshots.counted_png(), 0)

    def on_train_start(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> None:
        """A resumed run's first point, at the checkpoint's step: Lightning does not validate
        before it resumes, and TensorBoard's purge_step drops the interrupted run's point there."""
        writer = tensorboard(trainer)
        if writer is None or trainer.global_step == 0:
            return
        learned_nll = split_nlls(pl_module.net.log_probs(pl_module.contexts).cpu(), self.counts)
        self._write_comparison(writer, pl_module, trainer.global_step, learned_nll)
        writer.flush()

    def on_validation_end(self, trainer: L.Trainer, pl_module: LanguageModelModule) -> None:
        # The sanity check before training is the point at step 0 (Lightning skips it on resume).
        step = trainer.global_step
        writer = tensorboard(trainer)
        if writer is None:
            return
        learned_nll = {
            split: float(trainer.callback_metrics[f"nll/{split}"])
            for split in SPLITS
            if f"nll/{split}" in trainer.callback_metrics
        }
        self._write_comparison(writer, pl_module, step, learned_nll)
        if self.steps is None or step in self.steps:
            final = step >= trainer.max_steps
            self.snapshots.write(writer, pl_module, self.counted, step, final)
            if final:
                self.snapshots.save(self.history_steps, self.history, self.counted_nll)
        writer.flush()

    def _write_comparison(
        self,
        writer: SummaryWriter,
        pl_module: LanguageModelModule,
        step: int,
        learned_nll: dict[str, float],
    ) -> None:
        compared = compare(
            pl_module.net,
            self.counted,
            pl_module.contexts,
            self.train_counts,  # the NLLs are given: train's counts are all compare reads
            learned_nll,
            self.counted_nll,
        )
        add_scalars(writer, comparison_scalars(learned_nll, compared), step)
        if not self.history_steps or self.history_steps[-1] != step:
            self.history_steps.append(step)
            for split, value in learned_nll.items():
                self.history.setdefault(split, []).append(value)


class Snapshots:
    """The figures of the comparison at a snapshot step: the heatmaps of the learned model and
    of its difference from the counted one (V × V bigram marginals at k > 1, on fixed colour
    scales), words sampled from both, and histograms; at the last step, saved as PNG files in
    `figures_dir` with the counted model's heatmap and the NLL curves."""

    def __init__(self, n_samples: int, sample_seed: int, figures_dir: str | None) -> None:
        self.n_samples, self.sample_seed = n_samples, sample_seed
        self.figures_dir = Path(figures_dir) if figures_dir else None
        self.last: dict[str, bytes] = {}

    def start(self, pl_module: LanguageModelModule, data: NgramData, counted: CountedModel) -> None:
        """The data's marginal weights, the counted model's heatmap and entropies, and the colour
        scales, rounded up to 1, 2 or 5 × 10^k percent: for the MLE and the learned model, the
        MLE's largest probability; for the difference, its largest value at step 0 (from the
        initial net, so that a resumed run keeps the scale)."""
        self.itos, self.context = data.vocab.itos, data.context
        # How often train has each context: the heatmaps' rows average the contexts by it.
        weights = row_totals(data.counts["train"])
        self.weights = weights.to(pl_module.device)
        counted_probs = counted.probs
        mle = bigram_marginal(counted_probs, data.contexts, weights, data.context)
        self.mle = mle.to(pl_module.device)
        # It does not change in training: one histogram, drawn at every snapshot.
        self.counted_entropy = row_entropy(counted_probs)
        del counted_probs
        P_0 = pl_module.initial_net().log_probs(data.contexts).exp()
        P_0 = bigram_marginal(P_0, data.contexts, weights, data.context)
        self.learned_top = nice_ceiling(float(mle.max()) * 100)
        self.diff_top = nice_ceiling(max(float((P_0 - mle).abs().max()) * 100, 1e-6))

    def write(
        self,
        writer: SummaryWriter,
        pl_module: LanguageModelModule,
        counted: CountedModel,
        step: int,
        final: bool,
    ) -> None:
        net, contexts = pl_module.net, pl_module.contexts
        # One (C, V) float64 at a time: these are the run's largest tensors but W.
        P_table = net.log_probs(contexts).exp_()
        P_W = bigram_marginal(P_table, contexts, self.weights, self.context)
        writer.add_histogram("entropy/learned", row_entropy(P_table), step)
        del P_table
        writer.add_histogram("entropy/counted", self.counted_entropy, step)
        weights = torch.cat([p.detach().double().flatten() for p in net.parameters()])
        writer.add_histogram("weights/W", weights, step)
        # TensorBoard's own text summary keeps the tag as is (add_text would append /text_summary).
        words = [
            sample_words(
                model,
                self.n_samples,
                torch.Generator().manual_seed(self.sample_seed),
                SAMPLE_MAX_LENGTH,
            )
            for model in (counted, net)
        ]  # the same generator seed for both: where they agree, they draw the same words
        writer.file_writer.add_summary(text_pb("samples", markdown_samples(*words)), step)
        # The last step's carry every cell's value (the files in figures/ are these).
        pngs = {
            name: frames.png(matrix, annotate=final)
            for name, frames, matrix in self._frames(P_W, final)
        }
        for name, png in pngs.items():
            add_png(writer, f"compare/{name}", png, step)
        self.last = pngs

    def _frames(self, P_W: Tensor, final: bool) -> list[tuple[str, HeatmapFrames, Tensor]]:
        """The heatmaps of a snapshot, each a frame drawn once and recoloured, on the scales of
        `start`; the last step's difference on its own largest value (rounded up to 1, 2 or
        5 × 10^k percent), as by then it is a small fraction of the first."""
        diff = P_W - self.mle
        diff_top = self.diff_top
        if final:
            diff_top = nice_ceiling(max(float(diff.abs().max()) * 100, 1e-6))
        titles = heatmap_titles(self.context)
        learned = HeatmapFrames.of(self.itos, titles["learned"], False, self.learned_top)
        differences = HeatmapFrames.of(self.itos, titles["diff"], True, diff_top)
        return [("heatmap_learned", learned, P_W), ("heatmap_diff", differences, diff)]

    def counted_png(self) -> bytes:
        """The MLE's heatmap: it does not change during training."""
        probs = self.mle.double().cpu().numpy().tobytes()
        title = heatmap_titles(self.context)["counted"]
        return counted_heatmap_png(self.itos, probs, self.learned_top, title)

    def save(
        self, steps: list[int], history: dict[str, list[float]], counted_nll: dict[str, float]
    ) -> None:
        """The last snapshot's heatmaps, the MLE's and the NLL curves as PNG files in
        `figures_dir`."""
        if self.figures_dir is None:
            return
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        everything = {
            "heatmap_counted": self.counted_png(),
            **self.last,
            "nll_curves": render(nll_curves(steps, history, counted_nll)),
        }
        for name, png in everything.items():
            (self.figures_dir / f"{name}.png").write_bytes(png)
