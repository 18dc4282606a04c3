"""User-facing errors: the CLI prints them as one line, without a traceback."""
from __future__ import annotations

import argparse


class UserError(Exception):
    """Bad input from the user (a value, a file, a combination of options)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` parser whose errors are a :class:`UserError` of one line (no usage dump,
    no exit from inside the parser), so every ``sparserl`` command -- ``train``, ``eval``,
    ``bench``, ``report`` -- reports bad arguments the same way."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {' '.join(message.split())}")


def exception_text(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (one line, at most ``limit`` characters of message):
    how every one-line error names an exception it caught."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__
