"""Optimizer state of connections changed by a topology update.

The RLx2 reference code never resets Adam moments of dropped/grown entries. We reset them by
default (``reset=True``): every state tensor with the parameter's shape (Adam's ``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq``; SGD's ``momentum_buffer``; ...) is zeroed at the changed
entries. Scalar state such as Adam's ``step`` is left alone.

For Adam the reset changes nothing measurable: a grown entry was masked (zero gradient) for
at least ``delta`` updates before it grows, so its moments have already decayed by
beta1^delta and beta2^delta (0.999^10000 ~ 5e-5). What does differ for a new weight is
Adam's *shared* step count: the bias corrections 1 - beta^t are ~1 for an old optimizer, so
a weight whose moments start at 0 takes steps of lr * (1 - beta1^k) / sqrt(1 - beta2^k) for
its k-th update under a steady gradient, i.e. ~3x lr at k = 1, up to ~6.5x near k = 10, still
~3x at k = 100 and ~1.1x only after ~2,000 updates, where a freshly built Adam (or an
established weight) takes ~lr. Per-entry step counts would remove this; we do not do that.
"""
from __future__ import annotations

from typing import Callable, Optional

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


def swap_parameter(optimizer: torch.optim.Optimizer, old: torch.Tensor, new: torch.Tensor,
                   transform: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Put ``new`` where ``old`` is in ``optimizer``'s param groups and move ``old``'s state to it.

    The one way a parameter is replaced inside an optimizer, for every change of a layer's
    storage (structured surgery slicing a weight, CSR compression gathering its non-zeros), so
    that training continues with its Adam moments: each state tensor of ``old``'s shape becomes
    ``transform(tensor)``; other state (Adam's scalar ``step``) is kept as is.  The param lists
    are changed in place.  Returns whether ``old`` was in the optimizer."""
    found = False
    for group in optimizer.param_groups:
        params = group["params"]
        for k, p in enumerate(params):
            if p is old:
                params[k] = new
                found = True
    if not found:
        return False
    state = optimizer.state.pop(old, None)
    if state:
        optimizer.state[new] = {key: (transform(value) if torch.is_tensor(value) and value.dim() > 0
                                      and value.shape == old.shape else value)
                                for key, value in state.items()}
    return True
