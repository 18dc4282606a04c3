"""Atomic checkpoint writes and safe (``weights_only``) loads.

A checkpoint is written to a temporary file in the same directory and renamed over the
old one, so a kill at any moment leaves either the previous or the new checkpoint, never
a broken one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write, is_atomic_write_temp  # noqa: F401 (importable from here)
from .errors import UserError


# the one atomic-write helper lives in atomic.py; these names stay importable from here
atomic_write_bytes_via = atomic_write


def save(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def save_json(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda fh: fh.write((json.dumps(obj, indent=2, default=float) + "\n").encode()))


def rng_state_to_str(state: dict) -> str:
    """A numpy/gymnasium RNG state as JSON: it holds 128-bit ints, and a string keeps the
    checkpoint loadable with ``torch.load(weights_only=True)``."""
    return json.dumps(state)


def rng_state_from_str(text: str) -> dict:
    return json.loads(text)


def load(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint without running code from it (``weights_only``).  ``mmap=True`` maps
    tensor data lazily instead of reading it: cheap when only a few scalars are needed (for
    example the step of a ``resume.pt`` holding a large replay buffer)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # corrupted, truncated or not a torch file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read checkpoint {path}: {first[:200]}") from None
