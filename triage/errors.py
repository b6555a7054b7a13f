"""Errors that reach the user as one line of text."""


class InputError(Exception):
    """The input cannot be analysed; ``str(error)`` is a one-line reason for the user."""
