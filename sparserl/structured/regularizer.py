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

Two ways to apply it (``REG_MODES``):

* ``"loss"``: ``R`` is added to the loss (:func:`group_sparse_penalty`) and its gradient goes
  through the optimizer with the TD gradient. Under Adam the pull is rescaled per weight by
  the moment estimates, so its effect depends on the loss scale and is never an exact zero.
* ``"proximal"``: after each optimizer step the group soft-threshold (the proximal operator of
  ``step * R``) is applied in place (:func:`proximal_group_shrink`)::

      g_j <- g_j * max(0, 1 - step * lambda * c_j / ||g_j||),    step = the learning rate

  Each update shrinks the norm of group ``j`` by ``step * lambda * c_j`` (or sets the group to
  exactly zero if its norm is smaller), whatever the loss scale and the optimizer's
  normalisation: ``lambda`` is a shrink of the group norm per unit learning rate per update,
  so one value means the same in every network that uses it. The coefficients ``c_j`` are
  the same as in the loss mode.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .importance import group_norm_sq, normalize_importance

__all__ = ["REGULARIZERS", "REG_MODES", "group_norms", "importance_coefficients", "group_sparse_penalty",
           "proximal_group_shrink"]

REGULARIZERS = ("importance", "group-lasso", "none")
REG_MODES = ("loss", "proximal")

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


@torch.no_grad()
def proximal_group_shrink(chain: Sequence[nn.Linear], step: float,
                          coefficients: Sequence[torch.Tensor | None] | None = None,
                          alive: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """Group soft-threshold, in place: ``g_j *= max(0, 1 - step * c_j / ||g_j||)``.

    ``step`` is the threshold per unit coefficient (``learning rate * lambda``);
    ``coefficients[l]`` / ``alive[l]`` as in :func:`group_sparse_penalty`. Dead (``alive`` False)
    and all-zero groups keep factor 1: they are zero already, and a masked neuron is
    re-masked by its owner anyway. A factor of 0 makes the group *exactly* zero.

    Groups of neighbouring hidden layers overlap in ``W_{l+1}`` (column ``j`` of layer ``l``'s
    group, row ``k`` of layer ``l+1``'s). All factors are computed from the weights *before*
    the call and then applied together, so the result does not depend on a layer order: each
    group is scaled by its own factor, and an entry shared by two groups by the product of
    both (with one hidden layer nothing is shared and this is the exact proximal operator).

    Returns the factor of each group per hidden layer (current indexing).
    """
    if not step >= 0:
        raise ValueError(f"step={step}; allowed: >= 0")
    factors = []
    for layer in range(len(chain) - 1):
        norms = group_norm_sq(chain, layer).sqrt()
        c = None if coefficients is None else coefficients[layer]
        weights = torch.ones_like(norms) if c is None else c.detach().to(norms)
        shrink = torch.where(norms > 0, 1.0 - step * weights / norms.clamp_min(_TINY), torch.ones_like(norms))
        factor = shrink.clamp_min(0.0)
        if alive is not None and alive[layer] is not None:
            factor = torch.where(alive[layer].to(norms.device), factor, torch.ones_like(factor))
        factors.append(factor)
    if step == 0:
        return factors
    for layer, factor in enumerate(factors):
        inc, out = chain[layer], chain[layer + 1]
        inc.weight.mul_(factor.unsqueeze(1))
        if inc.bias is not None:
            inc.bias.mul_(factor)
        out.weight.mul_(factor.unsqueeze(0))
    return factors
