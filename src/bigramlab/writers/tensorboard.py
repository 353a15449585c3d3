"""TensorBoard and PNG writing that the training callbacks and the note's fit share.

tensorboard     rank 0's SummaryWriter of a Trainer (None elsewhere)
add_scalars     a step's scalars as one event
add_png         a PNG as an image summary, as it is
render          a matplotlib figure drawn once and encoded as PNG
"""

from __future__ import annotations

import io

import lightning as L
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter


def tensorboard(trainer: L.Trainer) -> SummaryWriter | None:
    """The TensorBoard writer of rank 0, or None (other ranks, or no TensorBoard logger)."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            return logger.experiment
    return None


def add_scalars(writer: SummaryWriter, scalars: dict[str, float], step: int) -> None:
    """Scalars of one step as one event: what `add_scalar` writes for each (a simple value under
    its tag), serialised and queued once rather than once a tag."""
    values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
    writer.file_writer.add_summary(Summary(value=values), step)


def add_png(writer: SummaryWriter, tag: str, png: bytes, step: int) -> None:
    """An image summary of the PNG as it is (`add_image` takes pixels and would encode again)."""
    width, height = Image.open(io.BytesIO(png)).size  # reads the header only
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def render(figure: Figure) -> bytes:
    """The figure drawn once and encoded as PNG (RGBA): the same bytes go to TensorBoard and to a
    file. zlib level 3 rather than the default 6: slightly larger files, quicker to encode."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer, pil_kwargs={"compress_level": 3})
    return buffer.getvalue()
