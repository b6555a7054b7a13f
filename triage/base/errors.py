"""Errors that reach the user as one line of text, and the exit statuses that report them."""

EXIT_INPUT = 2  # the input cannot be analysed (``error: <reason>``)
EXIT_INTERNAL = 3  # an internal failure (``error: internal failure during <stage> ...``)


class InputError(Exception):
    """The input cannot be analysed; ``str(error)`` is a one-line reason for the user."""


def one_line(exc: BaseException, limit: int = 200, *, with_type: bool = False) -> str:
    """``exc`` as one line of at most ``limit`` characters (whitespace collapsed, "..." where
    cut), with its type name in front when ``with_type``; the type name alone without message."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if with_type else text
