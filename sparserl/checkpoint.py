"""Atomic checkpoint writes and safe (``weights_only``) loads.

A checkpoint is written to a temporary file in the same directory and renamed over the
old one, so a kill at any moment leaves either the previous or the new checkpoint, never
a broken one.

Mostly-zero tensors (the masked weights of a sparse network and their optimizer moments) are
stored compactly by :func:`compact` as their non-zero values plus a bit-packed mask: a 98%
sparse agent's checkpoint would otherwise be as large as a dense one.  :func:`load` expands
them back, bit for bit, so nothing that reads a checkpoint sees a difference.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserError


_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp's 8 random characters


def is_atomic_write_temp(name: str) -> bool:
    """Whether a file name is a temporary of :func:`atomic_write_bytes_via` (``.NAME.XXXXXXXX.tmp``):
    a kill between creating and renaming it leaves one behind."""
    return bool(_TEMP_NAME.match(name))


def atomic_write_bytes_via(path: str | Path, writer) -> None:
    path = Path(path)
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


#: marks a compactly stored tensor inside a saved state (see :func:`compact`)
COMPACT_KEY = "__sparserl_compact__"
COMPACT_VERSION = "bitmask-v1"
#: tensors smaller than this stay as they are: the record's own overhead would eat the gain
COMPACT_MIN_NUMEL = 256


def _stored_nonzero(t: torch.Tensor) -> torch.Tensor:
    """Elements that must be stored: everything except +0.0 (a -0.0 keeps its sign bit, so the
    expanded tensor is bit-identical; NaN compares unequal to 0 and is kept too)."""
    return (t != 0) | torch.signbit(t)


def compact_tensor(t: torch.Tensor):
    """``t`` itself, or a record ``{COMPACT_KEY, shape, dtype, values, mask}`` when storing the
    non-zero values plus one bit per element is under 3/4 of the dense bytes."""
    if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() >= COMPACT_MIN_NUMEL
            and t.layout == torch.strided):
        return t
    flat = t.detach().to("cpu").reshape(-1)
    keep = _stored_nonzero(flat)
    nnz = int(keep.sum())
    if nnz * flat.element_size() + (flat.numel() + 7) // 8 >= 0.75 * flat.numel() * flat.element_size():
        return t
    import numpy as np
    bits = torch.from_numpy(np.packbits(keep.numpy()))
    return {COMPACT_KEY: COMPACT_VERSION, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."),
            "values": flat[keep].clone(), "mask": bits}


def expand_tensor(record: dict) -> torch.Tensor:
    """The dense tensor a :func:`compact_tensor` record stands for."""
    import numpy as np
    if record.get(COMPACT_KEY) != COMPACT_VERSION:
        raise ValueError(f"unknown compact tensor record {record.get(COMPACT_KEY)!r}")
    shape = [int(d) for d in record["shape"]]
    numel = int(np.prod(shape)) if shape else 1
    keep = torch.from_numpy(np.unpackbits(record["mask"].numpy(), count=numel).astype(bool))
    out = torch.zeros(numel, dtype=getattr(torch, record["dtype"]))
    out[keep] = record["values"]
    return out.reshape(shape)


def compact(obj: Any) -> Any:
    """``obj`` (nested dicts, lists, tuples of tensors) with mostly-zero float tensors replaced by
    compact records; everything else is kept as is (the original is not modified)."""
    if isinstance(obj, torch.Tensor):
        return compact_tensor(obj)
    if isinstance(obj, dict):
        return {k: compact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [compact(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(compact(v) for v in obj)
    return obj


def expand(obj: Any) -> Any:
    """Undo :func:`compact`: every compact record becomes its dense tensor again."""
    if isinstance(obj, dict):
        if COMPACT_KEY in obj:
            return expand_tensor(obj)
        return {k: expand(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(expand(v) for v in obj)
    return obj


def save(obj: Any, path: str | Path) -> None:
    atomic_write_bytes_via(path, lambda fh: torch.save(obj, fh))


def save_json(obj: Any, path: str | Path) -> None:
    atomic_write_bytes_via(path, lambda fh: fh.write((json.dumps(obj, indent=2, default=float) + "\n").encode()))


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
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        return expand(state)
    except Exception as exc:  # corrupted, truncated or not a torch file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read checkpoint {path}: {first[:200]}") from None
