"""Matplotlib figures of bigram models: the makemore count grid as a heatmap, and NLL curves."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D
from torch import Tensor

CELL_TEXT_MAX_V = 30
CELL_INCHES = 0.3  # one cell of the grid
DPI = 80


def render(figure: Figure) -> bytes:
    """The figure drawn once and encoded as PNG (RGBA): the same bytes go to TensorBoard and to a
    file. zlib level 3: a tenth larger than the default level 6 and a third faster to encode."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer, pil_kwargs={"compress_level": 3})
    return buffer.getvalue()


def heatmap(
    matrix: Tensor, itos: str, title: str, diverging: bool = False, annotate: bool = True
) -> Figure:
    """A (V, V) matrix with the characters on both axes (row: current, column: next character).

    Probabilities are shown in percent; with `annotate` and V ≤ 30 every cell carries its value,
    like the lecture's count grid. `diverging` centres a red-blue colour map on 0, for differences.
    """
    values = matrix.detach().double().cpu().numpy() * 100
    V = values.shape[0]
    # Margins fixed in inches rather than a layout engine, which measures every label again at
    # each draw (half the cost of the figure with tick labels).
    left, right, bottom, top, bar = 0.75, 1.15, 0.6, 0.4, 0.18
    grid = max(CELL_INCHES * V, 3.0)  # room for the title when V is small
    width, height = left + grid + right, bottom + grid + top
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((left / width, bottom / height, grid / width, grid / height))
    colorbar_ax = fig.add_axes(
        (
            (left + grid + 0.3) / width,
            (bottom + 0.1 * grid) / height,
            bar / width,
            0.8 * grid / height,
        )
    )
    if diverging:
        limit = max(float(np.abs(values).max()), 1e-9)
        image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        image = ax.imshow(values, cmap="Blues", vmin=0)
    # The characters are drawn like the cell values below, not as V tick labels on each axis:
    # matplotlib makes five artists a tick, about a quarter of the figure's cost at V = 27.
    ax.set_xticks([])
    ax.set_yticks([])
    names = ["␣" if ch == " " else repr(ch)[1:-1] for ch in itos]  # escapes: \n, \t, \x00
    positions = np.arange(V)
    ax.add_collection(text_paths(names, np.column_stack([positions, np.full(V, V - 0.5)]), ax, 10,
                                 align="top", shift=(0, -4)))  # fmt: skip
    row_names = text_paths(names, np.column_stack([np.full(V, -0.5), positions]), ax, 10,
                           align="right", shift=(-4, 0))  # fmt: skip
    ax.add_collection(row_names)
    # Clear of the widest row name (\x00 is four characters): its outline's left end, in points.
    widest = -min((p.vertices[:, 0].min() for p in row_names.get_paths() if len(p)), default=0)
    ax.set_xlabel("next character", labelpad=18)
    ax.set_ylabel("character", labelpad=widest + 2)
    ax.set_title(title)
    if annotate and V <= CELL_TEXT_MAX_V:
        # Small differences need a decimal to be readable; probabilities in percent do not.
        fmt = ".1f" if diverging and image.norm.vmax < 10 else ".0f"
        threshold = 0.6 * max(abs(image.norm.vmin), abs(image.norm.vmax))
        dark = (np.abs(values) > threshold).ravel()
        rows, cols = np.divmod(np.arange(V * V), V)
        labels = [f"{v:{fmt}}" for v in values.ravel()]
        ax.add_collection(text_paths(labels, np.column_stack([cols, rows]), ax, 6,
                                     colours=np.where(dark, "white", "black")))  # fmt: skip
    fig.colorbar(image, cax=colorbar_ax, label="percent")
    return fig


def text_paths(
    labels: list[str],
    offsets: np.ndarray,
    ax: Axes,
    size: float,
    align: str = "center",
    shift: tuple[float, float] = (0, 0),
    colours: np.ndarray | str = "black",
) -> PathCollection:
    """Labels as one collection of glyph outlines at `offsets` (data coordinates, (n, 2)).

    One collection is drawn in one call; as n text artists each costs ~0.5 ms to lay out and draw
    (0.4 s for the 27 × 27 cell values). Every label is centred on the middle of a digit's height
    (so all share a baseline), horizontally centred or (`align="right"`) ending at its offset, or
    (`align="top"`) centred below it; `shift` moves them by points.
    """
    font = FontProperties(size=size)

    def ink(path: Path) -> np.ndarray:  # the outline's points; CLOSEPOLY's vertex is a dummy
        return path.vertices[path.codes != Path.CLOSEPOLY]

    digit = ink(TextPath((0, 0), "0", prop=font))[:, 1]
    dy = -(digit.min() + digit.max()) / 2 if align != "top" else -digit.max()
    outlines: dict[str, Path] = {}
    for label in set(labels):
        if not label.strip():  # a space (a character of some corpora): TextPath fails on blanks
            outlines[label] = Path(np.zeros((0, 2)))
            continue
        path = TextPath((0, 0), label, prop=font)
        xs = ink(path)[:, 0]
        if len(xs) == 0:  # a glyph with no outline, e.g. a zero-width character
            xs = np.zeros(1)
        dx = -xs.max() if align == "right" else -(xs.min() + xs.max()) / 2
        outlines[label] = path.transformed(Affine2D().translate(dx + shift[0], dy + shift[1]))
    return PathCollection(
        [outlines[label] for label in labels],
        offsets=offsets,
        offset_transform=ax.transData,
        transform=Affine2D().scale(1 / 72) + ax.figure.dpi_scale_trans,  # outlines are in points
        facecolors=colours,
        edgecolors="none",
        clip_on=False,
        snap=False,  # snapping to whole pixels can thin a stem like i or l to nothing
    )


def nll_curves(
    steps: Sequence[int], learned: Mapping[str, Sequence[float]], mle: Mapping[str, float]
) -> Figure:
    """Learned NLL per split against steps, each beside its MLE level as a dashed line."""
    fig = Figure(figsize=(11, 4.5), dpi=100)
    ax, gap_ax = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.25)
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
