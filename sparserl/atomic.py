"""Atomic file writes: the one helper every file sparserl writes in place goes through.

A file is written to a temporary ``.NAME.XXXXXXXX.tmp`` (``mkstemp``) in its own directory,
flushed to disk and renamed over the old one, so a kill at any moment leaves either the
previous or the new file, never a torn one.  One scheme for temporary names means one rule
(:func:`is_atomic_write_temp`) to recognise the orphans a kill can leave behind.
A write that fails (disk full, read-only directory, a name too long) is one
:class:`WriteError` line, and the file it would have replaced is intact.
Imports nothing heavy (no torch): the run-directory lock and the bench harness use it.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import UserError, exception_text

_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp's 8 random characters


def is_atomic_write_temp(name: str) -> bool:
    """Whether a file name is a temporary of :func:`atomic_write` (``.NAME.XXXXXXXX.tmp``):
    a kill between creating and renaming it leaves one behind."""
    return bool(_TEMP_NAME.match(name))


class WriteError(OSError, UserError):
    """A file could not be written (disk full, read-only directory, a name too long): one
    line; the file it would have replaced is intact.  Still an ``OSError`` for callers that
    handle those."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return self.strerror or super().__str__()


def atomic_write(path: str | Path, writer: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` atomically: ``writer(fh)`` fills a binary temporary that then replaces it;
    an ``OSError`` on the way is a :class:`WriteError` naming ``path``."""
    path = Path(path)
    try:
        _write_and_replace(path, writer)
    except OSError as exc:
        reason = exc.strerror or exception_text(exc, 200)
        raise WriteError(exc.errno, f"cannot write {path}: {reason}; the previous file (if any) is intact") from None


def _write_and_replace(path: Path, writer: Callable[[BinaryIO], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text (written byte for byte: no newline translation)."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
