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
import io
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.text.summary_v2 import text_pb
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from bigramlab.comparison.figures import HeatmapFrames, heatmap, nice_ceiling, nll_curves, render
from bigramlab.comparison.metrics import bigram_marginal, compare, row_entropy
from bigramlab.data.vocab import SPLITS
from bigramlab.models.nll import perplexity, row_totals, split_nlls
from bigramlab.models.sampling import sample_words
from bigramlab.training.callbacks import add_scalars, tensorboard
from bigramlab.training.module import LearnedLMModule

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


def add_png(writer: SummaryWriter, tag: str, png: bytes, step: int) -> None:
    """An image summary of the PNG as it is (`add_image` takes pixels and would encode again)."""
    width, height = Image.open(io.BytesIO(png)).size  # reads the header only
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


@functools.lru_cache(maxsize=4)
def counted_heatmap_png(itos: str, probs: bytes, scale: float, title: str) -> bytes:
    """The counted model's heatmap as PNG, from its probabilities' bytes ((V, V) float64), with
    its colour scale's top `scale` (percent): drawn once in a process, for all the jobs of a sweep
    on the same data and α."""
    V = len(itos)
    matrix = torch.from_numpy(np.frombuffer(probs, dtype=np.float64).reshape(V, V).copy())
    return render(heatmap(matrix, itos, title, scale=scale))


class ComparisonReport(L.Callback):
    """Logs the learned model against the counted one at the start and at each validation.

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
        self.n_samples = n_samples
        self.sample_seed = sample_seed
        self.figures_every_n_steps = figures_every_n_steps
        self.hparams = {k: "null" if v is None else v for k, v in dict(hparams or {}).items()}
        self.figures_dir = Path(figures_dir) if figures_dir else None
        self.history_steps: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: LearnedLMModule) -> None:
        data = trainer.datamodule.data
        self.data = data
        self.itos = data.vocab.itos
        self.counts = data.counts  # on the host: for the NLLs of a resumed run's first point
        # Kept where W is, so that validations compare without copying them again.
        counted = data.counted_model(self.alpha, self.smoothing)
        device = pl_module.device
        self.counted = counted.to(device)
        self.train_counts = data.counts["train"].to(pl_module.device)
        # How often train has each context: the heatmaps' rows average the contexts by it.
        weights = row_totals(data.counts["train"])
        self.contexts, self.weights = (
            data.contexts.to(pl_module.device),
            weights.to(pl_module.device),
        )
        counted_probs = counted.probs
        mle = bigram_marginal(counted_probs, data.contexts, weights, data.context)
        self.mle = mle.to(pl_module.device)
        # It does not change in training: one histogram, drawn at every snapshot.
        self.counted_entropy = row_entropy(counted_probs)
        del counted_probs
        self.snapshots = snapshot_steps(
            trainer.max_steps, int(trainer.val_check_interval), self.figures_every_n_steps
        )
        # The heatmaps' colour scales, rounded up to 1, 2 or 5 × 10^k percent: for the MLE and the
        # learned model, the MLE's largest probability; for the difference, its largest value at
        # step 0 (from the initial W, so that a resumed run keeps the scale).
        W_0 = pl_module.initial_logits()
        P_0 = bigram_marginal(W_0.double().softmax(dim=1), data.contexts, weights, data.context)
        self.learned_top = nice_ceiling(float(mle.max()) * 100)
        self.diff_top = nice_ceiling(max(float((P_0 - mle).abs().max()) * 100, 1e-6))
        writer = tensorboard(trainer)
        # A resumed run has all this already (its step is restored after this hook: not yet > 0).
        if writer is None or trainer.ckpt_path is not None:
            return
        writer.add_custom_scalars(custom_scalars_layout())
        experiment, session_start, _ = hparams_summary(self.hparams, dict.fromkeys(HP_METRICS, 0.0))
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(session_start)
        add_png(writer, "compare/heatmap_counted", self._counted_png(), 0)

    def on_train_start(self, trainer: L.Trainer, pl_module: LearnedLMModule) -> None:
        """A resumed run's first point, at the checkpoint's step: Lightning does not validate
        before it resumes, and TensorBoard's purge_step drops the interrupted run's point there."""
        writer = tensorboard(trainer)
        if writer is None or trainer.global_step == 0:
            return
        learned_nll = split_nlls(
            pl_module.table_logits().detach().double().log_softmax(dim=1).cpu(), self.counts
        )
        self._write_comparison(writer, pl_module, trainer.global_step, learned_nll)
        writer.flush()

    def on_validation_end(self, trainer: L.Trainer, pl_module: LearnedLMModule) -> None:
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
        if self.snapshots is None or step in self.snapshots:
            self._snapshot(writer, pl_module, step, final=step >= trainer.max_steps)
        writer.flush()

    def _write_comparison(
        self,
        writer: SummaryWriter,
        pl_module: LearnedLMModule,
        step: int,
        learned_nll: dict[str, float],
    ) -> None:
        compared = compare(pl_module.table_logits(), self.train_counts, self.counted, learned_nll)
        add_scalars(writer, comparison_scalars(learned_nll, compared), step)
        self._record(step, learned_nll)

    def _snapshot(
        self, writer: SummaryWriter, pl_module: LearnedLMModule, step: int, final: bool
    ) -> None:
        # One (C, V) or (R, V) float64 at a time: these are the run's largest tensors but W.
        P_table = pl_module.table_logits().detach().double().softmax(dim=1)
        P_W = self._marginal(P_table)
        writer.add_histogram("entropy/learned", row_entropy(P_table), step)
        del P_table
        writer.add_histogram("entropy/counted", self.counted_entropy, step)
        writer.add_histogram("weights/W", pl_module.W.detach().double(), step)
        # TensorBoard's own text summary keeps the tag as is (add_text would append /text_summary).
        writer.file_writer.add_summary(text_pb("samples", self._samples(pl_module)), step)
        # The last step's carry every cell's value (the files in figures/ are these).
        pngs = {
            name: frames.png(matrix, annotate=final)
            for name, frames, matrix in self._frames(P_W, final)
        }
        for name, png in pngs.items():
            add_png(writer, f"compare/{name}", png, step)
        if final and self.figures_dir is not None:
            self._save_figures(pngs)

    def _frames(
        self, P_W: torch.Tensor, final: bool
    ) -> list[tuple[str, HeatmapFrames, torch.Tensor]]:
        """The heatmaps of a snapshot, each a frame drawn once and recoloured, on the scales of
        `on_fit_start`; the last step's difference on its own largest value (rounded up to 1, 2 or
        5 × 10^k percent), as by then it is a small fraction of the first."""
        diff = P_W - self.mle
        diff_top = self.diff_top
        if final:
            diff_top = nice_ceiling(max(float(diff.abs().max()) * 100, 1e-6))
        titles = heatmap_titles(self.data.context)
        learned = HeatmapFrames.of(self.itos, titles["learned"], False, self.learned_top)
        differences = HeatmapFrames.of(self.itos, titles["diff"], True, diff_top)
        return [("heatmap_learned", learned, P_W), ("heatmap_diff", differences, diff)]

    def _marginal(self, probs: torch.Tensor) -> torch.Tensor:
        return bigram_marginal(probs, self.contexts, self.weights, self.data.context)

    def _samples(self, pl_module: LearnedLMModule) -> str:
        """The same generator seed for both models: where they agree, they draw the same words."""
        words = [
            sample_words(
                model,
                self.itos,
                self.n_samples,
                torch.Generator().manual_seed(self.sample_seed),
                SAMPLE_MAX_LENGTH,
                self.data.context,
            )
            for model in (self.counted, pl_module.lm)
        ]
        return markdown_samples(*words)

    def _record(self, step: int, learned_nll: dict[str, float]) -> None:
        if self.history_steps and self.history_steps[-1] == step:
            return
        self.history_steps.append(step)
        for split, value in learned_nll.items():
            self.history.setdefault(split, []).append(value)

    def _counted_png(self) -> bytes:
        """The MLE's heatmap: it does not change during training."""
        probs = self.mle.double().cpu().numpy().tobytes()
        return counted_heatmap_png(
            self.itos, probs, self.learned_top, heatmap_titles(self.data.context)["counted"]
        )

    def _save_figures(self, pngs: dict[str, bytes]) -> None:
        """The final heatmaps, the MLE's and the NLL curves as PNG files in `figures_dir`."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        everything = {
            "heatmap_counted": self._counted_png(),
            **pngs,
            "nll_curves": render(nll_curves(self.history_steps, self.history, self.counted.nll)),
        }
        for name, png in everything.items():
            (self.figures_dir / f"{name}.png").write_bytes(png)
