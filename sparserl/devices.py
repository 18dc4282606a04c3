"""Which torch device a run's ``--device`` names (``auto``: CUDA where usable, else the CPU).

Its own module because training (:mod:`~sparserl.trainer`) and loading a saved model
(:mod:`~sparserl.model_file`) both resolve the option, and neither should import the other.
"""
from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device if one is usable, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return device
