"""Matplotlib figures of bigram models: the makemore count grid as a heatmap, and NLL curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

CELL_TEXT_MAX_V = 30


def render(figure: Figure) -> np.ndarray:
    """The figure as an image, (H, W, 3) uint8: drawn once, for TensorBoard and a PNG file alike."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def heatmap(
    matrix: Tensor, itos: str, title: str, diverging: bool = False, annotate: bool = True
) -> Figure:
    """A (V, V) matrix with the characters on both axes (row: current, column: next character).

    Probabilities are shown in percent; with `annotate` and V ≤ 30 every cell carries its value,
    like the lecture's count grid (drawing the V² labels is most of a figure's cost: about 0.6 s
    against 0.2 s without). `diverging` centres a red-blue colour map on 0, for differences.
    """
    values = matrix.detach().double().cpu().numpy() * 100
    V = values.shape[0]
    fig = Figure(figsize=(2.0 + 0.32 * V, 1.2 + 0.3 * V), dpi=80, layout="constrained")
    ax = fig.add_subplot()
    if diverging:
        limit = max(float(np.abs(values).max()), 1e-9)
        image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        image = ax.imshow(values, cmap="Blues", vmin=0)
    labels = [repr(ch)[1:-1] for ch in itos]
    ax.set_xticks(range(V), labels)
    ax.set_yticks(range(V), labels)
    ax.set_xlabel("next character")
    ax.set_ylabel("character")
    ax.set_title(title)
    if annotate and V <= CELL_TEXT_MAX_V:
        # Small differences need a decimal to be readable; probabilities in percent do not.
        fmt = ".1f" if diverging and image.norm.vmax < 10 else ".0f"
        threshold = 0.6 * max(abs(image.norm.vmin), abs(image.norm.vmax))
        for i in range(V):
            for j in range(V):
                value = values[i, j]
                # in_layout=False: the layout engine need not measure V² labels inside the axes
                colour = "white" if abs(value) > threshold else "black"
                ax.text(j, i, f"{value:{fmt}}", ha="center", va="center", fontsize=6,
                        color=colour, in_layout=False)  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8, label="percent")
    return fig


def nll_curves(
    steps: Sequence[int], learned: Mapping[str, Sequence[float]], mle: Mapping[str, float]
) -> Figure:
    """Learned NLL per split against steps, each beside its MLE level as a dashed line."""
    fig = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    ax, gap_ax = fig.subplots(1, 2)
    for index, (split, values) in enumerate(learned.items()):
        colour = f"C{index}"
        split_steps = steps[-len(values) :]
        ax.plot(split_steps, values, color=colour, label=f"learned, {split}")
        if split in mle:
            ax.axhline(mle[split], color=colour, linestyle="--", label=f"MLE, {split}")
            # Skip the starting point: it would flatten the part worth seeing.
            gap_ax.plot(split_steps[1:], [v - mle[split] for v in values[1:]], color=colour,
                        label=split)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("NLL per bigram (nats)")
    ax.set_title("Learned model and the counted MLE")
    ax.legend()
    gap_ax.axhline(0.0, color="black", linewidth=0.8)
    gap_ax.set_xlabel("step")
    gap_ax.set_ylabel("learned NLL − MLE NLL (nats)")
    gap_ax.set_title("Gap to the MLE")
    gap_ax.legend()
    for a in (ax, gap_ax):
        a.grid(alpha=0.3)
    return fig
