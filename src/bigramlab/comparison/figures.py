"""Matplotlib figures of bigram models: the makemore count grid as a heatmap, and NLL curves."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font, LoadFlags
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D
from PIL import Image
from torch import Tensor

CELL_TEXT_MAX_V = 30
CELL_TEXT_POINTS = 6  # the size of a cell's value
CELL_INCHES = 0.3  # one cell of the grid, up to...
GRID_MAX_INCHES = 16.0  # ...a grid of 1280 pixels: a large vocabulary gets smaller cells
NAME_MIN_POINTS = 4.0  # characters smaller than this are not drawn on the axes
DPI = 80


@functools.lru_cache(maxsize=8)
def fonts_for(chars: str) -> tuple[tuple[str, ...], str]:
    """(font families that together draw `chars`, the characters none of this system's fonts has).

    The default font (DejaVu Sans) first; for characters it lacks (CJK, say), the first installed
    fonts that have them, in matplotlib's font list order. Characters without a glyph anywhere
    would be drawn as empty boxes: the figure names them instead.
    """
    default = font_manager.findfont(FontProperties())
    families = [FontProperties(fname=default).get_name()]
    printable = {ch for ch in chars if ch.isprintable() and not ch.isspace()}
    missing = {ch for ch in printable if ord(ch) not in FT2Font(default).get_charmap()}
    seen = {default}
    for entry in font_manager.fontManager.ttflist:
        if not missing:
            break
        # matplotlib's own Last Resort font maps every code point to a box: no glyph at all.
        if entry.fname in seen or entry.name.startswith("Last Resort"):
            continue
        seen.add(entry.fname)
        try:
            charmap = FT2Font(entry.fname).get_charmap()
        except (OSError, RuntimeError):
            continue
        if covered := {ch for ch in missing if ord(ch) in charmap}:
            families.append(entry.name)
            missing -= covered
    return tuple(families), "".join(sorted(missing))


def heatmap(
    matrix: Tensor,
    itos: str,
    title: str,
    diverging: bool = False,
    annotate: bool = True,
    scale: float | None = None,
) -> Figure:
    """A (V, V) matrix with the characters on both axes (row: current, column: next character).

    Probabilities are shown in percent; with `annotate` and V ≤ 30 every cell carries its value,
    like the lecture's count grid. `diverging` centres a red-blue colour map on 0, for differences.
    `scale`: the top of the colour scale in percent (±scale if diverging); None: the largest value.
    The grid is at most 16 inches wide: past V ≈ 230 (a corpus of many scripts, or of Chinese) the
    characters are too small to draw and the axes say V instead.
    """
    values = matrix.detach().double().cpu().numpy() * 100
    V = values.shape[0]
    grid = min(max(CELL_INCHES * V, 3.0), GRID_MAX_INCHES)  # 3: room for the title at small V
    cell_points = grid * 72 / V
    name_points = min(10.0, 0.8 * cell_points)
    # The characters are drawn like the cell values, as glyph outlines, not as V tick labels on
    # each axis: matplotlib makes five artists a tick, about a quarter of the figure's cost.
    row_names: list[Path] = []
    column_names: list[Path] = []
    row_band = column_band = 0.0  # points the names take beside and below the grid
    families, undrawable = fonts_for(itos)
    if name_points >= NAME_MIN_POINTS:
        names = ["␣" if ch == " " else repr(ch)[1:-1] for ch in itos]  # escapes: \n, \t, \x00
        row_names = outlines(names, name_points, align="right", shift=(-4, 0), family=families)
        row_band = -min((p.vertices[:, 0].min() for p in row_names if len(p)), default=0)
        upright = row_band - 4 > cell_points  # names wider than a column read up to the grid
        column_names = outlines(
            names,
            name_points,
            align="right" if upright else "top",
            rotation=90 if upright else 0,
            shift=(0, -4),
            family=families,
        )
        column_band = row_band if upright else 1.3 * name_points + 4
    # Margins fixed in inches rather than a layout engine, which measures every label again at
    # each draw (half the cost of the figure with tick labels); 20 points for an axis label.
    note = 12 if row_names and undrawable else 0  # a line naming the characters without a font
    left, bottom = (row_band + 24) / 72, (column_band + 24 + note) / 72
    # Right: the colour bar, its widest tick labels (−0.05) and its label; top: the title's lines.
    right, top, bar = 1.5, 0.25 + 0.2 * (title.count("\n") + 1), 0.18
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
        limit = scale if scale is not None else max(float(np.abs(values).max()), 1e-9)
        image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=scale)
    ax.set_xticks([])
    ax.set_yticks([])
    positions = np.arange(V)
    if row_names:
        ax.add_collection(glyphs(row_names, np.column_stack([np.full(V, -0.5), positions]), ax))
        ax.add_collection(
            glyphs(column_names, np.column_stack([positions, np.full(V, V - 0.5)]), ax)
        )
        ax.set_xlabel("next character", labelpad=column_band + 2)
        ax.set_ylabel("character", labelpad=row_band + 2)
    else:
        ax.set_xlabel(f"next character (V = {V}, in the vocabulary's order)")
        ax.set_ylabel("character")
    ax.set_title(title)
    if row_names and undrawable:
        shown = undrawable if len(undrawable) <= 20 else undrawable[:20] + "…"
        escaped = ", ".join(f"U+{ord(ch):04X}" for ch in shown[:20])
        fig.text(
            0.01,
            0.01,
            f"drawn as boxes, no installed font has them: {escaped}",
            fontsize=7,
            va="bottom",
        )
    if annotate and V <= CELL_TEXT_MAX_V:
        # Small differences need a decimal to be readable; probabilities in percent do not.
        fmt = ".1f" if diverging and image.norm.vmax < 10 else ".0f"
        threshold = 0.6 * max(abs(image.norm.vmin), abs(image.norm.vmax))
        dark = (np.abs(values) > threshold).ravel()
        rows, cols = np.divmod(np.arange(V * V), V)
        cell_values = outlines([cell_text(v, fmt) for v in values.ravel()], CELL_TEXT_POINTS)
        ax.add_collection(
            glyphs(
                cell_values,
                np.column_stack([cols, rows]),
                ax,
                colours=np.where(dark, "white", "black"),
            )
        )
    fig.colorbar(image, cax=colorbar_ax, label="percent")
    return fig


def cell_text(value: float, fmt: str) -> str:
    """A cell's value as written on it: a value that rounds to zero is `0`, never `-0`."""
    text = f"{value:{fmt}}"
    return text.lstrip("-") if float(text) == 0 else text


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above `value` (> 0): a colour scale's top."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value * (1 - 1e-12))


class HeatmapFrames:
    """One heatmap drawn by matplotlib once, then only its cells recoloured: the frames of
    TensorBoard's image slider, on one fixed colour scale so that they compare.

    The frame (title, names, colour bar) is `heatmap(..., annotate=False, scale=scale)` drawn to
    pixels; `png(matrix)` paints each cell's pixels in the colour the colour map gives its value
    (clipped to the scale) and encodes the image, without drawing anything again. The frame
    depends only on the arguments: `HeatmapFrames.of` keeps the frames drawn in this process, for
    the jobs of a sweep.
    """

    def __init__(self, itos: str, title: str, diverging: bool = False, scale: float = 1.0) -> None:
        V = len(itos)
        fig = heatmap(
            torch.zeros(V, V), itos, title, diverging=diverging, annotate=False, scale=scale
        )
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        self.frame = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (height, width, 3)
        ax = fig.axes[0]
        image = ax.images[0]
        self.colour_map, self.norm = image.cmap, image.norm
        # The image's corners in pixels (matplotlib's y axis points up, the array's down).
        (left, bottom), (right, top) = ax.transData.transform([(-0.5, V - 0.5), (V - 0.5, -0.5)])
        height = self.frame.shape[0]
        self.x = slice(round(left), round(right))
        self.y = slice(round(height - top), round(height - bottom))
        # For each pixel of the image, the cell it shows: (pixel rows,) and (pixel columns,).
        self.cell_rows = np.arange(self.y.stop - self.y.start) * V // (self.y.stop - self.y.start)
        self.cell_cols = np.arange(self.x.stop - self.x.start) * V // (self.x.stop - self.x.start)

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def of(itos: str, title: str, diverging: bool = False, scale: float = 1.0) -> HeatmapFrames:
        return HeatmapFrames(itos, title, diverging, scale)

    def png(self, matrix: Tensor, annotate: bool = False) -> bytes:
        """The frame with the cells of `matrix` ((V, V), probabilities) as PNG (RGB); with
        `annotate` and V ≤ 30, every cell's value written on it as `heatmap` writes it."""
        values = matrix.detach().double().cpu().numpy() * 100
        colours = self.colour_map(self.norm(values), bytes=True)[..., :3]  # (V, V, 3) uint8
        pixels = self.frame.copy()
        cells = pixels[self.y, self.x]
        cells[...] = colours[self.cell_rows][:, self.cell_cols]
        # The axes' outline, painted over by the cells: drawn again as a one-pixel black line.
        cells[[0, -1], :] = 0
        cells[:, [0, -1]] = 0
        if annotate and len(values) <= CELL_TEXT_MAX_V:
            self._write_values(cells, values)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def _write_values(self, cells: np.ndarray, values: np.ndarray) -> None:
        """Each value in the middle of its cell, in the format and colours of `heatmap`'s: white
        on dark cells; the ink (the digits' height) centred on the cell's middle."""
        V = len(values)
        top = max(abs(self.norm.vmin), abs(self.norm.vmax))
        fmt = ".1f" if self.norm.vmin < 0 and self.norm.vmax < 10 else ".0f"
        height, width = cells.shape[:2]
        for (row, col), value in np.ndenumerate(values):
            alpha, ink_middle = _text_bitmap(cell_text(value, fmt))
            h, w = alpha.shape
            y0 = round((row + 0.5) * height / V - ink_middle)
            x0 = round((col + 0.5) * width / V - w / 2)
            if y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
                continue  # wider than its cell at the grid's edge: left out, as not readable
            ink = 255.0 if abs(value) > 0.6 * top else 0.0
            patch = cells[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
            patch += (ink - patch) * alpha[..., None]
            cells[y0 : y0 + h, x0 : x0 + w] = patch.round().astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _cell_font() -> FT2Font:
    font = FT2Font(font_manager.findfont(FontProperties()))
    font.set_size(CELL_TEXT_POINTS, DPI)
    return font


@functools.lru_cache(maxsize=4096)
def _text_bitmap(text: str) -> tuple[np.ndarray, float]:
    """`text` in the cells' font, rendered by FreeType (as matplotlib renders text): (coverage
    (h, w) in [0, 1], the middle of its ink's rows, in pixels from the top)."""
    font = _cell_font()
    # Unhinted: hinting at this size rounds each digit's advance down a pixel, and digits touch.
    font.set_text(text, 0.0, flags=LoadFlags.NO_HINTING)
    font.draw_glyphs_to_bitmap(antialiased=True)
    alpha = np.asarray(font.get_image(), dtype=np.float32) / 255
    inked = np.flatnonzero(alpha.max(axis=1) > 0.25)
    middle = (inked[0] + inked[-1] + 1) / 2 if len(inked) else alpha.shape[0] / 2
    return alpha, float(middle)


def outlines(
    labels: list[str],
    size: float,
    align: str = "center",
    rotation: float = 0,
    shift: tuple[float, float] = (0, 0),
    family: Sequence[str] | None = None,
) -> list[Path]:
    """The glyph outlines of each label, in points about the point the label is placed at.

    Every label is centred on the middle of a digit's height (so all share a baseline),
    horizontally centred or (`align="right"`) ending at that point, or (`align="top"`) centred
    below it; then turned by `rotation` degrees about the point and moved by `shift` points. Each
    distinct label is laid out once, and a run's heatmaps share the layout of their names.
    `family`: fonts to draw with, the first that has a glyph drawing it (matplotlib's default font
    if None).
    """
    placed = _placed(frozenset(labels), size, align, rotation, shift, tuple(family or ()))
    return [placed[label] for label in labels]


@functools.lru_cache(maxsize=16)
def _placed(
    labels: frozenset[str],
    size: float,
    align: str,
    rotation: float,
    shift: tuple[float, float],
    family: tuple[str, ...],
) -> dict[str, Path]:
    font = FontProperties(size=size, family=list(family) if family else None)

    def ink(path: Path) -> np.ndarray:  # the outline's points; CLOSEPOLY's vertex is a dummy
        return path.vertices[path.codes != Path.CLOSEPOLY]

    digit = ink(TextPath((0, 0), "0", prop=font))[:, 1]
    dy = -(digit.min() + digit.max()) / 2 if align != "top" else -digit.max()
    placed: dict[str, Path] = {}
    for label in labels:
        if not label.strip():  # TextPath fails on blanks: they are drawn as nothing
            placed[label] = Path(np.zeros((0, 2)))
            continue
        path = TextPath((0, 0), label, prop=font)
        xs = ink(path)[:, 0]
        if len(xs) == 0:  # a glyph with no outline, e.g. a zero-width character
            xs = np.zeros(1)
        dx = -xs.max() if align == "right" else -(xs.min() + xs.max()) / 2
        placed[label] = path.transformed(
            Affine2D().translate(dx, dy).rotate_deg(rotation).translate(*shift)
        )
    return placed


def glyphs(
    paths: list[Path], offsets: np.ndarray, ax: Axes, colours: np.ndarray | str = "black"
) -> PathCollection:
    """Outlines (in points, from `outlines`) drawn at `offsets` ((n, 2), data coordinates).

    One collection is drawn in one call, where n text artists would each be laid out and drawn on
    their own (docs/benchmark.md gives what a figure costs).
    """
    return PathCollection(
        paths,
        offsets=offsets,
        offset_transform=ax.transData,
        transform=Affine2D().scale(1 / 72) + ax.figure.dpi_scale_trans,
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
            gap_ax.plot(
                split_steps[1:], [v - mle[split] for v in values[1:]], color=colour, label=split
            )
    ax.set_xlabel("step")
    ax.set_ylabel("NLL per bigram (nats)")
    ax.set_title("Learned model and the counted MLE")
    ax.legend(loc="upper right")  # a fixed place: "best" searches every position
    gap_ax.axhline(0.0, color="black", linewidth=0.8)
    gap_ax.set_xlabel("step")
    gap_ax.set_ylabel("learned NLL − MLE NLL (nats)")
    gap_ax.set_title("Gap to the MLE")
    gap_ax.legend(loc="upper right")
    for a in (ax, gap_ax):
        a.grid(alpha=0.3)
    return fig
