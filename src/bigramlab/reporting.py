"""TensorBoard reporting: the counted model (MLE) beside the learned one, at every validation.

Everything is written with TensorBoard's own SummaryWriter at `trainer.global_step`, the number of
gradient updates so far, so that a validation point and the training loss logged at the same step
describe the same W. Tags:

    loss/total, loss/nll, loss/reg  every training step
    nll/<split>         learned model, data NLL of the whole split (torchmetrics, no reg term)
    mle/nll_<split>     counted model P = (N_train + α) / row sums
    ppl/val, mle/ppl_val            exp of the NLL
    compare/gap_val     nll/val − mle/nll_val
    compare/kl_train    Σ_x p̂(x) KL(P̂(·|x) ‖ P_W(·|x)), P̂ the unsmoothed train MLE
                        = nll/train − NLL_train(MLE, α=0): the part of the NLL training can remove
    compare/tv_train    Σ_x p̂(x) TV(P_mle(·|x), P_W(·|x));  compare/max_abs_diff  max |P_mle − P_W|
    compare/heatmap_{mle,learned,diff}, samples (text), weights/W and entropy/* (histograms)
    hp/{val_nll,mle_val_nll,gap_val,train_nll}   the metrics of the HParams dashboard
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.text.summary_v2 import text_pb
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from bigramlab.counting import kl_to_mle, max_abs_diff, mle_probs, nll, row_entropy, tv_distance
from bigramlab.data import SPLITS, BigramDataModule
from bigramlab.figures import heatmap, nll_curves, render
from bigramlab.model import BigramLM, sample_words

SAMPLE_MAX_LENGTH = 40  # characters of a sampled word shown in the samples table
HP_METRICS = ("hp/val_nll", "hp/mle_val_nll", "hp/gap_val", "hp/train_nll")


def custom_scalars_layout() -> dict[str, dict[str, list[Any]]]:
    """TensorBoard's Custom Scalars tab: per split, learned and MLE NLL on one chart; the gap."""
    charts: dict[str, list[Any]] = {
        f"NLL {split}: learned vs MLE": ["Multiline", [f"^nll/{split}$", f"^mle/nll_{split}$"]]
        for split in SPLITS
    }
    charts["gap on val: learned − MLE"] = ["Multiline", ["^compare/gap_val$"]]
    charts["KL(MLE ‖ learned) on train"] = ["Multiline", ["^compare/kl_train$"]]
    return {"bigramlab": charts}


def markdown_samples(mle_words: list[str], learned_words: list[str]) -> str:
    """A Markdown table of words from both models, side by side."""
    rows = ["| # | MLE (counted) | learned |", "|---|---|---|"]
    for i, (a, b) in enumerate(zip(mle_words, learned_words), start=1):
        rows.append(f"| {i} | `{a or '(empty)'}` | `{b or '(empty)'}` |")
    return "\n".join(rows)


class ComparisonReport(L.Callback):
    """Logs the learned model against the counted MLE at the start and at each validation.

    alpha: the MLE's additive smoothing. n_samples: words sampled from each model per validation.
    figures_every_n_steps: heatmaps of the learned model at the end of training, and with N > 0 also
    at step 0 and every multiple of N (None: at every validation); each takes ~0.1 s to draw. The
    MLE's heatmap is drawn once, at the start. hparams: the run's flattened config for the HParams
    dashboard. figures_dir: where the final figures are saved as PNG.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        n_samples: int = 10,
        sample_seed: int = 0,
        figures_every_n_steps: int | None = 0,
        hparams: dict[str, Any] | None = None,
        figures_dir: str | None = None,
    ) -> None:
        self.alpha = alpha
        self.n_samples = n_samples
        self.sample_seed = sample_seed
        self.figures_every_n_steps = figures_every_n_steps
        self.hparams = {k: "null" if v is None else v for k, v in dict(hparams or {}).items()}
        self.figures_dir = Path(figures_dir) if figures_dir else None
        self.history: dict[str, list[float]] = {}
        self.mle_png: bytes | None = None
        self.history_steps: list[int] = []
        self.pending_losses: list[tuple[int, Tensor]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        datamodule: BigramDataModule = trainer.datamodule
        self.itos = datamodule.vocab.itos
        mle = mle_probs(datamodule.counts["train"], self.alpha)
        log_mle = mle.log()
        # The MLE does not change during training: its NLLs are computed once (on the host, where
        # the data module's counts are), and logged beside every validation.
        self.mle_nll = {
            split: value
            for split, counts in datamodule.counts.items()
            if (value := nll(log_mle, counts)) is not None
        }
        # Compared with the learned model's P_W where W is.
        self.mle = mle.to(pl_module.device)
        self.train_counts = datamodule.counts["train"].to(pl_module.device)
        writer = _writer(trainer)
        if writer is None or trainer.global_step > 0:  # a resumed run has all this already
            return
        writer.add_custom_scalars(custom_scalars_layout())
        experiment, session_start, _ = hparams_summary(self.hparams, dict.fromkeys(HP_METRICS, 0.0))
        file_writer = writer._get_file_writer()
        file_writer.add_summary(experiment)
        file_writer.add_summary(session_start)
        _add_png(writer, "compare/heatmap_mle", self._mle_png(), 0)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: BigramLM, outputs: dict[str, Tensor], batch, batch_idx
    ) -> None:
        """loss/total, loss/nll, loss/reg of every step, at the step whose W they are the loss of
        (the update has already happened: global_step counts it). They wait on the device and are
        written every `trainer.log_every_n_steps` steps: reading them back is a host sync."""
        if not trainer.is_global_zero:
            return
        losses = torch.stack([outputs["total"], outputs["nll"], outputs["reg"]])
        self.pending_losses.append((trainer.global_step - 1, losses))
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self._write_losses(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        self._write_losses(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: BigramLM, exception: BaseException):
        # A run that fails (diverges) in this process keeps the losses that led there.
        self._write_losses(trainer)

    def _write_losses(self, trainer: L.Trainer) -> None:
        if not self.pending_losses:  # before _writer: in a process that never trained (the main
            return  # one of ddp_fork), opening the writer would start a second event file
        writer = _writer(trainer)
        if writer is None:
            return
        values = torch.stack([v for _, v in self.pending_losses]).tolist()  # one host sync
        for (step, _), (total, nll_value, reg) in zip(self.pending_losses, values):
            writer.add_scalar("loss/total", total, step)
            writer.add_scalar("loss/nll", nll_value, step)
            writer.add_scalar("loss/reg", reg, step)
        self.pending_losses.clear()
        writer.flush()

    def on_validation_end(self, trainer: L.Trainer, pl_module: BigramLM) -> None:
        # The sanity check before training is the point at step 0 (Lightning skips it on resume).
        step = trainer.global_step
        writer = _writer(trainer)
        if writer is None:
            return
        self._write_losses(trainer)
        learned_nll = {s: float(v) for s, v in pl_module.split_nll_values.items()}
        W = pl_module.W.detach().double()
        P_W = W.softmax(dim=1)
        scalars = {f"nll/{s}": v for s, v in learned_nll.items()}
        scalars |= {f"mle/nll_{s}": v for s, v in self.mle_nll.items()}
        scalars["compare/kl_train"] = float(kl_to_mle(self.train_counts, W.log_softmax(dim=1)))
        scalars["compare/tv_train"] = float(tv_distance(self.train_counts, self.mle, P_W))
        scalars["compare/max_abs_diff"] = float(max_abs_diff(self.mle, P_W))
        if "val" in learned_nll:
            scalars["ppl/val"] = _exp(learned_nll["val"])
            scalars["mle/ppl_val"] = _exp(self.mle_nll["val"])
            scalars["compare/gap_val"] = learned_nll["val"] - self.mle_nll["val"]
            scalars["hp/val_nll"] = learned_nll["val"]
            scalars["hp/mle_val_nll"] = self.mle_nll["val"]
            scalars["hp/gap_val"] = scalars["compare/gap_val"]
        scalars["hp/train_nll"] = learned_nll["train"]
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)

        writer.add_histogram("weights/W", W, step)
        writer.add_histogram("entropy/learned", row_entropy(P_W), step)
        writer.add_histogram("entropy/mle", row_entropy(self.mle), step)
        # TensorBoard's own text summary keeps the tag as is (add_text would append /text_summary).
        writer._get_file_writer().add_summary(text_pb("samples", self._samples(P_W)), step)

        self._record(step, learned_nll)
        final = step >= trainer.max_steps
        every = self.figures_every_n_steps
        if final or every is None or (every > 0 and step % every == 0):
            # Cell values on the final figures only (also saved as PNG): hundreds of numbers would
            # not be read on the figures in between.
            learned = heatmap(P_W, self.itos, "learned P_W = softmax(W)", annotate=final)
            diff = heatmap(P_W - self.mle, self.itos, "P_W − P_MLE", diverging=True, annotate=final)
            pngs = {"heatmap_learned": render(learned), "heatmap_diff": render(diff)}
            for name, png in pngs.items():
                _add_png(writer, f"compare/{name}", png, step)
            if final and self.figures_dir is not None:
                self._save_figures(pngs)
        writer.flush()

    def _samples(self, P_W: Tensor) -> str:
        """The same generator seed for both models: where they agree, they draw the same words."""
        words = [
            sample_words(
                P.cpu(),
                self.itos,
                self.n_samples,
                torch.Generator().manual_seed(seed),
                max_length=SAMPLE_MAX_LENGTH,
            )
            for P, seed in ((self.mle, self.sample_seed), (P_W, self.sample_seed))
        ]
        return markdown_samples(*words)

    def _record(self, step: int, learned_nll: dict[str, float]) -> None:
        if self.history_steps and self.history_steps[-1] == step:
            return
        self.history_steps.append(step)
        for split, value in learned_nll.items():
            self.history.setdefault(split, []).append(value)

    def _mle_png(self) -> bytes:
        """The MLE's heatmap, drawn once: it does not change during training."""
        if self.mle_png is None:
            self.mle_png = render(heatmap(self.mle, self.itos, "MLE P"))
        return self.mle_png

    def _save_figures(self, pngs: dict[str, bytes]) -> None:
        """The final heatmaps, the MLE's and the NLL curves as PNG files in `figures_dir`."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        everything = {
            "heatmap_mle": self._mle_png(),
            **pngs,
            "nll_curves": render(nll_curves(self.history_steps, self.history, self.mle_nll)),
        }
        for name, png in everything.items():
            (self.figures_dir / f"{name}.png").write_bytes(png)


def _add_png(writer: SummaryWriter, tag: str, png: bytes, step: int) -> None:
    """An image summary of the PNG as it is (`add_image` takes pixels and would encode again)."""
    width, height = Image.open(io.BytesIO(png)).size  # reads the header only
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    writer._get_file_writer().add_summary(
        Summary(value=[Summary.Value(tag=tag, image=image)]), step
    )


def _exp(x: float) -> float:
    """exp(x), inf where it overflows (an NLL of an unseen bigram, or of a blown-up model)."""
    return math.exp(x) if x < 700 else math.inf


def _writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The TensorBoard writer of rank 0, or None (other ranks, or no TensorBoard logger)."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            return logger.experiment
    return None
