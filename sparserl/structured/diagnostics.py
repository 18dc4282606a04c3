"""Numbers that say whether a prune check was safe, for one MLP chain (RL-agnostic).

Recorded by :class:`~.pruner.StructuredPruner` at every prune check (``pruner.diagnostics``):

* ``reg_grad_ratio``: ``||grad R|| / ||grad L||`` over the chain's parameters for the update
  the check follows, ``R`` the group penalty at its effective strength and ``L`` the rest of
  the loss the optimizer saw (the TD / actor loss). Above 1 the regulariser, not the task,
  drives the weights. With ``reg_mode="loss"`` both come from that update's backward pass
  (``L``'s part is the ``.grad`` less ``R``'s, clipped if the caller clipped); with
  ``"proximal"`` ``grad R`` is the (sub)gradient the soft-threshold follows, at the weights
  it shrinks.
* ``removed_norm_ratio``: the largest ``||g_j|| / median_{alive in layer} ||g||`` over the
  neurons the check removes (0 if it removes none). Near 0: the regulariser had already
  switched them off; near 1 or above: the check cut neurons the network still used.
* ``output_change``: ``max |f_after(x) - f_before(x)|`` of the chain owner's output on a fixed
  probe batch ``x`` (the first training input it saw), across the check (fold of the mean
  activation, removal and shrinking included): the damage one prune event does to the function.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .importance import group_norm_sq

__all__ = ["grad_ratio", "removed_norm_ratio", "output_change"]


def _norm(tensors: Sequence[torch.Tensor | None]) -> float:
    return float(sum(float(t.detach().double().pow(2).sum()) for t in tensors if t is not None) ** 0.5)


def grad_ratio(reg_grads: Sequence[torch.Tensor | None], loss_grads: Sequence[torch.Tensor | None]) -> float:
    """``||reg_grads|| / ||loss_grads||`` (each the L2 norm over all tensors; ``inf`` when the
    loss gradient is zero and the penalty's is not, 0 when both are)."""
    reg, loss = _norm(reg_grads), _norm(loss_grads)
    if loss == 0:
        return 0.0 if reg == 0 else float("inf")
    return reg / loss


@torch.no_grad()
def removed_norm_ratio(chain: Sequence[nn.Linear], alive_before: Sequence[torch.Tensor],
                       alive_after: Sequence[torch.Tensor]) -> float:
    """Largest group norm among the removed neurons over its layer's median alive group norm
    (masks in current indexing, one per hidden layer); 0 if nothing is removed."""
    worst = 0.0
    for layer, (before, after) in enumerate(zip(alive_before, alive_after)):
        norms = group_norm_sq(chain, layer).sqrt().detach().float().cpu()
        before, after = before.to(torch.bool).cpu(), after.to(torch.bool).cpu()
        removed = before & ~after
        if not bool(removed.any()):
            continue
        median = float(norms[before].median())
        top = float(norms[removed].max())
        worst = max(worst, top / median if median > 0 else (0.0 if top == 0 else float("inf")))
    return worst


def output_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """``max |after - before|`` over every element (0 for an empty batch)."""
    if before.numel() == 0:
        return 0.0
    return float((after - before).abs().max())
