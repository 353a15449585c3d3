"""The heatmaps' text: every cell value and every character drawn, centred, for any vocabulary."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from PIL import Image

from bigramlab.comparison.figures import (
    CELL_TEXT_MAX_V,
    GRID_MAX_INCHES,
    HeatmapFrames,
    cell_text,
    fonts_for,
    heatmap,
    nice_ceiling,
    nll_curves,
    outlines,
)
from bigramlab.training.comparison import heatmap_titles
from bigramlab.writers.tensorboard import render


def text_collections(fig) -> list[PathCollection]:
    return [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]


@pytest.mark.parametrize("itos", [".abc", ".\x00\n\t é😀xyz"])
def test_every_cell_value_and_character_is_drawn(itos: str) -> None:
    V = len(itos)
    P = torch.rand(V, V, generator=torch.Generator().manual_seed(0)).softmax(1)
    fig = heatmap(P, itos, "learned P_W")
    rows, columns, cells = text_collections(fig)
    assert len(columns.get_paths()) == len(rows.get_paths()) == V
    # every character has an outline: a space is drawn as ␣, a missing glyph as a box
    assert all(len(p) > 0 for p in rows.get_paths())
    assert len(cells.get_paths()) == V * V
    for path in cells.get_paths():  # each value centred on its cell (outlines in points)
        xs = path.vertices[path.codes != path.CLOSEPOLY][:, 0]
        assert abs(xs.min() + xs.max()) < 1e-6
    png = render(fig)
    assert Image.open(io.BytesIO(png)).size[0] > 20 * V


def test_cell_values_read_like_the_matrix() -> None:
    P = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    diff = heatmap(P - 0.5, ".a", "P_W − P_counted", diverging=True)
    *_, cells = text_collections(diff)
    widths = [np.ptp(p.vertices[:, 0]) for p in cells.get_paths()]
    # "-25", "25", "50", "-50" (percent): the negative ones are wider by the minus sign
    assert widths[0] > widths[1] and widths[3] > widths[2]


def test_a_value_that_rounds_to_zero_is_written_without_a_sign() -> None:
    assert [cell_text(v, ".1f") for v in (-0.04, 0.04, -0.06, 0.0)] == ["0.0", "0.0", "-0.1", "0.0"]
    assert [cell_text(v, ".0f") for v in (-0.4, -0.6, 12.3)] == ["0", "-1", "12"]


@pytest.mark.parametrize("top", [0.05, 100.0])
def test_the_colour_bar_and_its_label_fit_in_the_figure(top: float) -> None:
    P = torch.full((4, 4), 0.25)
    fig = heatmap(P - 0.25, ".abc", "P_W − P_counted", diverging=True, scale=top)
    renderer = FigureCanvasAgg(fig).get_renderer()
    colour_bar = fig.axes[1]
    right = colour_bar.get_tightbbox(renderer).x1  # ticks, their labels and the axis label
    assert right <= fig.bbox.x1
    assert colour_bar.yaxis.label.get_text() == "percent"


def test_heatmap_titles_say_what_a_row_is_at_every_context_length() -> None:
    assert heatmap_titles(1)["learned"] == "learned P_W = softmax(W)"
    for name, title in heatmap_titles(3).items():
        assert "(k = 3), averaged over the\ncontexts that end in each character" in title, name
        assert "softmax(W)" not in title


def test_large_vocabularies_have_no_cell_values() -> None:
    V = CELL_TEXT_MAX_V + 1
    itos = "".join(chr(65 + i) for i in range(V))
    fig = heatmap(torch.full((V, V), 1 / V), itos, "counted P")
    assert len(text_collections(fig)) == 2  # the characters only
    Image.open(io.BytesIO(render(fig))).verify()


def test_nll_curves_render() -> None:
    fig = nll_curves(
        [0, 10, 20],
        {"train": [3.0, 2.6, 2.5], "val": [3.1, 2.7, 2.6]},
        {"train": 2.45, "val": 2.55},
    )
    Image.open(io.BytesIO(render(fig))).verify()


def test_blank_labels_are_drawn_as_nothing() -> None:
    assert [len(p) > 0 for p in outlines([" ", "a", ""], 10)] == [False, True, False]


def test_large_vocabularies_get_a_bounded_grid_and_upright_or_no_names() -> None:
    V = 100  # with names like \x80 wider than a column: upright
    itos = "".join(chr(33 + i) for i in range(V))
    fig = heatmap(torch.full((V, V), 1 / V), itos, "counted P")
    _, columns = text_collections(fig)
    width_of = [np.ptp(p.vertices[:, 0]) for p in columns.get_paths()]
    height_of = [np.ptp(p.vertices[:, 1]) for p in columns.get_paths()]
    assert height_of[-1] > width_of[-1]  # "\x84" reads upwards
    assert fig.get_size_inches()[0] < GRID_MAX_INCHES + 3
    V = 1000  # a corpus of Chinese: no names, and V on the axis
    itos = "".join(chr(0x4E00 + i) for i in range(V))
    fig = heatmap(torch.full((V, V), 1 / V), itos, "counted P")
    assert text_collections(fig) == [] and "V = 1000" in fig.axes[0].get_xlabel()
    assert max(fig.get_size_inches()) < GRID_MAX_INCHES + 3
    Image.open(io.BytesIO(render(fig))).verify()


def test_characters_the_default_font_lacks_are_drawn_with_another_or_named() -> None:
    itos = ".ab中"
    families, missing = fonts_for(itos)
    assert families[0] == "DejaVu Sans"
    fig = heatmap(torch.full((4, 4), 0.25), itos, "P")
    notes = [t.get_text() for t in fig.texts]
    if missing:  # no installed font has it (this development machine)
        assert missing == "中" and families == ("DejaVu Sans",)
        assert notes == ["drawn as boxes, no installed font has them: U+4E2D"]
    else:  # a CJK font is installed: it draws the character
        assert len(families) == 2 and notes == []
    assert fonts_for(".abc") == (("DejaVu Sans",), "")
    assert heatmap(torch.full((4, 4), 0.25), ".abc", "P").texts == []


@pytest.mark.parametrize(("V", "diverging"), [(5, False), (27, True), (60, False)])
def test_recoloured_frame_shows_what_matplotlib_draws(V: int, diverging: bool) -> None:
    g = torch.Generator().manual_seed(V)
    first, later = (torch.randn(V, V, generator=g).softmax(1) for _ in range(2))
    if diverging:
        first, later = first - 1 / V, later - 1 / V
    itos = "." + "".join(chr(ord("a") + i % 26) for i in range(V - 1))
    scale = float(first.abs().max()) * 100
    frames = HeatmapFrames(itos, "P", diverging=diverging, scale=scale)
    fast = np.asarray(Image.open(io.BytesIO(frames.png(later))).convert("RGB"), dtype=int)
    drawn = render(heatmap(later, itos, "P", diverging=diverging, annotate=False, scale=scale))
    slow = np.asarray(Image.open(io.BytesIO(drawn)).convert("RGB"), dtype=int)
    assert fast.shape == slow.shape
    # The same picture but at the cells' edges, where matplotlib resamples to whole pixels.
    same = (np.abs(fast - slow).max(axis=2) <= 3).mean()
    assert same > 0.97
    # ...and the cells are recoloured: `later` differs from `first` everywhere.
    first_png = np.asarray(Image.open(io.BytesIO(frames.png(first))).convert("RGB"), dtype=int)
    assert (np.abs(first_png - fast).max(axis=2) > 3).mean() > 0.2


def test_nice_ceiling_rounds_up_to_1_2_or_5() -> None:
    assert [nice_ceiling(v) for v in (0.7, 1.0, 1.3, 2.0, 4.9, 5.01, 85.0, 100.0, 3e-5)] == [
        pytest.approx(v) for v in (1.0, 1.0, 2.0, 2.0, 5.0, 10.0, 100.0, 100.0, 5e-5)
    ]


@pytest.mark.parametrize("diverging", [False, True])
def test_recoloured_frame_writes_the_values_matplotlib_writes(diverging: bool) -> None:
    V = 27
    g = torch.Generator().manual_seed(1)
    P = torch.randn(V, V, generator=g).mul(2).softmax(1)
    if diverging:
        P = P - torch.randn(V, V, generator=g).mul(2).softmax(1)
    itos = "." + "abcdefghijklmnopqrstuvwxyz"
    scale = nice_ceiling(float(P.abs().max()) * 100)
    frames = HeatmapFrames(itos, "P", diverging=diverging, scale=scale)
    fast = np.asarray(Image.open(io.BytesIO(frames.png(P, annotate=True))).convert("RGB"), int)
    drawn = render(heatmap(P, itos, "P", diverging=diverging, scale=scale))
    slow = np.asarray(Image.open(io.BytesIO(drawn)).convert("RGB"), dtype=int)
    bare = np.asarray(Image.open(io.BytesIO(frames.png(P))).convert("RGB"), dtype=int)
    # The ink of the values: each figure against the cells without them.
    ink_fast = bare.mean(axis=2) - fast.mean(axis=2)
    ink_slow = bare.mean(axis=2) - slow.mean(axis=2)

    def alignment(dy: int, dx: int) -> float:
        moved = np.roll(ink_fast, (dy, dx), axis=(0, 1))
        return float((moved * ink_slow).sum() / np.sqrt((moved**2).sum() * (ink_slow**2).sum()))

    # Nearly as much ink (FreeType's bitmaps are a little lighter than matplotlib's outlines), in
    # the same places: no shift by a pixel lines the two up better.
    assert np.abs(ink_fast).sum() == pytest.approx(np.abs(ink_slow).sum(), rel=0.3)
    assert alignment(0, 0) > 0.45
    assert alignment(0, 0) > max(
        alignment(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
    )
    assert (np.abs(fast - slow).max(axis=2) <= 60).mean() > 0.98
