"""The one exception type the entry points turn into a one-line message and a non-zero exit."""

from __future__ import annotations

import re


class UserError(Exception):
    """A problem with the user's input (config, data file, checkpoint) that they can fix.

    The message names what is wrong (the value, file or line) and what to do about it.
    """


class BadLine(UserError):
    """A line of a data file that is not a word: `{source} line {line} {detail}`. A process that
    read part of the file reports its line within the part; `shifted` numbers it in the file."""

    def __init__(self, source: str, line: int, detail: str) -> None:
        super().__init__(f"{source} line {line} {detail}")
        self.source, self.line, self.detail = source, line, detail

    def __reduce__(self) -> tuple:
        return BadLine, (self.source, self.line, self.detail)

    def shifted(self, lines_before: int) -> BadLine:
        """The same line, `lines_before` lines further into the file."""
        return BadLine(self.source, self.line + lines_before, self.detail)


class Diverged(UserError):
    """Training produced a non-finite loss or W; `step` is the update at which it was seen."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


def from_worker_traceback(traceback_text: str) -> UserError | None:
    """The UserError (or Diverged) a worker process of ddp_fork/ddp_spawn ended with, rebuilt from
    its traceback, or None for any other error.

    torch.multiprocessing hands the main process only the worker's traceback as text
    (ProcessRaisedException.msg); its last line is `module.ClassName: message`.
    """
    last_line = traceback_text.rstrip().rsplit("\n", 1)[-1]
    name, _, message = last_line.partition(": ")
    if name == f"{__name__}.{Diverged.__qualname__}":
        found = re.search(r"at step (-?\d+)", message)
        return Diverged(message, step=int(found.group(1)) if found else -1)
    if name in (f"{__name__}.{UserError.__qualname__}", f"{__name__}.{BadLine.__qualname__}"):
        return UserError(message)
    return None
