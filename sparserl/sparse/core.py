"""`SparseTraining`: the one small interface training loops use for unstructured sparsity.

Works on any ``nn.Module`` and its optimizer; knows nothing about RL. Usage::

    sparse = SparseTraining(net, opt, sparsity=0.9, updater="rigl", delta=1000, planned_updates=100_000)
    for batch in data:
        opt.zero_grad()
        loss(net, batch).backward()
        if sparse.before_optimizer_step():   # counts t, maybe updates topology, masks grads
            opt.step()
        sparse.after_optimizer_step()        # re-zero masked weights
        # after a soft/hard target update:  sparse.sync(target_net)

Two execution backends (``backend=``), numerically equivalent:

* ``"masked"`` (default): masked weights are exact zeros and the forward runs the full weight
  matrix, so ``weight.grad`` after ``backward()`` is the dense gradient that RigL grows with.
  Gradients are masked in :meth:`before_optimizer_step` after the updater has used them.
* ``"csr"``: every layer that has inactive connections is replaced by a
  :class:`~sparserl.sparse.csr.SparseLinear` whose trainable parameter is the vector of its
  active weights (the optimizer's entry for the dense weight is swapped for it in place, so
  Adam moments are sized by the non-zero count).  Forward and both gradients run through CSR
  kernels; the dense weight gradient is computed only on the steps that need it (topology
  updates, RigL's accumulation window), announced to the layers one step ahead.
  Target networks get the same compressed layers at their first :meth:`sync`.
* ``"auto"``: ``csr`` for the layers where the CSR kernels are measured to be faster on this
  machine (see :mod:`~sparserl.sparse.crossover`), ``masked`` for the others; a compressed
  layer also computes densely for batch sizes where that is faster (e.g. acting, batch 1).

Checkpoints do not depend on the backend: network state dicts hold dense ``weight`` tensors
(zeros at inactive positions) and the optimizer's state dict holds dense-shaped moments for
compressed layers (what the masked backend stores), so a run saved with one backend resumes
with another.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from .allocation import ALLOCATIONS
from .allocation import layer_nonzero_counts
from .auto import AutoExecution
from .csr import CsrExecution, CsrLayout, DenseGradRequest, SparseLinear, use_feature_major
from .masks import (DENSE_MASKED, INITS, SparseExecution, apply_masks, count_active, create_masks, get_weights,
                    linear_weight_names, mask_gradients, sync_masks, weight_shapes)
from .optim_state import reset_optimizer_state, swap_parameter
from .schedules import TopologySchedule
from .updaters import StaticUpdater, Updater, make_updater

BACKENDS = ("masked", "csr", "auto")


def make_execution(backend: Union[str, SparseExecution]) -> SparseExecution:
    """A backend from its name (``masked``, ``csr``, ``auto``) or a :class:`SparseExecution`."""
    if isinstance(backend, SparseExecution):
        return backend
    if backend == "masked":
        return DENSE_MASKED
    if backend == "csr":
        return CsrExecution()
    if backend == "auto":
        return AutoExecution()
    raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)} or a SparseExecution instance")


def _module_name(weight_name: str) -> str:
    return weight_name[: -len(".weight")] if weight_name.endswith(".weight") else ""


def _replace_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


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
        planned_updates: the planned gradient updates of this network: the topology is frozen
            after them and the cosine reaches 0 there (RigL's ``T_end``; ``t_end`` is the older
            keyword, still accepted); required unless the updater is static.
        stop_step: optional earlier step from which no topology update happens.
        reset_optimizer_state: zero same-shaped optimizer state (Adam moments) of dropped
            and grown entries (the RLx2 reference does not; we default to True). The ``csr``
            backend keeps state only for active connections, so it requires True (``auto``
            then stays masked).
        skip_step_on_update: :meth:`before_optimizer_step` returns False on a topology-update
            step so the caller skips ``optimizer.step()`` (reference behaviour).
        grad_accumulation: average the dense gradient over the last k minibatches (steps
            ``u-k+1 .. u`` of update step ``u``) for the RigL grow criterion; ``1 <= k <= delta``.
        regrow_dropped: let a connection dropped at a topology update be regrown in the same
            update, keeping its value (the RigL / RLx2 reference code's candidate set). Default
            False: only connections inactive before the update may grow, which measured about
            1.7x RigL's return on HalfCheetah (see :mod:`.updaters`). Ignored when ``updater``
            is an instance.
        layers: optional list of Linear module names to sparsify.
        generator: ``torch.Generator`` for random init and SET; default: one seeded from
            the global torch RNG (so ``torch.manual_seed`` makes runs reproducible).
        backend: ``"masked"`` (default), ``"csr"``, ``"auto"`` or a :class:`SparseExecution`;
            see the module docstring.  Layers with no inactive connection (e.g. ERK's dense
            input/output layers) and a module that is itself a Linear stay masked.
    """

    def __init__(self, module: nn.Module, optimizer: Optional[torch.optim.Optimizer], sparsity: float, *,
                 allocation: str = "erk", init: str = "magnitude",
                 updater: Union[str, Updater] = "rigl", delta: int = 10_000,
                 drop_fraction: float = 0.5, planned_updates: Optional[int] = None,
                 t_end: Optional[int] = None,
                 stop_step: Optional[int] = None, reset_optimizer_state: bool = True,
                 skip_step_on_update: bool = True, grad_accumulation: int = 1,
                 regrow_dropped: bool = False,
                 layers: Optional[Sequence[str]] = None,
                 generator: Optional[torch.Generator] = None,
                 backend: Union[str, SparseExecution] = "masked"):
        if allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {allocation!r}; allowed: {', '.join(ALLOCATIONS)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")
        if isinstance(delta, bool) or not isinstance(delta, int) or delta <= 0:
            raise ValueError(f"delta {delta!r} must be a positive integer number of updates")
        if isinstance(grad_accumulation, bool) or not isinstance(grad_accumulation, int) \
                or not 1 <= grad_accumulation <= delta:
            raise ValueError(f"grad_accumulation {grad_accumulation!r} must be an integer in 1..delta ({delta})")
        execution = make_execution(backend)
        if execution.compresses_layers and not reset_optimizer_state:
            if not isinstance(execution, AutoExecution):
                raise ValueError(f"backend {execution.name!r} keeps optimizer state only for active connections, so "
                                 f"it cannot keep the stale moments reset_optimizer_state=False asks for; "
                                 f"use backend='masked'")
            execution = DENSE_MASKED
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,)).item()))
        self.generator = generator
        self.updater = make_updater(updater, generator, regrow_dropped)
        self.is_static = isinstance(self.updater, StaticUpdater)
        if planned_updates is not None and t_end is not None and planned_updates != t_end:
            raise ValueError(f"planned_updates={planned_updates} and t_end={t_end} are the same option; "
                             f"allowed: one of them")
        t_end = planned_updates if planned_updates is not None else t_end
        if t_end is None:
            if not self.is_static:
                raise ValueError(f"planned_updates=None: a dynamic updater ({self.updater.name}) needs "
                                 f"planned_updates (or its older name t_end), the total number of updates "
                                 f"of this network")
            t_end = 1
        self.schedule = TopologySchedule(delta, drop_fraction, t_end, stop_step)

        self.module = module
        self.optimizer = optimizer
        self.execution = execution
        self.sparsity_target = float(sparsity)
        self.allocation = allocation
        self.reset_optimizer_state = bool(reset_optimizer_state)
        self.skip_step_on_update = bool(skip_step_on_update)
        self.grad_accumulation = grad_accumulation

        names = linear_weight_names(module, layers)
        self.shapes = weight_shapes(module, names)
        self.allocated = layer_nonzero_counts(self.shapes, sparsity, allocation)
        self.masks: dict[str, torch.Tensor] = create_masks(module, self.allocated, init, generator)
        apply_masks(module, self.masks)

        # Compressed layers (online) by weight name; every other managed layer stays masked.
        self._request = DenseGradRequest()
        self.compressed: dict[str, SparseLinear] = {}
        for name in names:
            if name != "weight" and execution.compresses(self.shapes[name], self.allocated[name]):
                self._compress(name)
        self._masked_masks = {n: m for n, m in self.masks.items() if n not in self.compressed}
        self._weights = get_weights(module, self._masked_masks)
        self._masked_owners = self._owners_in(module)
        if self.compressed:  # one activation layout through the whole chain (see feature_major_linear)
            for owner in self._masked_owners:
                use_feature_major(owner)
        self._targets: dict[int, tuple[nn.Module, dict[str, SparseLinear], list[torch.Tensor]]] = {}
        self._target_owners: dict[int, list[nn.Module]] = {}
        self._pending_optimizer_state: dict[tuple[str, str], torch.Tensor] = {}
        if self.compressed and optimizer is not None:
            optimizer.register_state_dict_post_hook(self._optimizer_state_to_dense)
            optimizer.register_load_state_dict_post_hook(self._optimizer_state_from_dense)
        self._refresh_fast_masks()

        self.step = 0                    # optimizer updates of this network counted so far
        self.n_topology_updates = 0
        self.last_change: dict = {}      # name -> LayerChange of the latest topology update
        self._accum: dict[str, torch.Tensor] = {}
        self._accum_count = 0
        self._arm_dense_grads()

    # ------------------------------------------------------------------ compression
    def _compress(self, name: str) -> None:
        """Replace the Linear owning weight ``name`` by a SparseLinear and swap the optimizer's
        entry for the dense weight with the values vector (state gathered, if any)."""
        layer_name = _module_name(name)
        linear = self.module.get_submodule(layer_name)
        sparse = SparseLinear.from_linear(linear, self.masks[name], self.execution)
        sparse.operand.request = self._request
        if self.optimizer is not None:
            swap_parameter(self.optimizer, linear.weight, sparse.values, lambda v: sparse.layout.gather(v).clone())
        _replace_submodule(self.module, layer_name, sparse)
        self.compressed[name] = sparse

    def layer_backends(self) -> dict[str, str]:
        """How each managed layer executes: ``"csr"`` (compressed) or ``"masked"``."""
        return {n: ("csr" if n in self.compressed else "masked") for n in self.masks}

    # ------------------------------------------------------------------ training hooks
    def _accumulates(self, t: int) -> bool:
        """Step ``t`` lies in the grad-accumulation window of a topology update that will happen."""
        delta = self.schedule.delta
        r = t % delta
        if not (r == 0 or r > delta - self.grad_accumulation):
            return False
        return self.schedule.is_update_step(t if r == 0 else t - r + delta)

    def _needs_dense_grad(self, t: int) -> bool:
        """Whether step ``t`` needs the dense weight gradient: the grow criterion (RigL, on the
        update step and its accumulation window) or, when the optimizer step is not skipped on
        update steps, the first step of grown connections (the masked backend takes it with the
        dense gradient at their positions)."""
        if self.is_static:
            return False
        if self.updater.needs_dense_grad and self.grad_accumulation > 1 and self._accumulates(t):
            return True
        return self.schedule.is_update_step(t) and (self.updater.needs_dense_grad or not self.skip_step_on_update)

    def next_step_needs_dense_grad(self) -> bool:
        """Whether the coming :meth:`before_optimizer_step` uses the dense weight gradient, so a
        caller that masks gradients early (e.g. before gradient clipping) must leave them whole."""
        return self._needs_dense_grad(self.step + 1)

    def _arm_dense_grads(self) -> None:
        """Tell compressed layers whether the *next* backward must produce the dense gradient."""
        self._request.active = self.next_step_needs_dense_grad()
        for layer in self.compressed.values():
            layer.operand.dense_grad = None

    def _dense_grad(self, name: str) -> Optional[torch.Tensor]:
        layer = self.compressed.get(name)
        return layer.dense_weight_grad if layer is not None else self._weights[name].grad

    @torch.no_grad()
    def _accumulate(self) -> None:
        for name in self.masks:
            grad = self._dense_grad(name)
            if grad is None:
                continue
            if name in self._accum:
                self._accum[name].add_(grad)
            else:
                self._accum[name] = grad.detach().clone()
        self._accum_count += 1

    def _dense_grads(self) -> dict[str, Optional[torch.Tensor]]:
        if self.grad_accumulation == 1:
            return {n: self._dense_grad(n) for n in self.masks}
        return {n: (self._accum[n] / self._accum_count if n in self._accum else None) for n in self.masks}

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
        for p, dropped in zip(self._partial_weights, self._dropped):
            if p.grad is not None:
                p.grad.masked_fill_(dropped, 0.0)
        self._arm_dense_grads()
        return not (updated and self.skip_step_on_update)

    @torch.no_grad()
    def update_topology(self, grads: Optional[dict] = None, t: Optional[int] = None) -> dict:
        """Run one topology update now (normally called by :meth:`before_optimizer_step`).

        ``grads``: dense gradient per weight name (RigL); ``t``: step used for the drop
        fraction (default: the current step). Returns ``{name: LayerChange}``.
        """
        t = self.step if t is None else t
        changes = {}
        for name, mask in self.masks.items():
            n = self.schedule.drop_count(t, int(mask.sum()))
            grad = None if grads is None else grads.get(name)
            if grad is None and self.updater.needs_dense_grad and n > 0:
                raise ValueError(f"layer {name!r} has no gradient for the {self.updater.name} update; "
                                 f"call before_optimizer_step() after loss.backward()")
            if name in self.compressed:
                dense = self.compressed[name].weight   # a fresh dense copy the updater edits
                change = self.updater.update(dense, mask, n, grad)
                self._relayout(name, dense, change.changed)
            else:
                p = self._weights[name]
                change = self.updater.update(p.data, mask, n, grad)
                reset_optimizer_state(self.optimizer, p, change.changed, self.reset_optimizer_state)
            changes[name] = change
        apply_masks(self.module, self._masked_masks)
        self._refresh_fast_masks()
        self.n_topology_updates += 1
        self.last_change = changes
        return changes

    @torch.no_grad()
    def _relayout(self, name: str, dense: torch.Tensor, changed: Optional[torch.Tensor] = None) -> None:
        """Rebuild a compressed layer's structure from its mask: weights from ``dense``,
        optimizer state of surviving connections carried over (entries in ``changed`` and new
        connections start from zero state), the pending gradient re-gathered (the dense one
        when this step computed it), and every registered target re-laid out the same way."""
        layer = self.compressed[name]
        old, new = layer.layout, CsrLayout(self.masks[name])
        values = layer.values
        state = self.optimizer.state.get(values) if self.optimizer is not None else None
        for key, value in list((state or {}).items()):
            if not (torch.is_tensor(value) and value.shape == values.shape):
                continue
            full = self._pending_optimizer_state.pop((name, key), None)
            full = old.to_dense(value) if full is None else full.clone()
            if changed is not None:
                full.masked_fill_(changed, 0)
            state[key] = new.gather(full).clone()
        if values.grad is not None:
            full = layer.dense_weight_grad if layer.dense_weight_grad is not None else old.to_dense(values.grad)
            values.grad = new.gather(full).clone()
        layer.set_layout(new, dense)
        for _, target_layers, _ in self._targets.values():
            target_layers[name].set_layout(new)   # dropped weights stay in its residual until sync

    @torch.no_grad()
    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Replace the masks from outside (pruning schedules such as GMP decide the pattern
        themselves and use this object only to enforce it). Copies in place, so attached
        execution backends keep their reference; weights outside the new masks become 0."""
        if self.compressed:
            raise ValueError("set_masks works on masked layers only (backend 'masked')")
        for n, m in masks.items():
            self.masks[n].copy_(m.to(self.masks[n].device))
        apply_masks(self.module, self.masks)
        self._refresh_fast_masks()

    @torch.no_grad()
    def prune_by_magnitude(self, sparsity: float) -> None:
        """One gradual-magnitude-pruning step (GMP's score applied here, where the weights are):
        each layer keeps its ``layer_nonzero_counts(shapes, sparsity, allocation)`` largest-|w|
        active weights.  The new masks are subsets of the old, so pruned weights never return;
        ties go to :func:`torch.topk`'s order (deterministic on one machine)."""
        counts = layer_nonzero_counts(self.shapes, sparsity, self.allocation)
        masks = {}
        for n, w in self._weights.items():
            score = w.abs().masked_fill(~self.masks[n], -1.0).flatten()  # inactive: below any |w|
            keep = torch.zeros_like(score, dtype=torch.bool)
            keep[torch.topk(score, counts[n]).indices] = True
            masks[n] = keep.view_as(w) & self.masks[n]
        self.set_masks(masks)

    def _refresh_fast_masks(self) -> None:
        """0/1 float copies of the masks of the masked layers that have inactive entries,
        aligned with ``self._partial_weights``, for the hot path: masking every step with one
        ``_foreach_mul_`` instead of a Python loop of ``masked_fill_`` calls (the masks change
        only at topology updates).  Fully dense layers (ERK's small input/output layers) are
        skipped: multiplying by ones changes nothing.  Multiplying gives exact zeros (possibly
        -0.0, which compares equal to 0)."""
        self._partial_names = [n for n in self._weights if not bool(self.masks[n].all())]
        self._partial_weights = [self._weights[n] for n in self._partial_names]
        self._fast_masks = [self.masks[n].to(self._weights[n].dtype) for n in self._partial_names]
        self._dropped = [~self.masks[n] for n in self._partial_names]
        self._target_weights_stale = True

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Re-zero masked weights (Adam moments / weight decay would otherwise move them);
        compressed layers hold no inactive weights, so nothing happens there."""
        if self._has_attached_execution():
            apply_masks(self.module, self._masked_masks)
        elif self._partial_weights:
            torch._foreach_mul_(self._partial_weights, self._fast_masks)

    @torch.no_grad()
    def sync(self, *targets: nn.Module) -> None:
        """Give target networks the online sparsity (after every soft/hard target update).

        Masked layers: inactive weights are zeroed.  Compressed layers: the first sync
        compresses the target's layer onto the online layout (the target then runs the same
        kernels and its ``values`` pair with the online ones in ``zip(parameters())``); later
        syncs only drop the weights a topology update removed since (its ``residual``)."""
        for target in targets:
            key = id(target)
            if key not in self._targets:
                self._targets[key] = (target, self._compress_target(target), [])
                self._target_owners[key] = self._owners_in(target)
                self._target_weights_stale = True
            _, target_layers, target_weights = self._targets[key]
            for name, layer in target_layers.items():
                online = self.compressed[name].layout
                if layer.layout is not online:
                    layer.set_layout(online)
                layer.clear_residual()
            if self._has_attached_execution(self._target_owners[key]):
                sync_masks(target, self._masked_masks)
                continue
            if self._target_weights_stale:
                self._refresh_target_weights()
                target_weights = self._targets[key][2]
            if target_weights:
                torch._foreach_mul_(target_weights, self._fast_masks)

    def _refresh_target_weights(self) -> None:
        for key, (target, layers, _) in self._targets.items():
            self._targets[key] = (target, layers, list(get_weights(target, self._partial_names).values()))
        self._target_weights_stale = False

    def _compress_target(self, target: nn.Module) -> dict[str, SparseLinear]:
        layers = {}
        for name, online in self.compressed.items():
            layer_name = _module_name(name)
            try:
                current = target.get_submodule(layer_name)
            except AttributeError:
                raise ValueError(f"target has no layer {layer_name!r}; it must have the same layer names "
                                 f"as the online network") from None
            if not isinstance(current, SparseLinear):
                if not isinstance(current, nn.Linear):
                    raise ValueError(f"target layer {layer_name!r} is not an nn.Linear")
                current = SparseLinear.from_linear(current, self.masks[name], self.execution, layout=online.layout)
                _replace_submodule(target, layer_name, current)
            layers[name] = current
        if layers:
            for name in self._weights:
                use_feature_major(target.get_submodule(_module_name(name)) if _module_name(name) else target)
        return layers

    def _owners_in(self, module: nn.Module) -> list[nn.Module]:
        """The modules owning the masked weights, in ``module`` (online or a target)."""
        return [module.get_submodule(_module_name(n)) if _module_name(n) else module for n in self._weights]

    def _has_attached_execution(self, owners: Optional[list] = None) -> bool:
        """Whether the inference seam :func:`attach_execution` routes a masked layer (then the
        masks, not the multiply-by-0/1 fast path, must also refresh the layer's mask copy).
        Checked every step (a backend can be attached at any time), so it reads ``__dict__``
        directly: ``getattr`` on a module goes through ``nn.Module.__getattr__``."""
        owners = self._masked_owners if owners is None else owners
        return any(m.__dict__.get("_sparserl_mask") is not None for m in owners)

    # ------------------------------------------------------------ optimizer state format
    def _values_index(self, optimizer: torch.optim.Optimizer) -> dict[str, int]:
        """Index of each compressed layer's values in the optimizer state dict's numbering."""
        ids = {id(layer.values): name for name, layer in self.compressed.items()}
        out, index = {}, 0
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) in ids:
                    out[ids[id(p)]] = index
                index += 1
        return out

    def _optimizer_state_to_dense(self, optimizer, state_dict: dict) -> dict:
        """State-dict hook: moments of compressed layers saved dense-shaped (zeros at inactive
        positions), exactly what the masked backend saves, so checkpoints are backend-free."""
        state = dict(state_dict["state"])
        for name, index in self._values_index(optimizer).items():
            if index not in state:
                continue
            layer = self.compressed[name]
            state[index] = {k: (layer.layout.to_dense(v.detach()).clone()
                                if torch.is_tensor(v) and v.shape == layer.values.shape else v)
                            for k, v in state[index].items()}
        state_dict["state"] = state
        return state_dict

    @torch.no_grad()
    def _optimizer_state_from_dense(self, optimizer) -> None:
        """Load hook: dense-shaped moments are gathered at the current layout and kept until
        :meth:`load_state_dict` re-lays the layers out with the checkpoint's masks."""
        for name, layer in self.compressed.items():
            state = optimizer.state.get(layer.values)
            for key, value in list((state or {}).items()):
                if torch.is_tensor(value) and value.shape == self.shapes[name]:
                    self._pending_optimizer_state[(name, key)] = value.clone()
                    state[key] = layer.layout.gather(value).clone()

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
        """Restore masks, counters and RNG; compressed layers (and registered targets) are
        re-laid out on the loaded masks, taking weights from what the network's own
        ``load_state_dict`` left in them and optimizer state from the optimizer's."""
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
        self._accum = {n: g.to(self.masks[n].device).clone() for n, g in state.get("grad_accum", {}).items()}
        self._accum_count = int(state.get("grad_accum_count", 0))
        for name, layer in self.compressed.items():
            self._relayout(name, layer.weight)
        self._pending_optimizer_state.clear()
        apply_masks(self.module, self._masked_masks)
        self._refresh_fast_masks()
        self._arm_dense_grads()

    def __repr__(self) -> str:
        backends = sorted(set(self.layer_backends().values()))
        return (f"SparseTraining(sparsity={self.sparsity():.3f}, allocation={self.allocation!r}, "
                f"updater={self.updater.name!r}, step={self.step}, backend={self.execution.name!r} "
                f"({'/'.join(backends)}), topology_updates={self.n_topology_updates}, layers={list(self.masks)})")
