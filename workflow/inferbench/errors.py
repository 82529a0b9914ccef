"""Errors meant for people: caught by the CLI and printed as one message, never a traceback."""


class UserError(Exception):
    """Bad input: the message names what is wrong and what to do."""
