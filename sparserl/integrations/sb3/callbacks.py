"""The two SB3 callbacks, :class:`SparseTrainingCallback` and :class:`StructuredPruningCallback`,
and the plumbing they share: build once per model, wrap the optimizers for one ``learn()``,
tear down on any exit, report through SB3's logger."""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from torch import nn

from ...errors import UserError
from ...methods import method_class
from ...methods.base import network_updates
from ...sparse import SparseTraining
from ...sparse.flops import forward_flops, layer_flops, totals
from ...structured import StructuredPruner
from .budget import planned_updates
from .discovery import PrunableChain, SparseNetwork, prunable_chains, sparse_networks
from .hooks import _StepWrapper, _wrap_optimizers
from .io import ARCHITECTURE_ATTRIBUTE

__all__ = ["SparseTrainingCallback", "StructuredPruningCallback", "SPARSE_METHODS"]

SPARSE_METHODS = ("rigl", "set", "static")


class _ModelCallback(BaseCallback):
    """What both callbacks share: built once per model at the first ``learn()`` (later calls
    reuse the masks / pruners), optimizer steps wrapped for the duration of ``learn()``, and a
    report written to SB3's logger at training start and at every rollout end. Subclasses
    implement ``_build``, ``_install`` and ``_on_training_end``."""

    def __init__(self, planned_updates: Optional[int], verbose: int):
        super().__init__(verbose)
        if planned_updates is not None and (isinstance(planned_updates, bool) or int(planned_updates) < 1):
            raise UserError(f"planned_updates={planned_updates!r}; allowed: None or an int >= 1")
        self.planned_updates = planned_updates
        self._built_for: Optional[BaseAlgorithm] = None
        self._wrappers: dict[int, _StepWrapper] = {}
        self._report: dict[str, float] = {}

    def _planned_steps(self) -> int:
        """Gradient steps of this ``learn()`` call: given, or computed from its total_timesteps."""
        return self.planned_updates or planned_updates(
            self.model, self.locals.get("total_timesteps", self.model._total_timesteps), self.model.num_timesteps)

    def _build(self) -> None:
        raise NotImplementedError

    def _install(self) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        """Remove every wrapper and hook this callback installed (idempotent)."""
        raise NotImplementedError

    def _on_training_start(self) -> None:
        try:
            self._teardown()   # this callback's own install from a learn() that raised, if any
            if self._built_for is not self.model:
                self._build()
            self._install()
            self._guard_events()
        except BaseException:
            self._teardown()   # a half-done install never outlives this call
            raise
        self._record()

    _GUARDED_EVENTS = ("on_step", "on_rollout_start", "on_rollout_end")

    def _guard_events(self) -> None:
        """The ``finally`` of this ``learn()``: SB3 calls ``on_training_end`` only when training
        ends normally, so when another callback raises, the optimizer wrappers would stay installed
        (and the next ``learn()`` be refused as "already wrapped"). The top-level callback of the
        call (``learn``'s local ``callback``: the CallbackList, or this callback) gets its event
        methods wrapped for the duration of the call; an exception from any of them tears this
        callback down before it propagates. Exceptions from elsewhere in SB3's loop (the env)
        leave a stale wrapper that the next ``learn()`` removes (:class:`_StepWrapper`)."""
        top = self.locals.get("callback") if isinstance(self.locals, dict) else None
        if not isinstance(top, BaseCallback):
            return
        for name in self._GUARDED_EVENTS:
            original = getattr(top, name)

            def guarded(*args, _original=original, **kwargs):
                try:
                    return _original(*args, **kwargs)
                except BaseException:
                    self._teardown()
                    raise
            guarded.sparserl_owner = self
            setattr(top, name, guarded)
        self._guarded_top = top

    def _unguard(self) -> None:
        top = getattr(self, "_guarded_top", None)
        if top is not None:
            for name in self._GUARDED_EVENTS:
                if getattr(vars(top).get(name), "sparserl_owner", None) is self:
                    del vars(top)[name]
        self._guarded_top = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self._record()

    def _record(self) -> None:
        for key, value in self._report.items():
            self.logger.record(key, value)


# ------------------------------------------------------------------ sparse training callback
class SparseTrainingCallback(_ModelCallback):
    """Unstructured sparse training (RigL / SET / static masks) of an SB3 model's networks.

    Args:
        method: ``"rigl"`` (drop smallest |w|, grow largest |dense gradient|), ``"set"`` (grow
            random) or ``"static"`` (fixed mask).
        sparsity: fraction of Linear weights masked in every network, or a mapping from network
            name (``"actor"``, ``"critic"``, ``"q"``) to its sparsity.
        allocation, mask_init, topology_delta, drop_fraction, topology_stop, grad_accumulation,
            reset_adam, skip_step_on_update, regrow_dropped: the options of ``sparserl train
            --method <method>`` of the same names, with the same defaults (``None``: that
            method's default; both resolve through the method's option blocks, see
            :mod:`sparserl.methods.options`). Times count gradient steps of a network;
            ``drop_fraction`` is cosine-annealed to 0 at the network's planned gradient steps.
        delta, init, reset_optimizer_state: the older spellings of ``topology_delta``,
            ``mask_init`` and ``reset_adam`` (still accepted).
        planned_updates: gradient steps of this ``learn()`` call (default: computed by
            :func:`planned_updates`); TD3's actor uses ``planned_updates // policy_delay``.
        seed: seed of the masks' random generator (default: the model's seed; None on both
            draws it from torch's global RNG).

    After training, ``callback.sparse`` maps network names to their
    :class:`~sparserl.sparse.SparseTraining` (masks, counters). Logged through SB3's logger at
    every rollout end: ``sparse/<net>_sparsity``, ``sparse/<net>_nonzero_weights``,
    ``sparse/<net>_forward_flops`` (per sample, sparse), ``sparse/<net>_forward_flops_dense``
    and ``sparse/topology_updates``.
    """

    #: older keyword -> the option's name (as ``sparserl train`` spells it)
    OLD_NAMES = {"delta": "topology_delta", "init": "mask_init", "reset_optimizer_state": "reset_adam"}

    def __init__(self, method: str = "rigl", sparsity: Union[float, Mapping[str, float]] = 0.9, *,
                 allocation: Optional[str] = None, mask_init: Optional[str] = None,
                 topology_delta: Optional[int] = None, drop_fraction: Optional[float] = None,
                 topology_stop: Optional[float] = None, grad_accumulation: Optional[int] = None,
                 reset_adam: Optional[bool] = None, skip_step_on_update: Optional[bool] = None,
                 regrow_dropped: Optional[bool] = None, planned_updates: Optional[int] = None,
                 seed: Optional[int] = None, verbose: int = 0, delta: Optional[int] = None,
                 init: Optional[str] = None, reset_optimizer_state: Optional[bool] = None):
        super().__init__(planned_updates, verbose)
        if method not in SPARSE_METHODS:
            raise UserError(f"method={method!r}; allowed: {', '.join(SPARSE_METHODS)}")
        given = dict(allocation=allocation, mask_init=mask_init, topology_delta=topology_delta,
                     drop_fraction=drop_fraction, topology_stop=topology_stop, grad_accumulation=grad_accumulation,
                     reset_adam=reset_adam, skip_step_on_update=skip_step_on_update, regrow_dropped=regrow_dropped)
        labels = {name: name for name in given}
        for old, value in (("delta", delta), ("init", init), ("reset_optimizer_state", reset_optimizer_state)):
            if value is not None:
                new = self.OLD_NAMES[old]
                if given[new] is not None:
                    raise UserError(f"SparseTrainingCallback: {old}={value!r} and {new}={given[new]!r} are the same "
                                    f"option; allowed: one of them")
                given[new], labels[new] = value, old
        self.method = method
        self.method_options = method_class(method).from_options("SparseTrainingCallback", labels, **given)
        self.sparsity = sparsity
        self.seed = seed
        self.sparse: dict[str, SparseTraining] = {}
        self.networks: dict[str, SparseNetwork] = {}
        self._grad_hooks: list = []

    # -- set-up ------------------------------------------------------------------------------
    def _sparsity_of(self, name: str) -> float:
        if isinstance(self.sparsity, Mapping):
            if name not in self.sparsity:
                raise UserError(f"sparsity has no entry for network {name!r}; "
                                f"allowed keys for this model: {', '.join(self.networks)}")
            return self.sparsity[name]
        return self.sparsity

    def _build(self) -> None:
        networks = sparse_networks(self.model)
        self.networks = {n.name: n for n in networks}
        if isinstance(self.sparsity, Mapping) and set(self.sparsity) - set(self.networks):
            raise UserError(f"sparsity names unknown network(s) {sorted(set(self.sparsity) - set(self.networks))}; "
                            f"allowed: {', '.join(self.networks)}")
        steps = self._planned_steps()
        seed = self.seed if self.seed is not None else self.model.seed
        self.sparse = {}
        for i, net in enumerate(networks):
            generator = None if seed is None else torch.Generator().manual_seed(int(seed) * 1000 + i)
            try:  # the builder of ``sparserl train --method <method>`` (one place maps options to masks)
                self.sparse[net.name] = self.method_options.make_sparse(
                    net.module, net.optimizer, self._sparsity_of(net.name), network_updates(steps, net.update_every),
                    layers=net.layers, generator=generator)
            except ValueError as exc:
                raise UserError(f"SparseTrainingCallback, network {net.name!r}: {exc}") from None
            self.sparse[net.name].sync(*net.targets)
        self._built_for = self.model
        self._report = self._static_report()

    def _static_report(self) -> dict[str, float]:
        """Sparsity and FLOPs never change during training (a topology update drops as many
        connections as it grows), so they are computed once."""
        out = {}
        for name, sparse in self.sparse.items():
            layers = set(self.networks[name].layers)
            rows = [r for r in layer_flops(sparse.module, sparse.masks) if r.name in layers]
            total = totals(rows)
            out[f"sparse/{name}_sparsity"] = sparse.sparsity()
            out[f"sparse/{name}_nonzero_weights"] = total.weights_nonzero
            out[f"sparse/{name}_forward_flops"] = total.flops_sparse
            out[f"sparse/{name}_forward_flops_dense"] = total.flops_dense
        return out

    def _install(self) -> None:
        self._wrappers = _wrap_optimizers((n.optimizer for n in self.networks.values()), self, self.locals)
        for name, sparse in self.sparse.items():
            net = self.networks[name]
            wrapper = self._wrappers[id(net.optimizer)]
            wrapper.before.append(sparse.before_optimizer_step)
            wrapper.after.append(self._after_step(sparse, net.targets))
            params = dict(net.module.named_parameters())
            for wname, mask in sparse.masks.items():
                self._grad_hooks.append(params[wname].register_post_accumulate_grad_hook(
                    self._early_mask(sparse, mask)))

    @staticmethod
    def _after_step(sparse: SparseTraining, targets: list[nn.Module]) -> Callable[[], None]:
        seen = [sparse.n_topology_updates]

        def after() -> None:
            sparse.after_optimizer_step()
            if sparse.n_topology_updates != seen[0]:   # dropped entries are still set in the targets
                seen[0] = sparse.n_topology_updates
                sparse.sync(*targets)
        return after

    @staticmethod
    def _early_mask(sparse: SparseTraining, mask: torch.Tensor) -> Callable[[torch.Tensor], None]:
        """Zero a masked weight's gradient right after backward (so gradient clipping sees the
        sparse gradient) unless the coming step needs the dense gradient for RigL."""
        def hook(param: torch.Tensor) -> None:
            if param.grad is not None and not sparse.next_step_needs_dense_grad():
                # masks are edited in place by topology updates; masked_fill, not a multiply,
                # so an overflowing masked gradient becomes 0 (inf * 0 would be NaN)
                param.grad.masked_fill_(~mask, 0.0)
        return hook

    def _uninstall(self) -> None:
        self._unguard()
        for w in self._wrappers.values():
            w.remove()
        for h in self._grad_hooks:
            h.remove()
        self._wrappers, self._grad_hooks = {}, []

    _teardown = _uninstall

    # -- SB3 callback events ------------------------------------------------------------------
    def _on_training_end(self) -> None:
        self._uninstall()
        for name, sparse in self.sparse.items():
            sparse.sync(*self.networks[name].targets)
        self._record()

    def _record(self) -> None:
        super()._record()
        self.logger.record("sparse/topology_updates", sum(s.n_topology_updates for s in self.sparse.values()))


# --------------------------------------------------------------- structured pruning callback
class StructuredPruningCallback(_ModelCallback):
    """Dynamic structured (neuron) pruning of an SB3 model's MLPs, as ``--method structured``.

    One :class:`~sparserl.structured.StructuredPruner` per MLP chain (:func:`prunable_chains`)
    with the same neuron-importance regulariser, threshold rule and surgery; pruned neurons are
    physically removed from SB3's networks, their target networks and optimizer state.
    The options and their defaults are those of ``sparserl train --method structured`` (or
    ``neuron-magnitude``): both resolve through the method's option blocks
    (:class:`sparserl.methods.options.StructuredOptions`, ``PruneWindowOptions``) and build
    each pruner with the same builder (:meth:`sparserl.methods.structured.Structured.make_pruner`).

    Args:
        method: ``"structured"`` or ``"neuron-magnitude"`` (no regulariser, magnitude importance).
        importance, regularizer, reg_lambda, reg_mode, prune_every, prune_start, prune_end,
        min_width, threshold_scope, recovery_reg_scale: the options of ``sparserl train`` of the
            same names (``None``: the method's default). Times count gradient steps of the
            pruned network; fractions are of its planned updates (an int ``prune_start`` /
            ``prune_end`` above 1 is an absolute update count, as in the pruner).
        target_fraction: ``--target-neuron-fraction``; rule: ``--threshold-rule`` (``ramp``,
            ``cubic`` or ``threshold``).
        max_ratio, ema, eps, compensate: the pruner's own knobs, no CLI option
            (:class:`~sparserl.structured.StructuredPruner`; ``None``: its default).
        shrink: remove pruned neurons at once (default) or mask them until :meth:`shrink_now`.
        planned_updates: gradient steps of this ``learn()`` call (default:
            :func:`planned_updates`).

    ``callback.pruners`` maps chain names to their pruners. Logged at every rollout end:
    ``structured/<chain>_neurons_alive``, ``structured/<chain>_forward_flops`` (per sample, of
    the physical network), ``structured/<chain>_forward_flops_dense`` (before pruning),
    ``structured/prune_events``. The shrunk widths are kept in
    ``model.sparserl_architecture`` (saved with the model; reload with :func:`load`).
    """

    #: keyword -> the option's name as ``sparserl train`` spells it, where they differ
    OPTION_NAMES = {"target_fraction": "target_neuron_fraction", "rule": "threshold_rule"}
    METHODS = ("structured", "neuron-magnitude")

    def __init__(self, method: str = "structured", *, importance: Optional[str] = None,
                 regularizer: Optional[str] = None, reg_lambda: Optional[float] = None,
                 prune_every: Optional[int] = None, prune_start: Union[float, int, None] = None,
                 prune_end: Union[float, int, None] = None, min_width: Optional[int] = None,
                 target_fraction: Optional[float] = None, rule: Optional[str] = None,
                 reg_mode: Optional[str] = None, threshold_scope: Optional[str] = None,
                 recovery_reg_scale: Optional[float] = None, max_ratio: Optional[float] = None,
                 ema: Optional[float] = None, eps: Optional[float] = None, compensate: Optional[bool] = None,
                 shrink: bool = True, planned_updates: Optional[int] = None, verbose: int = 0):
        super().__init__(planned_updates, verbose)
        if method not in self.METHODS:
            raise UserError(f"StructuredPruningCallback: method={method!r}; allowed: {', '.join(self.METHODS)}")
        keywords = dict(importance=importance, regularizer=regularizer, reg_lambda=reg_lambda, reg_mode=reg_mode,
                        prune_every=prune_every, min_width=min_width, target_fraction=target_fraction, rule=rule,
                        threshold_scope=threshold_scope, recovery_reg_scale=recovery_reg_scale)
        window = {}  # an absolute update count (an int above 1) is the pruner's, not a run option's, value
        for key, value in (("prune_start", prune_start), ("prune_end", prune_end)):
            absolute = isinstance(value, int) and not isinstance(value, bool) and value > 1
            (window if absolute else keywords)[key] = value
        given = {self.OPTION_NAMES.get(k, k): v for k, v in keywords.items()}
        labels = {self.OPTION_NAMES.get(k, k): k for k in keywords}
        self.method = method
        self.method_options = method_class(method).from_options("StructuredPruningCallback", labels, **given)
        extra = dict(max_ratio=max_ratio, ema=ema, eps=eps, compensate=compensate)
        self.pruner_options = {**window, **{k: v for k, v in extra.items() if v is not None}, "shrink": shrink}
        self.pruners: dict[str, StructuredPruner] = {}
        self.chains: dict[str, PrunableChain] = {}
        self._dense_flops: dict[str, int] = {}

    def _build(self) -> None:
        self.chains = prunable_chains(self.model)
        if not self.chains:
            raise UserError("no MLP chain with a hidden layer to prune in this model; "
                            "allowed: a net_arch with at least one hidden layer")
        steps = self._planned_steps()
        method = self.method_options
        self.pruners = {}
        for name, spec in self.chains.items():
            try:  # the builder of ``sparserl train --method structured`` (one place maps options to pruners)
                self.pruners[name] = method.make_pruner(
                    spec.chain, spec.optimizer, network_updates(steps, spec.update_every), spec.mirrors,
                    method.options.target_neuron_fraction, **self.pruner_options)
            except ValueError as exc:
                raise UserError(f"StructuredPruningCallback, chain {name!r}: {exc}") from None
        self._dense_flops = {name: _chain_flops(spec.chain) for name, spec in self.chains.items()}
        self._built_for = self.model
        self._architecture_changed()

    def _install(self) -> None:
        self._wrappers = _wrap_optimizers((c.optimizer for c in self.chains.values()), self, self.locals)
        for opt_id, wrapper in self._wrappers.items():
            pruners = [self.pruners[n] for n, c in self.chains.items() if id(c.optimizer) == opt_id]
            wrapper.before.append(self._add_penalty_gradient(pruners))
            wrapper.after.append(self._after_step(pruners))
        for p in self.pruners.values():
            p.importance.attach()

    @staticmethod
    def _add_penalty_gradient(pruners: list[StructuredPruner]) -> Callable[[], bool]:
        def before() -> bool:
            penalty = sum(p.penalty() for p in pruners)
            if torch.is_tensor(penalty) and penalty.requires_grad:
                penalty.backward()   # accumulates into .grad on top of SB3's loss gradient
            return True
        return before

    def _after_step(self, pruners: list[StructuredPruner]) -> Callable[[], None]:
        def after() -> None:
            changed = False
            for p in pruners:
                changed = p.after_optimizer_step() or changed
            if changed:
                self._architecture_changed()
        return after

    def _architecture_changed(self) -> None:
        setattr(self.model, ARCHITECTURE_ATTRIBUTE, {n: p.architecture() for n, p in self.pruners.items()})
        report: dict[str, float] = {}
        for name, p in self.pruners.items():
            report[f"structured/{name}_neurons_alive"] = sum(alive for alive, _ in p.neuron_counts())
            report[f"structured/{name}_forward_flops"] = _chain_flops(self.chains[name].chain)
            report[f"structured/{name}_forward_flops_dense"] = self._dense_flops[name]
        report["structured/prune_events"] = sum(p.prune_events for p in self.pruners.values())
        self._report = report

    def shrink_now(self) -> bool:
        """Physically remove every masked neuron now (for ``shrink=False``). True if any changed."""
        changed = False
        for p in self.pruners.values():
            changed = p.shrink_now() or changed
        if changed:
            self._architecture_changed()
        return changed

    def summary(self) -> dict[str, dict]:
        """Per chain: neurons/weights alive vs original, architecture, prune events."""
        return {name: p.summary() for name, p in self.pruners.items()}

    # -- SB3 callback events ------------------------------------------------------------------
    def _teardown(self) -> None:
        self._unguard()
        for w in self._wrappers.values():
            w.remove()
        self._wrappers = {}
        for p in self.pruners.values():
            p.importance.detach()   # no hooks left on the model after learn()

    def _on_training_end(self) -> None:
        self._teardown()
        self._record()


def _chain_flops(chain: Sequence[nn.Linear]) -> int:
    """Forward FLOPs per sample of the chain's Linear layers as they are now."""
    return forward_flops(nn.ModuleList(chain))[0]
