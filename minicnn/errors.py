"""Errors meant for the person at the keyboard: the CLI prints the message alone."""


class UserError(Exception):
    """A problem with the user's input (a file, a shape, a value), explained in words."""
