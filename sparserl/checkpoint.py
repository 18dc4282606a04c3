"""Atomic checkpoint writes and safe (``weights_only``) loads, with a content hash.

A checkpoint is written to a temporary file in the same directory and renamed over the
old one, so a kill at any moment leaves either the previous or the new checkpoint, never
a broken one.

Mostly-zero tensors (the masked weights of a sparse network and their optimizer moments) are
stored compactly by :func:`compact` as their non-zero values plus a bit-packed mask: a 98%
sparse agent's checkpoint would otherwise be as large as a dense one.  :func:`load` expands
them back, bit for bit, so nothing that reads a checkpoint sees a difference.

A dict checkpoint also carries :data:`HASH_KEY`, the SHA-256 of its content (every tensor's
dtype, shape and bytes, every key and plain value, in order). ``torch.load`` happily loads a
file whose tensors were damaged after writing (one flipped exponent bit turns a weight into
1e38 and the policy still "evaluates"), so :func:`load` recomputes the hash and refuses a
mismatch. It is a check against damage and hand edits, not a signature: whoever can write the
file can also rewrite the hash. Files without the key (written before it existed, or by hand
with ``torch.save``) load as before. The hash covers what is stored, compact records as they
are, so the check reads the file's own bytes and runs before anything is expanded.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .atomic import WriteError, atomic_write, is_atomic_write_temp  # noqa: F401 (importable from here)
from .errors import UserError


# the one atomic-write helper (and its WriteError) lives in atomic.py; these names stay importable from here
atomic_write_bytes_via = atomic_write


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


def _map_leaves(obj: Any, leaf) -> Any:
    """``obj`` (nested dicts, lists, tuples) rebuilt with ``leaf(x)`` in place of each value that
    ``leaf`` claims (it returns :data:`_KEEP` for the others, which are walked into or kept)."""
    out = leaf(obj)
    if out is not _KEEP:
        return out
    if isinstance(obj, dict):
        return {k: _map_leaves(v, leaf) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_leaves(v, leaf) for v in obj)
    return obj


_KEEP = object()


def compact(obj: Any) -> Any:
    """``obj`` (nested dicts, lists, tuples of tensors) with mostly-zero float tensors replaced by
    compact records; everything else is kept as is (the original is not modified)."""
    return _map_leaves(obj, lambda x: compact_tensor(x) if isinstance(x, torch.Tensor) else _KEEP)


def expand(obj: Any) -> Any:
    """Undo :func:`compact`: every compact record becomes its dense tensor again."""
    return _map_leaves(obj, lambda x: expand_tensor(x) if isinstance(x, dict) and COMPACT_KEY in x else _KEEP)


#: the key of a dict checkpoint holding :func:`content_hash` of the rest of it
HASH_KEY = "content_sha256"


def _feed(h, obj: Any) -> None:
    """Feed ``obj`` into ``h`` canonically: a type tag, then the content (tensors as dtype, shape
    and raw bytes, so any changed bit changes the hash; containers in their stored order, which
    pickling keeps)."""
    if torch.is_tensor(obj):
        t = obj.detach().cpu()
        if t.layout == torch.sparse_coo:
            t = t.coalesce()
            h.update(b"Tcoo")
            for part in (t.indices(), t.values()):
                _feed(h, part)
            return
        if t.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
            t = t.to_dense()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)}:".encode() + data)
    elif isinstance(obj, bytes):
        h.update(f"B{len(obj)}:".encode() + obj)
    elif hasattr(obj, "dtype") and hasattr(obj, "tobytes"):  # numpy arrays and scalars
        h.update(f"N{obj.dtype}{getattr(obj, 'shape', ())}".encode() + obj.tobytes())
    else:  # None, bool, int, float (repr round-trips exactly), torch.dtype/device/Size
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_hash(obj: Any) -> str:
    """SHA-256 of a checkpoint's content, :data:`HASH_KEY` itself left out."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in obj.items() if k != HASH_KEY} if isinstance(obj, dict) else obj)
    return h.hexdigest()


def save(obj: Any, path: str | Path) -> None:
    """Write ``obj`` atomically; a dict gets its :data:`HASH_KEY` (a copy is written, ``obj``
    itself is unchanged)."""
    if isinstance(obj, dict):
        obj = {**{k: v for k, v in obj.items() if k != HASH_KEY}, HASH_KEY: content_hash(obj)}
    atomic_write(path, lambda fh: torch.save(obj, fh))


def save_json(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda fh: fh.write((json.dumps(obj, indent=2, default=float) + "\n").encode()))


def rng_state_to_str(state: dict) -> str:
    """A numpy/gymnasium RNG state as JSON: it holds 128-bit ints, and a string keeps the
    checkpoint loadable with ``torch.load(weights_only=True)``."""
    return json.dumps(state)


def rng_state_from_str(text: str) -> dict:
    return json.loads(text)


def _refused_pickle(exc: Exception) -> str | None:
    """What a ``weights_only`` refusal names (``posix.system``, ``builtins.eval``): torch's text
    continues with advice to load with ``weights_only=False``, which would run the file's code,
    so only the rejected name is kept."""
    text = str(exc)
    if "Weights only load failed" not in text and "weights_only" not in text:
        return None
    for pattern in (r"GLOBAL ([\w.]+)", r"callable ([\w.]+)", r"Unsupported class ([\w.]+)"):
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            return f"a call to {found.group(1)}"
    found = re.search(r"Unsupported operand (\d+)", text)
    if found:
        return f"pickle opcode {found.group(1)} (a raw pickle, not a torch checkpoint)"
    return "an object that is not a tensor or plain data"


def _read_error(path: Path, exc: Exception, overwrite_hint: str) -> UserError:
    """One line for a checkpoint torch cannot read, never torch's own advice to turn the
    ``weights_only`` protection off."""
    rejected = _refused_pickle(exc)
    if rejected is not None:
        return UserError(f"refused to load {path}: the file asks for {rejected}, which a sparserl checkpoint "
                         f"never holds (only tensors and plain data are loaded, so no code from the file runs)")
    return UserError(f"cannot read checkpoint {path}: the file is truncated or not a sparserl checkpoint "
                     f"({type(exc).__name__}){overwrite_hint}")


def load(path: str | Path, mmap: bool = False, verify: bool | None = None, overwrite_hint: str = "") -> dict:
    """Load a checkpoint without running code from it (``weights_only``).  ``mmap=True`` maps
    tensor data lazily instead of reading it: cheap when only a few scalars are needed (for
    example the step of a ``resume.pt`` holding a large replay buffer); such a load does not
    verify the content hash (``verify`` defaults to ``not mmap``) since that reads every byte.
    ``overwrite_hint`` ends the message of an unreadable file (e.g. where ``--overwrite`` would
    start the run afresh)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise UserError(f"cannot read checkpoint {path}: it is a directory, not a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes would add lines to a one-line error
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # corrupted, truncated, not a torch file, or a refused pickle
        raise _read_error(path, exc, overwrite_hint) from None
    if isinstance(state, dict) and HASH_KEY in state and (not mmap if verify is None else verify):
        stored = state.pop(HASH_KEY)
        if not isinstance(stored, str) or stored != content_hash(state):
            raise UserError(f"checkpoint {path} fails its content check (sha256 of its tensors and values differs "
                            f"from the one stored when it was written): the file was damaged or edited; "
                            f"use a backup or train again{overwrite_hint}")
    elif isinstance(state, dict):
        state.pop(HASH_KEY, None)
    try:
        return expand(state)
    except Exception as exc:  # a compact record that does not add up (only a file without a hash gets here)
        raise UserError(f"cannot read checkpoint {path}: a compactly stored tensor in it is malformed "
                        f"({type(exc).__name__}){overwrite_hint}") from None
