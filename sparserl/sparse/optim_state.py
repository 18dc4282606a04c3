"""Optimizer state of connections changed by a topology update.

The RLx2 reference code never resets Adam moments of dropped/grown entries; a grown weight
then starts at 0 but immediately moves with a stale momentum. We reset them by default
(``reset=True``): every state tensor with the parameter's shape (Adam's ``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq``; SGD's ``momentum_buffer``; ...) is zeroed at the changed
entries. Scalar state such as Adam's ``step`` is left alone.
"""
from __future__ import annotations

from typing import Optional

import torch


@torch.no_grad()
def reset_optimizer_state(optimizer: Optional[torch.optim.Optimizer], param: torch.Tensor,
                          changed: torch.Tensor, reset: bool = True) -> int:
    """Zero same-shaped optimizer state of ``param`` where ``changed`` is True.

    Returns the number of state tensors touched (0 when ``reset`` is False, when there is no
    optimizer or when the optimizer has no state for ``param`` yet).
    """
    if not reset or optimizer is None:
        return 0
    state = optimizer.state.get(param)
    if not state:
        return 0
    touched = 0
    for value in state.values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.masked_fill_(changed.to(value.device), 0)
            touched += 1
    return touched
