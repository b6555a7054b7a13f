"""Errors that reach the user as one line of text, and the exit statuses that report them."""

EXIT_INPUT = 2  # the input cannot be analysed (``error: <reason>``)
EXIT_INTERNAL = 3  # an internal failure (``error: internal failure during <stage> ...``)


class InputError(Exception):
    """The input cannot be analysed; ``str(error)`` is a one-line reason for the user."""
