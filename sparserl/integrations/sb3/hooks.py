"""Hooking SB3's training loop without forking it: an instance-level wrapper of an optimizer's
``step`` that runs the callbacks' ``before`` / ``after`` work around the real step (package
docstring, "How SB3's loop is hooked")."""
from __future__ import annotations

from typing import Callable

import torch

from ...errors import UserError

class _StepWrapper:
    """Instance-level wrapper of one optimizer's ``step``: every ``before`` callable runs (the
    real step is skipped if one returns False), then the step, then every ``after`` callable.

    ``owner`` is the callback that installed it and ``token`` the ``locals`` dict of the
    ``learn()`` call it was installed for (SB3 hands every callback of one call the same dict).
    A wrapper found from another call is stale: that ``learn()`` raised before its
    ``on_training_end`` (an SB3 callback cannot run a ``finally`` around SB3's loop), so its
    owner is torn down instead of refusing the new call with "already wrapped"."""

    def __init__(self, optimizer: torch.optim.Optimizer, owner=None, token=None):
        existing = getattr(vars(optimizer).get("step"), "__self__", None)
        if isinstance(existing, _StepWrapper) and existing.token is not token and existing.owner is not None:
            existing.owner._teardown()   # left behind by a learn() that raised
        if "step" in vars(optimizer):
            raise UserError("this optimizer's step() is already wrapped (two sparserl callbacks on one model?); "
                            "allowed: one SparseTrainingCallback or StructuredPruningCallback per learn()")
        self.optimizer = optimizer
        self.owner, self.token = owner, token
        self.before: list[Callable[[], bool]] = []
        self.after: list[Callable[[], None]] = []
        self._step = optimizer.step
        optimizer.step = self.step

    def step(self, closure=None):
        proceed = True
        for fn in self.before:
            proceed = fn() and proceed
        loss = self._step(closure) if proceed else None
        for fn in self.after:
            fn()
        return loss

    def remove(self) -> None:
        vars(self.optimizer).pop("step", None)


def _wrap_optimizers(optimizers, owner=None, token=None) -> dict[int, _StepWrapper]:
    wrappers: dict[int, _StepWrapper] = {}
    try:
        for opt in optimizers:
            if id(opt) not in wrappers:
                wrappers[id(opt)] = _StepWrapper(opt, owner, token)
    except UserError:
        for w in wrappers.values():
            w.remove()
        raise
    return wrappers
