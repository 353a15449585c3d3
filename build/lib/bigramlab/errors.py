"""The one exception type the entry points turn into a one-line message and a non-zero exit."""

from __future__ import annotations

import re


class UserError(Exception):
    """A problem with the user's input (config, data file, checkpoint) that they can fix.

    The message names what is wrong (the value, file or line) and what to do about it.
    """


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
    if name == f"{__name__}.{UserError.__qualname__}":
        return UserError(message)
    return None
