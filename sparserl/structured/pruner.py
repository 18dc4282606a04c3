"""StructuredPruner: the one small interface algorithms use for dynamic neuron pruning.

Per update of the network it prunes::

    loss = td_loss + pruner.penalty()      # neuron-importance group-sparse regulariser
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    changed = pruner.after_optimizer_step() # counts the update; prunes on schedule

With ``reg_mode="proximal"`` :meth:`penalty` is zero and :meth:`after_optimizer_step` applies
the regulariser instead, as the group soft-threshold with step ``lr * lambda`` right after the
optimizer step (see :mod:`.regularizer`), before the prune check.

Importance is recorded by hooks during grad-enabled forward passes of the pruned network
(wrap passes that must not count, e.g. a critic evaluated inside the actor loss, in
``with pruner.no_recording(): ...``). On a prune event the per-layer threshold rule of
:mod:`.threshold` marks neurons dead; with ``shrink=True`` they are physically removed at once
(mirrors such as target networks and the optimizer state follow), otherwise they are masked
(zeroed, re-applied after every step) until :meth:`shrink_now`.

``alive`` is indexed by the *original* neurons; :meth:`architecture` gives the current physical
widths, so a checkpointed shrunk network is rebuilt with ``MLP(in, out, hidden=architecture())``
and this pruner resumed with :meth:`load_state_dict`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .diagnostics import grad_ratio, output_change, removed_norm_ratio
from .importance import DEFAULT_IMPORTANCE, IMPORTANCE_METHODS, NeuronImportance
from .regularizer import (REG_MODES, REGULARIZERS, group_sparse_penalty, importance_coefficients,
                          proximal_group_shrink)
from .surgery import apply_neuron_masks, resolve_chain, shrink, split_mirror
from .threshold import PruneSchedule

__all__ = ["StructuredPruner"]


class StructuredPruner:
    """Dynamic structured (neuron-level) pruning of one MLP chain.

    Args:
        chain_owner: a module with ``linear_layers()`` (e.g. ``sparserl.networks.MLP``) or a
            list of ``nn.Linear``.
        optimizer: the optimizer(s) over the chain's parameters (or None); kept consistent.
        planned_updates: number of updates of this network in the run (for fractional times;
            ``total_updates`` is the older keyword, still accepted).
        importance: "activation" | "fluctuation" (default) | "taylor" | "magnitude"
            (see :mod:`.importance`).
        regularizer: "importance" | "group-lasso" | "none".
        reg_lambda: regulariser strength lambda (>= 0). ``reg_mode="loss"``: the weight of the
            penalty in the loss (its effect depends on the loss scale and on Adam's
            normalisation). ``reg_mode="proximal"``: the shrink of a group's L2 norm per unit
            learning rate per update (times ``c_j``), the same meaning in every network.
        reg_mode: "loss" (penalty added to the loss, through the optimizer) | "proximal"
            (group soft-threshold after each optimizer step: exact zeros are reachable).
        lr: the learning rate of the proximal step; None reads it from the optimizer's param
            group holding the chain's first weight at every step (follows lr schedules).
        prune_every, prune_start, prune_end, max_ratio, target_fraction, rule, scope,
            recovery_reg_scale: see :class:`~.threshold.PruneSchedule` (``scope="global"``: one
            threshold and neuron budget over all hidden layers of the chain;
            ``recovery_reg_scale``: multiplier of ``reg_lambda`` after the last prune event).
        min_width: neurons every hidden layer keeps at least.
        ema: EMA decay of the importance statistics.
        eps: epsilon of the importance coefficients ``1 / (I/mean(I) + eps)``.
        shrink: remove pruned neurons physically at each prune event (else mask them).
        compensate: fold a pruned neuron's mean activation times its outgoing weights into the
            next layer's bias when it is pruned (needs activation statistics: not for
            "magnitude", which records none).
        mirrors: networks with the same architecture that follow every shrink/mask (target
            networks); an entry may be ``(owner, optimizer)``.
        probe_rows: rows of the first training input kept as the fixed probe batch of the
            ``output_change`` diagnostic (see :mod:`.diagnostics`; needs a ``chain_owner``
            module whose ``forward`` feeds the chain, e.g. an MLP; 0 turns the probe off).

    ``diagnostics`` holds the numbers of the last prune check (:mod:`.diagnostics`).
    """

    def __init__(self, chain_owner, optimizer=None, *, planned_updates: int | None = None,
                 total_updates: int | None = None,
                 importance: str = DEFAULT_IMPORTANCE, regularizer: str = "importance",
                 reg_lambda: float = 1e-4, prune_every: int = 1000,
                 prune_start: float | int = 0.05, prune_end: float | int = 0.5,
                 min_width: int = 4, ema: float = 0.99, shrink: bool = True,
                 mirrors: Sequence = (), max_ratio: float = 1.0,
                 target_fraction: float | None = None, rule: str = "ramp", eps: float = 0.1,
                 compensate: bool = True, scope: str = "layer", recovery_reg_scale: float = 1.0,
                 reg_mode: str = "loss", lr: float | None = None, probe_rows: int = 256):
        if importance not in IMPORTANCE_METHODS:
            raise ValueError(f"importance={importance!r}; allowed: {', '.join(IMPORTANCE_METHODS)}")
        if regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer={regularizer!r}; allowed: {', '.join(REGULARIZERS)}")
        if not float(reg_lambda) >= 0:
            raise ValueError(f"reg_lambda={reg_lambda}; allowed: >= 0")
        if reg_mode not in REG_MODES:
            raise ValueError(f"reg_mode={reg_mode!r}; allowed: {', '.join(REG_MODES)}")
        if lr is not None and not float(lr) > 0:
            raise ValueError(f"lr={lr}; allowed: > 0 or None (read from the optimizer)")
        if reg_mode == "proximal" and lr is None and optimizer is None and regularizer != "none":
            raise ValueError("reg_mode='proximal' needs a learning rate; allowed: give lr= or an optimizer")
        if isinstance(min_width, bool) or int(min_width) < 1:
            raise ValueError(f"min_width={min_width}; allowed: int >= 1")
        if not float(eps) > 0:
            raise ValueError(f"eps={eps}; allowed: > 0")
        self.owner = chain_owner
        self.chain = resolve_chain(chain_owner)
        self.optimizer = optimizer
        self.mirrors = list(mirrors)
        for m in self.mirrors:
            mc, _ = split_mirror(m)
            if [l.weight.shape for l in mc] != [l.weight.shape for l in self.chain]:
                raise ValueError("mirror architecture differs; allowed: same layer shapes as the chain")
        if planned_updates is not None and total_updates is not None and planned_updates != total_updates:
            raise ValueError(f"planned_updates={planned_updates} and total_updates={total_updates} are the same "
                             f"option; allowed: one of them")
        self.schedule = PruneSchedule(planned_updates if planned_updates is not None else total_updates,
                                      prune_start=prune_start, prune_end=prune_end,
                                      prune_every=prune_every, max_ratio=max_ratio,
                                      target_fraction=target_fraction, rule=rule, scope=scope,
                                      recovery_reg_scale=recovery_reg_scale)
        self.importance = NeuronImportance(self.chain, importance, ema=ema)
        self.regularizer = regularizer
        self.reg_lambda = float(reg_lambda)
        self.reg_mode = reg_mode
        self.lr = None if lr is None else float(lr)
        self.min_width = int(min_width)
        self.eps = float(eps)
        self.shrink_enabled = bool(shrink)
        self.compensate = bool(compensate)
        self.paused = False
        self.step = 0
        self.prune_events = 0
        widths = [layer.out_features for layer in self.chain[:-1]]
        self.original_widths = list(widths)
        self.in_features = self.chain[0].in_features
        self.out_features = self.chain[-1].out_features
        # alive: original indexing; positions[l]: original index of each physical neuron.
        self.alive = [torch.ones(w, dtype=torch.bool) for w in widths]
        self.positions = [torch.arange(w) for w in widths]
        # diagnostics of the last prune check; the penalty's gradient of a check's update (loss
        # mode) and the fixed probe batch for the output change
        self.diagnostics: dict[str, float] = {}
        self._reg_grads: list | None = None
        self.probe: torch.Tensor | None = None
        self.probe_rows = int(probe_rows)
        self._probe_owner = (chain_owner if isinstance(chain_owner, nn.Module) and hasattr(chain_owner, "linear_layers")
                             and self.probe_rows > 0 else None)
        self._probe_hook = None
        if self._probe_owner is not None:
            first = self.chain[0]
            self._probe_hook = first.register_forward_pre_hook(self._make_probe_hook(first))

    def _make_probe_hook(self, owner: nn.Module):
        def hook(module, args):
            # the first training pass of this network only (not a deep copy's, not no_grad/frozen)
            if (self.probe is not None or module is not owner or not args or not torch.is_grad_enabled()
                    or not module.weight.requires_grad):
                return
            self.probe = args[0].detach().reshape(-1, args[0].shape[-1])[:self.probe_rows].clone()
            self._drop_probe_hook()
        return hook

    def _drop_probe_hook(self) -> None:
        """Once the probe batch is kept, the hook leaves every later forward pass (act(), updates)."""
        if self._probe_hook is not None:
            self._probe_hook.remove()
            self._probe_hook = None

    # -- training-loop interface -----------------------------------------------------------
    def _effective_lambda(self, t: int) -> float:
        """lambda of update ``t`` after the schedule's recovery scale; 0 without a regulariser."""
        return 0.0 if self.regularizer == "none" else self.reg_lambda * self.schedule.reg_multiplier(t)

    def penalty(self) -> torch.Tensor:
        """The regulariser value (differentiable scalar) to add to this network's loss
        (zero with ``reg_mode="proximal"``, which applies it after the step instead)."""
        # the penalty enters the loss of the coming update, number step + 1
        reg_lambda = self._effective_lambda(self.step + 1)
        if reg_lambda == 0 or self.reg_mode != "loss":
            return torch.zeros((), device=self.chain[0].weight.device)
        alive = self._physical_alive()
        value = group_sparse_penalty(self.chain, reg_lambda, self.group_coefficients(alive), alive)
        if self._is_check(self.step + 1) and value.requires_grad:
            # the gradient-ratio diagnostic needs this update's penalty gradient on its own
            self._reg_grads = list(torch.autograd.grad(value, self._params(), retain_graph=True, allow_unused=True))
        return value

    def _params(self) -> list[torch.Tensor]:
        return [p for layer in self.chain for p in (layer.weight, layer.bias) if p is not None]

    def _is_check(self, t: int) -> bool:
        return not self.paused and self.schedule.is_prune_step(t)

    def _penalty_grads(self) -> list[torch.Tensor | None]:
        """grad of the penalty at the current weights and effective strength of update ``step``."""
        reg_lambda = self._effective_lambda(self.step)
        params = self._params()
        if reg_lambda == 0:
            return [None] * len(params)
        alive = self._physical_alive()
        with torch.enable_grad():
            value = group_sparse_penalty(self.chain, reg_lambda, self.group_coefficients(alive), alive)
            return list(torch.autograd.grad(value, params, allow_unused=True))

    def _record_grad_ratio(self, reg_grads: list | None) -> None:
        """``reg_grad_ratio`` for the update just taken (before the proximal step, if any)."""
        params = self._params()
        if self.reg_mode == "loss":
            reg = reg_grads if reg_grads is not None else [None] * len(params)
            loss = [None if p.grad is None else (p.grad if r is None else p.grad - r) for p, r in zip(params, reg)]
        else:
            reg = self._penalty_grads()
            loss = [p.grad for p in params]
        self.diagnostics["reg_grad_ratio"] = grad_ratio(reg, loss)

    @torch.no_grad()
    def _probe_output(self) -> torch.Tensor | None:
        if self._probe_owner is None or self.probe is None:
            return None
        with self.importance.recording(False):
            return self._probe_owner(self.probe.to(self.chain[0].weight.device)).detach().clone()

    def group_coefficients(self, alive: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor | None] | None:
        """``c_j`` per hidden layer for the current weights and importance, shared by both
        reg modes: ``1 / (I_j / mean_alive(I) + eps)`` for "importance" (None, i.e. 1, where a
        layer has no importance yet), None (all 1) for "group-lasso"."""
        if self.regularizer != "importance":
            return None
        alive = self._physical_alive() if alive is None else alive
        scores = self.importance.scores()
        return [None if s is None else importance_coefficients(s, alive[i], self.eps)
                for i, s in enumerate(scores)]

    def learning_rate(self) -> float:
        """The step size of the proximal operator: ``lr`` if given, else the current lr of the
        optimizer's param group that holds the chain's first weight (the first group if none)."""
        if self.lr is not None:
            return self.lr
        optimizers = self.optimizer if isinstance(self.optimizer, (list, tuple)) else [self.optimizer]
        first = self.chain[0].weight
        groups = [g for o in optimizers if o is not None for g in o.param_groups]
        for group in groups:
            if any(p is first for p in group["params"]):
                return float(group["lr"])
        return float(groups[0]["lr"])

    def proximal_step(self) -> None:
        """Apply the group soft-threshold for the update just taken (number ``step``)."""
        reg_lambda = self._effective_lambda(self.step)
        if reg_lambda == 0:
            return
        alive = self._physical_alive()
        proximal_group_shrink(self.chain, self.learning_rate() * reg_lambda, self.group_coefficients(alive), alive)

    def after_optimizer_step(self) -> bool:
        """Count one update; prune on schedule. Returns True if the architecture/masks changed."""
        self.step += 1
        if not self.shrink_enabled and self.num_masked() > 0:
            self._apply_masks()
        reg_grads, self._reg_grads = self._reg_grads, None
        check = self._is_check(self.step) and self.importance.ready()
        if check:
            self._record_grad_ratio(reg_grads)
        if self.reg_mode == "proximal":
            self.proximal_step()
        if not check:
            return False
        return self.prune_now()

    def set_paused(self, paused: bool) -> None:
        """Guard: while paused, prune events are skipped (updates are still counted)."""
        self.paused = bool(paused)

    def no_recording(self):
        """Context manager: forward/backward passes inside do not update importance."""
        return self.importance.recording(False)

    def recording(self, enabled: bool = True):
        return self.importance.recording(enabled)

    # -- pruning -----------------------------------------------------------------------------
    def prune_now(self, t: int | None = None) -> bool:
        """Run one prune event at time ``t`` (default: the current update count)."""
        t = self.step if t is None else int(t)
        scores = self.importance.scores()
        phys_alive = self._physical_alive()
        changed = False
        layers = [i for i, score in enumerate(scores) if score is not None]
        new_alives = self.schedule.step(t, [scores[i].cpu() for i in layers],
                                        [phys_alive[i] for i in layers],
                                        [self.original_widths[i] for i in layers], self.min_width)
        proposed = list(phys_alive)
        for layer, new_alive in zip(layers, new_alives):
            proposed[layer] = new_alive
        self.diagnostics["removed_norm_ratio"] = removed_norm_ratio(self.chain, phys_alive, proposed)
        out_before = self._probe_output()
        for layer, new_alive in zip(layers, new_alives):
            alive = phys_alive[layer]
            if bool((new_alive != alive).any()):
                if self.compensate:
                    self._fold_mean_into_next_bias(layer, alive & ~new_alive)
                self.alive[layer][self.positions[layer][~new_alive]] = False
                changed = True
        if changed:
            self.prune_events += 1
            if self.shrink_enabled:
                self.shrink_now()
            else:
                self._apply_masks()
        if out_before is not None:
            self.diagnostics["output_change"] = output_change(out_before, self._probe_output()) if changed else 0.0
        return changed

    @torch.no_grad()
    def _fold_mean_into_next_bias(self, layer: int, removed: torch.Tensor) -> None:
        """b_{l+1} += W_{l+1}[:, removed] @ mean(a[removed]): the pruned neurons' average
        contribution stays in the network, so removing a near-constant neuron changes the
        output by its fluctuation only (also applied to mirrors, with their own W_{l+1})."""
        mean = self.importance.mean_activation(layer)
        if mean is None or not bool(removed.any()):
            return
        for chain in [self.chain] + [resolve_chain(m[0] if isinstance(m, tuple) else m) for m in self.mirrors]:
            nxt = chain[layer + 1]
            if nxt.bias is not None:
                idx = removed.nonzero().flatten().to(nxt.weight.device)
                nxt.bias.add_(nxt.weight[:, idx] @ mean.to(nxt.weight.device)[idx])

    @torch.no_grad()
    def shrink_now(self) -> bool:
        """Physically remove every pruned-but-present neuron. Returns True if anything changed."""
        changed = False
        for layer in range(len(self.chain) - 1):
            keep = self.alive[layer][self.positions[layer]]
            if bool(keep.all()):
                continue
            idx = shrink(self.chain, layer, keep, optimizer=self.optimizer, mirrors=self.mirrors)
            self.importance.slice(layer, idx)
            self.positions[layer] = self.positions[layer][idx]
            changed = True
        return changed

    def _physical_alive(self) -> list[torch.Tensor]:
        return [a[p] for a, p in zip(self.alive, self.positions)]

    def _apply_masks(self) -> None:
        masks = self._physical_alive()
        apply_neuron_masks(self.chain, masks)
        for m in self.mirrors:
            apply_neuron_masks(split_mirror(m)[0], masks)

    # -- reporting -----------------------------------------------------------------------------
    def num_masked(self) -> int:
        return sum(int((~a).sum()) for a in self._physical_alive())

    def neuron_counts(self) -> list[tuple[int, int]]:
        """(alive, original total) per hidden layer."""
        return [(int(a.sum()), int(a.numel())) for a in self.alive]

    def architecture(self) -> list[int]:
        """Current physical hidden widths (pass as ``hidden=`` to rebuild the network)."""
        return [layer.out_features for layer in self.chain[:-1]]

    def summary(self) -> dict:
        """Neurons and weights (``(n_in + 1) * n_out`` per layer) alive vs original."""
        alive = [c[0] for c in self.neuron_counts()]
        dims_now = [self.in_features, *alive, self.out_features]
        dims_orig = [self.in_features, *self.original_widths, self.out_features]

        def weights(d):
            return sum((a + 1) * b for a, b in zip(d[:-1], d[1:]))
        n_alive, n_total = sum(alive), sum(self.original_widths)
        w_now, w_orig = weights(dims_now), weights(dims_orig)
        return {"neurons_alive": n_alive, "neurons_total": n_total,
                "neurons_removed_frac": 1.0 - n_alive / n_total,
                "weights_alive": w_now, "weights_total": w_orig,
                "weights_removed_frac": 1.0 - w_now / w_orig,
                "architecture": self.architecture(), "original_architecture": list(self.original_widths),
                "prune_events": self.prune_events}

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "paused": self.paused, "prune_events": self.prune_events,
                "alive": [a.clone() for a in self.alive],
                "positions": [p.clone() for p in self.positions],
                "original_widths": list(self.original_widths),
                "architecture": self.architecture(),
                "importance": self.importance.state_dict(),
                "diagnostics": dict(self.diagnostics),
                "probe": None if self.probe is None else self.probe.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        """Resume; the chain must already have the checkpoint's ``architecture`` widths."""
        arch = [len(p) for p in state["positions"]]
        if arch != self.architecture():
            raise ValueError(f"checkpoint architecture {arch} differs from the network's "
                             f"{self.architecture()}; allowed: rebuild with hidden={arch}")
        self.step = int(state["step"])
        self.paused = bool(state["paused"])
        self.prune_events = int(state.get("prune_events", 0))
        self.alive = [a.clone().to(torch.bool) for a in state["alive"]]
        self.positions = [p.clone().long() for p in state["positions"]]
        self.original_widths = list(state["original_widths"])
        self.importance.load_state_dict(state["importance"])
        self.diagnostics = dict(state.get("diagnostics", {}))  # absent in older checkpoints
        probe = state.get("probe")
        self.probe = None if probe is None else probe.to(self.chain[0].weight.device).clone()
        if self.probe is not None:
            self._drop_probe_hook()
