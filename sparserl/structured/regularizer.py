"""Neuron-importance group-sparse regulariser.

    R = lambda * sum_l sum_{j alive in l} c_j * ||g_j||_2

with group ``g_j = (W_l[j, :], b_l[j], W_{l+1}[:, j])`` for every hidden neuron ``j`` of hidden
layer ``l``. Coefficients (detached, so they only weight the gradient):

* ``"importance"``: ``c_j = 1 / (I_j / mean_alive(I) + eps)`` -- unimportant neurons are pushed
  to zero hardest; with ``eps = 0.1`` the coefficients lie in ``(0, 10]``. If importance is not
  available yet (no data recorded) ``c_j = 1``.
* ``"group-lasso"``: ``c_j = 1`` (plain group lasso).
* ``"none"``: ``R = 0``.

Masked (pruned but not yet shrunk) neurons do not count.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .importance import group_norm_sq, normalize_importance

__all__ = ["REGULARIZERS", "group_norms", "importance_coefficients", "group_sparse_penalty"]

REGULARIZERS = ("importance", "group-lasso", "none")

_TINY = 1e-24  # keeps sqrt differentiable at an all-zero group (gradient 0 there)


def group_norms(chain: Sequence[nn.Linear], layer: int) -> torch.Tensor:
    """Differentiable L2 norm of each neuron group of hidden layer ``layer``."""
    return group_norm_sq(chain, layer).clamp_min(_TINY).sqrt()


def importance_coefficients(importance: torch.Tensor, alive: torch.Tensor | None = None,
                            eps: float = 0.1) -> torch.Tensor:
    """``c_j = 1 / (I_j / mean_alive(I) + eps)``, detached."""
    if eps <= 0:
        raise ValueError(f"eps={eps}; allowed: eps > 0")
    norm = normalize_importance(importance.detach(), alive)
    return 1.0 / (norm.clamp_min(0.0) + eps)


def group_sparse_penalty(chain: Sequence[nn.Linear], reg_lambda: float,
                         coefficients: Sequence[torch.Tensor | None] | None = None,
                         alive: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
    """``lambda * sum_l sum_j alive_j * c_j * ||g_j||`` as a differentiable scalar tensor.

    ``coefficients[l]`` / ``alive[l]`` are per-neuron tensors in current indexing, or None
    (meaning all ones / all alive).
    """
    device = chain[0].weight.device
    total = torch.zeros((), device=device, dtype=chain[0].weight.dtype)
    if reg_lambda == 0:
        return total
    for layer in range(len(chain) - 1):
        norms = group_norms(chain, layer)
        c = None if coefficients is None else coefficients[layer]
        weights = torch.ones_like(norms) if c is None else c.detach().to(norms)
        if alive is not None and alive[layer] is not None:
            weights = weights * alive[layer].to(device=norms.device, dtype=norms.dtype)
        total = total + (weights * norms).sum()
    return reg_lambda * total
