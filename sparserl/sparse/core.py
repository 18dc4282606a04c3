"""`SparseTraining`: the one small interface training loops use for unstructured sparsity.

Works on any ``nn.Module`` and its optimizer; knows nothing about RL. Usage::

    sparse = SparseTraining(net, opt, sparsity=0.9, updater="rigl", delta=1000, t_end=100_000)
    for batch in data:
        opt.zero_grad()
        loss(net, batch).backward()
        if sparse.before_optimizer_step():   # counts t, maybe updates topology, masks grads
            opt.step()
        sparse.after_optimizer_step()        # re-zero masked weights
        # after a soft/hard target update:  sparse.sync(target_net)

Design: masked weights are exact zeros and the forward runs the full weight matrix, so
``weight.grad`` after ``backward()`` is the dense gradient that RigL grows with. Gradients
are masked in :meth:`before_optimizer_step` after the updater has used them.
"""
from __future__ import annotations

import weakref
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .allocation import METHODS as ALLOCATIONS
from .allocation import layer_nonzero_counts
from .masks import (INITS, apply_masks, count_active, create_masks, get_weights, linear_weight_names,
                    mask_gradients, sync_masks, weight_shapes)
from .optim_state import reset_optimizer_state
from .schedules import TopologySchedule
from .updaters import StaticUpdater, Updater, make_updater


class SparseTraining:
    """Unstructured sparse training (static / SET / RigL) of one module and its optimizer.

    Args:
        module: any ``nn.Module``; every ``nn.Linear`` weight is masked (biases stay dense),
            or only the Linear modules named in ``layers``.
        optimizer: the module's optimizer (its state of changed entries is reset on updates).
        sparsity: global fraction of masked weights over the managed layers, ``0 <= s < 1``.
        allocation: ``"erk"`` (default) or ``"uniform"`` layer-wise densities.
        init: ``"magnitude"`` (keep largest-|w| of the fresh weights) or ``"random"``.
        updater: ``"rigl"``, ``"set"``, ``"static"`` or an :class:`Updater` instance.
        delta: updates of this network between topology updates.
        drop_fraction: zeta0 of the cosine drop-fraction decay.
        t_end: updates after which the topology is frozen (and the cosine reaches 0);
            required unless the updater is static.
        stop_step: optional earlier step from which no topology update happens.
        reset_optimizer_state: zero same-shaped optimizer state (Adam moments) of dropped
            and grown entries (the RLx2 reference does not; we default to True).
        skip_step_on_update: :meth:`before_optimizer_step` returns False on a topology-update
            step so the caller skips ``optimizer.step()`` (reference behaviour).
        grad_accumulation: average the dense gradient over the last k minibatches (steps
            ``u-k+1 .. u`` of update step ``u``) for the RigL grow criterion; ``1 <= k <= delta``.
        regrow_dropped: a connection dropped at a topology update may be regrown in the same
            update, keeping its value (RigL, the RLx2 reference; default); False excludes it
            (see :mod:`.updaters`). Ignored when ``updater`` is an instance.
        layers: optional list of Linear module names to sparsify.
        generator: ``torch.Generator`` for random init and SET; default: one seeded from
            the global torch RNG (so ``torch.manual_seed`` makes runs reproducible).
    """

    def __init__(self, module: nn.Module, optimizer: Optional[torch.optim.Optimizer], sparsity: float, *,
                 allocation: str = "erk", init: str = "magnitude",
                 updater: Union[str, Updater] = "rigl", delta: int = 10_000,
                 drop_fraction: float = 0.5, t_end: Optional[int] = None,
                 stop_step: Optional[int] = None, reset_optimizer_state: bool = True,
                 skip_step_on_update: bool = True, grad_accumulation: int = 1,
                 regrow_dropped: bool = True,
                 layers: Optional[Sequence[str]] = None,
                 generator: Optional[torch.Generator] = None):
        if allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {allocation!r}; allowed: {', '.join(ALLOCATIONS)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")
        if isinstance(delta, bool) or not isinstance(delta, int) or delta <= 0:
            raise ValueError(f"delta {delta!r} must be a positive integer number of updates")
        if isinstance(grad_accumulation, bool) or not isinstance(grad_accumulation, int) \
                or not 1 <= grad_accumulation <= delta:
            raise ValueError(f"grad_accumulation {grad_accumulation!r} must be an integer in 1..delta ({delta})")
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,)).item()))
        self.generator = generator
        self.updater = make_updater(updater, generator, regrow_dropped)
        self.is_static = isinstance(self.updater, StaticUpdater)
        if t_end is None:
            if not self.is_static:
                raise ValueError(f"t_end=None: a dynamic updater ({self.updater.name}) needs t_end, "
                                 f"the total number of updates of this network")
            t_end = 1
        self.schedule = TopologySchedule(delta, drop_fraction, t_end, stop_step)

        self.module = module
        self.optimizer = optimizer
        self.sparsity_target = float(sparsity)
        self.allocation = allocation
        self.reset_optimizer_state = bool(reset_optimizer_state)
        self.skip_step_on_update = bool(skip_step_on_update)
        self.grad_accumulation = grad_accumulation

        names = linear_weight_names(module, layers)
        self.shapes = weight_shapes(module, names)
        self.allocated = layer_nonzero_counts(self.shapes, sparsity, allocation)
        self.masks: dict[str, torch.Tensor] = create_masks(module, self.allocated, init, generator)
        self._weights = get_weights(module, names)
        # keyed by the target module itself (weakly): an ``id()`` key would be reused by a
        # target rebuilt with copy.deepcopy and silently leave it unmasked
        self._target_weights: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._refresh_fast_masks()
        apply_masks(module, self.masks)

        self.step = 0                    # optimizer updates of this network counted so far
        self.n_topology_updates = 0
        self.last_change: dict = {}      # name -> LayerChange of the latest topology update
        self._accum: dict[str, torch.Tensor] = {}
        self._accum_count = 0

    # ------------------------------------------------------------------ training hooks
    def _accumulates(self, t: int) -> bool:
        r = t % self.schedule.delta
        return r == 0 or r > self.schedule.delta - self.grad_accumulation

    @torch.no_grad()
    def _accumulate(self) -> None:
        for name, p in self._weights.items():
            if p.grad is None:
                continue
            if name in self._accum:
                self._accum[name].add_(p.grad)
            else:
                self._accum[name] = p.grad.detach().clone()
        self._accum_count += 1

    def _dense_grads(self) -> dict[str, Optional[torch.Tensor]]:
        if self.grad_accumulation == 1:
            return {n: p.grad for n, p in self._weights.items()}
        return {n: (self._accum[n] / self._accum_count if n in self._accum else None) for n in self._weights}

    def before_optimizer_step(self) -> bool:
        """Call after ``loss.backward()``. Counts one update ``t``; on a topology-update step
        runs the updater on the dense gradient and resets the changed optimizer state; then
        masks the gradients. Returns False if the caller should skip ``optimizer.step()``."""
        self.step += 1
        t = self.step
        needs_grad = self.updater.needs_dense_grad and not self.is_static
        if needs_grad and self.grad_accumulation > 1 and self._accumulates(t):
            self._accumulate()
        updated = False
        if not self.is_static and self.schedule.is_update_step(t):
            self.update_topology(self._dense_grads() if needs_grad else None)
            updated = True
        if t % self.schedule.delta == 0:
            self._accum, self._accum_count = {}, 0
        # masked_fill, not a multiply: inf * 0 would turn an overflowing masked gradient into NaN
        for p, dropped in zip(self._weights.values(), self._dropped):
            if p.grad is not None:
                p.grad.masked_fill_(dropped, 0.0)
        return not (updated and self.skip_step_on_update)

    @torch.no_grad()
    def update_topology(self, grads: Optional[dict] = None, t: Optional[int] = None) -> dict:
        """Run one topology update now (normally called by :meth:`before_optimizer_step`).

        ``grads``: dense gradient per weight name (RigL); ``t``: step used for the drop
        fraction (default: the current step). Returns ``{name: LayerChange}``.
        """
        t = self.step if t is None else t
        changes = {}
        for name, p in self._weights.items():
            mask = self.masks[name]
            n = self.schedule.drop_count(t, int(mask.sum()))
            grad = None if grads is None else grads.get(name)
            if grad is None and self.updater.needs_dense_grad and n > 0:
                raise ValueError(f"layer {name!r} has no gradient for the {self.updater.name} update; "
                                 f"call before_optimizer_step() after loss.backward()")
            change = self.updater.update(p.data, mask, n, grad)
            reset_optimizer_state(self.optimizer, p, change.changed, self.reset_optimizer_state)
            changes[name] = change
        apply_masks(self.module, self.masks)
        self._refresh_fast_masks()
        self.n_topology_updates += 1
        self.last_change = changes
        return changes

    @torch.no_grad()
    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace the masks from outside (pruning schedules such as GMP decide the pattern
        themselves and use this object only to enforce it). Copies in place, so attached
        execution backends keep their reference; weights outside the new masks become 0."""
        for n, m in masks.items():
            self.masks[n].copy_(m.to(self.masks[n].device))
        apply_masks(self.module, self.masks)
        self._refresh_fast_masks()

    def _refresh_fast_masks(self) -> None:
        """0/1 float copies of the masks, aligned with ``self._weights``, for the hot path:
        masking every step with one ``_foreach_mul_`` instead of a Python loop of
        ``masked_fill_`` calls (the masks change only at topology updates).  Multiplying
        gives exact zeros (possibly -0.0, which compares equal to 0)."""
        self._fast_masks = [self.masks[n].to(p.dtype) for n, p in self._weights.items()]
        self._dropped = [~self.masks[n] for n in self._weights]

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Re-zero masked weights (Adam moments / weight decay would otherwise move them)."""
        if self._has_attached_execution():
            apply_masks(self.module, self.masks)
        else:
            torch._foreach_mul_(list(self._weights.values()), self._fast_masks)

    @torch.no_grad()
    def sync(self, *targets: nn.Module) -> None:
        """Apply the online masks to target networks (after every soft/hard target update)."""
        for target in targets:
            if self._has_attached_execution(target):
                sync_masks(target, self.masks)
                continue
            weights = self._target_weights.get(target)
            if weights is None:  # same layer names; Parameters never replaced inside one module
                weights = self._target_weights[target] = list(get_weights(target, self.masks).values())
            torch._foreach_mul_(weights, self._fast_masks)

    def _has_attached_execution(self, module: Optional[nn.Module] = None) -> bool:
        module = self.module if module is None else module
        return any(getattr(m, "_sparserl_mask", None) is not None for m in module.modules())

    # ---------------------------------------------------------------------- inspection
    def nonzero_counts(self) -> dict[str, int]:
        """Active connections per layer (equals the allocation at all times)."""
        return count_active(self.masks)

    def sparsity(self) -> float:
        """Global fraction of masked weights over the managed layers."""
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(self.nonzero_counts().values()) / total

    def layer_sparsities(self) -> dict[str, float]:
        return {n: 1.0 - int(m.sum()) / m.numel() for n, m in self.masks.items()}

    # ----------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Masks, counters, schedule and generator state; loadable with ``weights_only=True``."""
        return {
            "masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
            "step": self.step,
            "n_topology_updates": self.n_topology_updates,
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
            "grad_accum": {n: g.detach().cpu().clone() for n, g in self._accum.items()},
            "grad_accum_count": self._accum_count,
        }

    def load_state_dict(self, state: dict) -> None:
        masks = state["masks"]
        if set(masks) != set(self.masks):
            raise ValueError(f"mask names {sorted(masks)} do not match this module's {sorted(self.masks)}")
        for n, m in masks.items():
            if tuple(m.shape) != tuple(self.masks[n].shape) or m.dtype != torch.bool:
                raise ValueError(f"mask {n!r} has shape {tuple(m.shape)} / dtype {m.dtype}; "
                                 f"expected bool {tuple(self.masks[n].shape)}")
        for n, m in masks.items():
            self.masks[n].copy_(m)   # in place: attached execution backends keep their reference
        self.step = int(state["step"])
        self.n_topology_updates = int(state["n_topology_updates"])
        if "schedule" in state:
            self.schedule = TopologySchedule(**state["schedule"])
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self._accum = {n: g.to(self._weights[n].device).clone() for n, g in state.get("grad_accum", {}).items()}
        self._accum_count = int(state.get("grad_accum_count", 0))
        apply_masks(self.module, self.masks)
        self._refresh_fast_masks()

    def __repr__(self) -> str:
        return (f"SparseTraining(sparsity={self.sparsity():.3f}, allocation={self.allocation!r}, "
                f"updater={self.updater.name!r}, step={self.step}, "
                f"topology_updates={self.n_topology_updates}, layers={list(self.masks)})")
