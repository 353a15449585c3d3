"""The one exception type the entry points turn into a one-line message and a non-zero exit."""


class UserError(Exception):
    """A problem with the user's input (config, data file, checkpoint) that they can fix.

    The message names what is wrong (the value, file or line) and what to do about it.
    """


class Diverged(UserError):
    """Training produced a non-finite loss or W; `step` is the update at which it was seen."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step
