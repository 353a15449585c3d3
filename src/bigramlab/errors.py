"""The one exception type the entry points turn into a one-line message and a non-zero exit."""


class UserError(Exception):
    """A problem with the user's input (config, data file, checkpoint) that they can fix.

    The message names what is wrong (the value, file or line) and what to do about it.
    """
