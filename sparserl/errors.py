"""User-facing errors: the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Bad input from the user (a value, a file, a combination of options)."""
