"""Which torch device a run's ``--device`` names (``auto``: CUDA where usable, else the CPU).

Its own module because training (:mod:`~sparserl.trainer`) and loading a saved model
(:mod:`~sparserl.model_file`) both resolve the option, and neither should import the other.
"""
from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device if one is usable, else the CPU.  Anything else must be
    ``cpu``, ``cuda`` or ``cuda:N`` with an existing N (one line otherwise: torch's own errors
    for ``tpu`` or ``cuda:99999999999999999999`` are tracebacks or overflow messages)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = name if isinstance(name, str) else None
    if text is None or not (text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())):
        raise UserError(f"--device {name!r}; allowed: auto, cpu, cuda or cuda:N")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if text.startswith("cuda:") and int(text[5:]) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: no such GPU (this machine has {torch.cuda.device_count()}: "
                        f"cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device(text)
