"""Sparse training and structured pruning for Stable-Baselines3 models, as callbacks.

    from stable_baselines3 import PPO
    from sparserl.integrations.sb3 import SparseTrainingCallback, StructuredPruningCallback, load

    model = PPO("MlpPolicy", "CartPole-v1")
    model.learn(100_000, callback=SparseTrainingCallback("rigl", sparsity=0.9))
    model.save("ppo_sparse")                 # masked weights are zeros: PPO.load keeps them

    model = PPO("MlpPolicy", "CartPole-v1")
    model.learn(100_000, callback=StructuredPruningCallback())
    model.save("ppo_pruned")
    model = load("ppo_pruned", PPO)          # rebuilds the shrunk widths (PPO.load cannot)

Supported: PPO and A2C (``ActorCriticPolicy``), DQN, SAC, TD3 (and subclasses of their policies).
The callbacks drive :class:`sparserl.sparse.SparseTraining` and
:class:`sparserl.structured.StructuredPruner` unchanged; this module only finds SB3's networks
and hooks SB3's training loop without forking it.

How SB3's loop is hooked
------------------------
SB3 computes its losses and calls ``optimizer.step()`` inside ``train()``. At training start
each optimizer of a managed network gets an instance-level ``step`` wrapper (removed again at
training end): ``before`` runs right before the real step, ``after`` right after it; the real
step is skipped when the sparse core asks for it (``skip_step_on_update``). Hence:

* sparse training: ``SparseTraining.before_optimizer_step`` (counts the update, runs topology
  updates on schedule, masks gradients) and ``after_optimizer_step`` (re-zeroes masked weights)
  wrap every step. Gradients of masked weights are in addition zeroed as soon as ``backward()``
  accumulates them (a post-accumulate-grad hook), so SB3's ``clip_grad_norm_`` sees the sparse
  network's gradient; on a RigL update step (and always when ``grad_accumulation > 1``) the
  dense gradient is left in place for the grow criterion and masked by the core at the step.
* structured pruning: the regulariser cannot be added to SB3's loss, so its gradient is added
  right before the step (``penalty().backward()`` accumulates into ``.grad``; the sum of the
  gradients is the gradient of the sum). It therefore comes *after* SB3's gradient clipping:
  the penalty gradient itself is not clipped. ``StructuredPruner.after_optimizer_step`` runs
  after the step and prunes/shrinks on schedule.

Target networks (DQN ``q_net_target``, SAC ``critic_target``, TD3 ``actor_target`` /
``critic_target``) share the online zero pattern: they are masked at training start and after
every topology update. In between nothing else is needed: SB3's Polyak update
``target <- (1 - tau) * target + tau * online`` (hard copy: ``tau = 1``) keeps an entry at
exactly zero when it is zero in both. Structured pruning shrinks them with the online network
(the pruner's mirrors).

Schedules count gradient steps
------------------------------
Every schedule (topology ``delta`` / ``t_end``, ``prune_every`` / ``prune_start`` / ``prune_end``)
counts optimizer steps of the network it acts on, as everywhere in sparserl. The planned total
(``t_end`` of RigL/SET; ``total_updates`` of the pruner) is computed from ``learn()``'s
``total_timesteps`` by :func:`planned_gradient_steps`: PPO does ``n_epochs * ceil(n_steps *
n_envs / batch_size)`` steps per rollout, A2C one, off-policy algorithms ``gradient_steps``
(or the collected env steps for ``-1``) per rollout of ``train_freq`` steps after
``learning_starts``; TD3's actor (and its structured schedule) gets ``1 / policy_delay`` of
that. PPO's ``target_kl`` early stop makes the real count smaller (the cosine drop fraction
then does not reach 0). Pass ``planned_updates=`` to override (required for ``train_freq``
counted in episodes).

Which layers
------------
Sparse training masks every ``nn.Linear`` weight of the networks, input and output layers
included (biases, SB3's state-independent ``log_std`` parameter and any non-Linear layer such
as a CNN's convolutions stay dense), as ``sparserl --method rigl`` does. One
:class:`~sparserl.sparse.SparseTraining` per network, each with its own ERK/uniform
allocation over its layers:

=============  ==========================================================================
PPO, A2C       ``actor``: feature extractor (if it has Linear layers), ``mlp_extractor.policy_net``,
               ``action_net``; ``critic``: ``vf_features_extractor`` (only when not shared),
               ``mlp_extractor.value_net``, ``value_net``. Both share SB3's one optimizer.
DQN            ``q``: the Q-network (target: ``q_net_target``)
SAC            ``actor``: feature extractor, ``latent_pi``, ``mu``, ``log_std``; ``critic``: every
               Q-network (target ``critic_target``). A feature extractor shared with the
               critic belongs to the actor (the critic's optimizer excludes it in SB3).
TD3            ``actor`` (target ``actor_target``), ``critic`` (target ``critic_target``)
=============  ==========================================================================

Structured pruning removes hidden neurons of the MLP chains (hidden layers between the feature
extractor's output and the network's output; inputs and outputs are never pruned): PPO/A2C
``actor`` = ``policy_net`` + ``action_net`` and ``critic`` = ``value_net`` chain + ``value_net``,
DQN ``q``, SAC ``actor`` = ``latent_pi`` + ``mu`` (``log_std`` follows every shrink of the last
hidden layer as a mirror; its column is not part of the neuron's regulariser group or
importance), ``critic.qf0``, ``critic.qf1``, ...; TD3 ``actor`` = ``mu`` and the critics.
``use_sde=True`` is not supported by the structured callback (gSDE's noise matrix has the
width of the last hidden layer).

A callback builds its masks / pruners for the model at the first ``learn()`` it is passed to;
passing it to a later ``learn()`` of the same model continues its counters and schedules
(planned from the first call). Use a new callback per training run.

Save / load
-----------
Masked weights are exact zeros, so ``model.save()`` / ``Algo.load()`` keep the sparsity. The
masks themselves are not saved: a new ``SparseTrainingCallback`` on a loaded model (same
sparsity and allocation, ``init="magnitude"``) keeps its non-zero weights, since they are the
largest in magnitude (an active weight that happens to be exactly zero may be swapped). A
shrunk model stores its hidden widths in the attribute ``sparserl_architecture`` that SB3
saves with the model; SB3's own ``load`` rebuilds the default widths and fails on the shapes,
so use :func:`load`, which rebuilds the shrunk shape (optimizer state included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ..errors import UserError
from ..methods.structured import Structured
from ..sparse import SparseTraining
from ..sparse.flops import forward_flops, layer_flops, totals
from ..structured import StructuredPruner, hidden_widths, shrink

try:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("sparserl.integrations.sb3 needs Stable-Baselines3: "
                      "pip install 'sparserl[sb3]' (stable-baselines3>=2.3)") from exc

__all__ = ["SparseTrainingCallback", "StructuredPruningCallback", "load", "resize_to_architecture",
           "planned_gradient_steps", "sparse_networks", "prunable_chains", "ARCHITECTURE_ATTRIBUTE",
           "SPARSE_METHODS"]

SPARSE_METHODS = ("rigl", "set", "static")
#: model attribute (saved by SB3 with the model) holding the hidden widths of shrunk chains
ARCHITECTURE_ATTRIBUTE = "sparserl_architecture"


# ------------------------------------------------------------------------ gradient steps
def planned_gradient_steps(model: BaseAlgorithm, total_timesteps: int, num_timesteps: int = 0) -> int:
    """Optimizer steps ``model.learn()`` will take from ``num_timesteps`` to ``total_timesteps``
    env steps (see the module docstring); for TD3's actor divide by ``policy_delay``."""
    remaining = max(0, int(total_timesteps) - int(num_timesteps))
    if isinstance(model, OnPolicyAlgorithm):
        rollout = model.n_steps * model.n_envs
        iterations = math.ceil(remaining / rollout)
        epochs = int(getattr(model, "n_epochs", 1))
        batch = int(getattr(model, "batch_size", None) or rollout)
        return iterations * epochs * math.ceil(rollout / batch)
    if isinstance(model, OffPolicyAlgorithm):
        freq = model.train_freq
        if not isinstance(freq, TrainFreq):  # before learn() converts it
            freq = freq if isinstance(freq, tuple) else (freq, "step")
            freq = TrainFreq(int(freq[0]), TrainFrequencyUnit(freq[1]))
        if freq.unit != TrainFrequencyUnit.STEP:
            raise UserError(f"train_freq={tuple(freq)!r} counts episodes, so the number of gradient steps is "
                            f"unknown in advance; pass planned_updates=<gradient steps> to the callback")
        per_rollout = freq.frequency * model.n_envs
        rollouts = math.ceil(remaining / per_rollout)
        # SB3 trains after a rollout once num_timesteps > learning_starts
        before_start = max(0, (model.learning_starts - int(num_timesteps)) // per_rollout)
        steps = model.gradient_steps if model.gradient_steps >= 0 else per_rollout
        return max(0, rollouts - before_start) * steps
    raise UserError(f"{type(model).__name__} is not an on- or off-policy SB3 algorithm; "
                    f"allowed: PPO, A2C, DQN, SAC, TD3")


# ---------------------------------------------------------------------- network discovery
@dataclass
class SparseNetwork:
    """One network under one :class:`SparseTraining`: the ``layers`` (Linear module names) of
    ``module`` stepped by ``optimizer``; ``targets`` have the same layer names."""

    name: str
    module: nn.Module
    layers: list[str]
    optimizer: torch.optim.Optimizer
    targets: list[nn.Module] = field(default_factory=list)
    update_every: int = 1   # TD3's actor: one update per policy_delay critic updates


def _linear_names(module: nn.Module, prefixes: Sequence[str], optimizer=None) -> list[str]:
    """Linear module names of ``module`` under any of ``prefixes`` (``""``: all), keeping
    only layers whose weight ``optimizer`` steps (if given)."""
    stepped = None if optimizer is None else {id(p) for g in optimizer.param_groups for p in g["params"]}
    names = []
    for name, m in module.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        if not any(p == "" or name == p or name.startswith(p + ".") for p in prefixes):
            continue
        if stepped is not None and id(m.weight) not in stepped:
            continue
        names.append(name)
    return names


def _unsupported(model) -> UserError:
    return UserError(f"{type(model).__name__} with policy {type(model.policy).__name__} is not supported; "
                     f"allowed: PPO, A2C, DQN, SAC, TD3 (their policies or subclasses)")


def sparse_networks(model: BaseAlgorithm) -> list[SparseNetwork]:
    """The networks :class:`SparseTrainingCallback` sparsifies (table in the module docstring)."""
    policy = model.policy
    if isinstance(policy, ActorCriticPolicy):
        opt = policy.optimizer
        actor = _linear_names(policy, ["features_extractor", "pi_features_extractor",
                                       "mlp_extractor.policy_net", "action_net"])
        critic = _linear_names(policy, ["vf_features_extractor", "mlp_extractor.value_net", "value_net"])
        return [SparseNetwork("actor", policy, actor, opt), SparseNetwork("critic", policy, critic, opt)]
    if isinstance(policy, DQNPolicy):
        return [SparseNetwork("q", policy.q_net, _linear_names(policy.q_net, [""]), policy.optimizer,
                              [policy.q_net_target])]
    if isinstance(policy, (SACPolicy, TD3Policy)):
        actor, critic = policy.actor, policy.critic
        td3 = isinstance(policy, TD3Policy)
        return [
            SparseNetwork("actor", actor, _linear_names(actor, [""]), actor.optimizer,
                          [policy.actor_target] if td3 else [],
                          update_every=int(getattr(model, "policy_delay", 1)) if td3 else 1),
            SparseNetwork("critic", critic, _linear_names(critic, [""], critic.optimizer), critic.optimizer,
                          [policy.critic_target]),
        ]
    raise _unsupported(model)


@dataclass
class PrunableChain:
    """One MLP chain for one :class:`StructuredPruner`: ``mirrors`` follow every shrink
    (target networks; an ``(owner, optimizer)`` entry carries that optimizer along)."""

    name: str
    chain: list[nn.Linear]
    optimizer: torch.optim.Optimizer
    mirrors: list = field(default_factory=list)
    update_every: int = 1


_ELEMENTWISE = (nn.Identity, nn.Dropout, nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.SiLU, nn.GELU,
                nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Mish, nn.SELU, nn.CELU, nn.ReLU6, nn.Tanhshrink,
                nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.PReLU)


def _chain_of(sequential: nn.Module) -> list[nn.Linear]:
    """The Linear layers of an SB3 ``nn.Sequential`` MLP, checking that everything between them
    acts element-wise (a neuron-mixing layer such as LayerNorm would make surgery wrong)."""
    modules = list(sequential) if isinstance(sequential, nn.Sequential) else [sequential]
    for m in modules:
        if not isinstance(m, (nn.Linear, *_ELEMENTWISE)):
            raise UserError(f"layer {type(m).__name__} in {type(sequential).__name__} is not supported by structured "
                            f"pruning; allowed: nn.Linear and element-wise activations")
    return [m for m in modules if isinstance(m, nn.Linear)]


def _shadow_chain(chain: Sequence[nn.Linear], head: nn.Linear) -> list[nn.Linear]:
    """A mirror that makes ``head`` (a second output head on the last hidden layer of
    ``chain``) follow every shrink: throw-away copies of the hidden layers' shapes, then ``head``."""
    w = chain[0].weight
    shadows = [nn.Linear(l.in_features, l.out_features, device=w.device, dtype=w.dtype) for l in chain[:-1]]
    return shadows + [head]


def prunable_chains(model: BaseAlgorithm) -> dict[str, PrunableChain]:
    """The MLP chains :class:`StructuredPruningCallback` prunes, by name (module docstring).
    Chains without a hidden layer are left out."""
    policy = model.policy
    if getattr(model, "use_sde", False):
        raise UserError("use_sde=True is not supported by structured pruning (gSDE's noise matrix has the "
                        "last hidden layer's width); allowed: use_sde=False")
    chains: list[PrunableChain] = []
    if isinstance(policy, ActorCriticPolicy):
        ext, opt = policy.mlp_extractor, policy.optimizer
        chains += [PrunableChain("actor", _chain_of(ext.policy_net) + [policy.action_net], opt),
                   PrunableChain("critic", _chain_of(ext.value_net) + [policy.value_net], opt)]
    elif isinstance(policy, DQNPolicy):
        chains.append(PrunableChain("q", _chain_of(policy.q_net.q_net), policy.optimizer,
                                    [_chain_of(policy.q_net_target.q_net)]))
    elif isinstance(policy, (SACPolicy, TD3Policy)):
        actor = policy.actor
        if isinstance(policy, TD3Policy):
            chains.append(PrunableChain("actor", _chain_of(actor.mu), actor.optimizer,
                                        [_chain_of(policy.actor_target.mu)],
                                        update_every=int(getattr(model, "policy_delay", 1))))
        else:
            chain = _chain_of(actor.latent_pi) + [actor.mu]
            chains.append(PrunableChain("actor", chain, actor.optimizer,
                                        [(_shadow_chain(chain, actor.log_std), actor.optimizer)]))
        for i, (q, q_target) in enumerate(zip(policy.critic.q_networks, policy.critic_target.q_networks)):
            chains.append(PrunableChain(f"critic.qf{i}", _chain_of(q), policy.critic.optimizer, [_chain_of(q_target)]))
    else:
        raise _unsupported(model)
    return {c.name: c for c in chains if len(c.chain) >= 2}


# ------------------------------------------------------------------------ step wrapping
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


# ------------------------------------------------------------------ shared callback plumbing
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
        return self.planned_updates or planned_gradient_steps(
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
        allocation: ``"erk"`` or ``"uniform"`` layer-wise densities within a network.
        init: ``"magnitude"`` (keep the largest initial weights) or ``"random"``.
        delta: gradient steps of a network between topology updates.
        drop_fraction: initial fraction of a layer's connections replaced (cosine-annealed to 0
            at ``t_end`` = the network's planned gradient steps).
        planned_updates: gradient steps of this ``learn()`` call (default: computed by
            :func:`planned_gradient_steps`); TD3's actor uses ``planned_updates // policy_delay``.
        topology_stop: fraction of the planned updates after which the topology is frozen.
        grad_accumulation, reset_optimizer_state, skip_step_on_update: as in
            :class:`~sparserl.sparse.SparseTraining`.
        seed: seed of the masks' random generator (default: the model's seed; None on both
            draws it from torch's global RNG).

    After training, ``callback.sparse`` maps network names to their
    :class:`~sparserl.sparse.SparseTraining` (masks, counters). Logged through SB3's logger at
    every rollout end: ``sparse/<net>_sparsity``, ``sparse/<net>_nonzero_weights``,
    ``sparse/<net>_forward_flops`` (per sample, sparse), ``sparse/<net>_forward_flops_dense``
    and ``sparse/topology_updates``.
    """

    def __init__(self, method: str = "rigl", sparsity: Union[float, Mapping[str, float]] = 0.9, *,
                 allocation: str = "erk", init: str = "magnitude", delta: int = 1000,
                 drop_fraction: float = 0.5, planned_updates: Optional[int] = None,
                 topology_stop: Optional[float] = None, grad_accumulation: int = 1,
                 reset_optimizer_state: bool = True, skip_step_on_update: bool = True,
                 seed: Optional[int] = None, verbose: int = 0):
        super().__init__(planned_updates, verbose)
        if method not in SPARSE_METHODS:
            raise UserError(f"method={method!r}; allowed: {', '.join(SPARSE_METHODS)}")
        if topology_stop is not None and not 0.0 < float(topology_stop) <= 1.0:
            raise UserError(f"topology_stop={topology_stop!r}; allowed: None or a fraction in (0, 1]")
        self.method = method
        self.sparsity = sparsity
        self.options = dict(allocation=allocation, init=init, delta=delta, drop_fraction=drop_fraction,
                            grad_accumulation=grad_accumulation, reset_optimizer_state=reset_optimizer_state,
                            skip_step_on_update=skip_step_on_update)
        self.topology_stop = topology_stop
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
            updates = max(1, steps // net.update_every)
            stop = None if self.topology_stop is None else max(1, int(self.topology_stop * updates))
            generator = None if seed is None else torch.Generator().manual_seed(int(seed) * 1000 + i)
            try:
                self.sparse[net.name] = SparseTraining(
                    net.module, net.optimizer, self._sparsity_of(net.name), updater=self.method,
                    t_end=updates, stop_step=stop, layers=net.layers, generator=generator, **self.options)
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
#: ``--method structured``'s defaults, the one source of the callback's (see its docstring)
_STRUCTURED = Structured.DEFAULTS


class StructuredPruningCallback(_ModelCallback):
    """Dynamic structured (neuron) pruning of an SB3 model's MLPs, as ``--method structured``.

    One :class:`~sparserl.structured.StructuredPruner` per MLP chain (:func:`prunable_chains`)
    with the same neuron-importance regulariser, threshold rule and surgery; pruned neurons are
    physically removed from SB3's networks, their target networks and optimizer state.
    The defaults are those of ``sparserl train --method structured``: both read
    :attr:`sparserl.methods.structured.Structured.DEFAULTS`.

    Args:
        importance, regularizer, reg_lambda, prune_every, prune_start, prune_end, min_width,
        target_fraction, rule, max_ratio, ema, eps, compensate: as in
            :class:`~sparserl.structured.StructuredPruner` (times count gradient steps of the
            pruned network; fractions are of its planned updates).
        shrink: remove pruned neurons at once (default) or mask them until :meth:`shrink_now`.
        planned_updates: gradient steps of this ``learn()`` call (default:
            :func:`planned_gradient_steps`).

    ``callback.pruners`` maps chain names to their pruners. Logged at every rollout end:
    ``structured/<chain>_neurons_alive``, ``structured/<chain>_forward_flops`` (per sample, of
    the physical network), ``structured/<chain>_forward_flops_dense`` (before pruning),
    ``structured/prune_events``. The shrunk widths are kept in
    ``model.sparserl_architecture`` (saved with the model; reload with :func:`load`).
    """

    def __init__(self, *, importance: str = _STRUCTURED["importance"], regularizer: str = _STRUCTURED["regularizer"],
                 reg_lambda: float = _STRUCTURED["reg_lambda"], prune_every: int = _STRUCTURED["prune_every"],
                 prune_start: Union[float, int] = _STRUCTURED["prune_start"],
                 prune_end: Union[float, int] = _STRUCTURED["prune_end"], min_width: int = _STRUCTURED["min_width"],
                 target_fraction: Optional[float] = _STRUCTURED["target_neuron_fraction"],
                 rule: str = _STRUCTURED["threshold_rule"], max_ratio: float = 1.0, ema: float = 0.99, eps: float = 0.1,
                 compensate: bool = True, shrink: bool = True, planned_updates: Optional[int] = None,
                 verbose: int = 0):
        super().__init__(planned_updates, verbose)
        self.options = dict(importance=importance, regularizer=regularizer, reg_lambda=reg_lambda,
                            prune_every=prune_every, prune_start=prune_start, prune_end=prune_end,
                            min_width=min_width, target_fraction=target_fraction, rule=rule,
                            max_ratio=max_ratio, ema=ema, eps=eps, compensate=compensate, shrink=shrink)
        self.pruners: dict[str, StructuredPruner] = {}
        self.chains: dict[str, PrunableChain] = {}
        self._dense_flops: dict[str, int] = {}

    def _build(self) -> None:
        self.chains = prunable_chains(self.model)
        if not self.chains:
            raise UserError("no MLP chain with a hidden layer to prune in this model; "
                            "allowed: a net_arch with at least one hidden layer")
        steps = self._planned_steps()
        self.pruners = {}
        for name, spec in self.chains.items():
            try:
                self.pruners[name] = StructuredPruner(
                    spec.chain, spec.optimizer, total_updates=max(1, steps // spec.update_every),
                    mirrors=spec.mirrors, **self.options)
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


# ----------------------------------------------------------------------------- save / load
def resize_to_architecture(model: BaseAlgorithm, architecture: Mapping[str, Sequence[int]]) -> None:
    """Shrink a freshly built model's chains (and targets, optimizers) to the hidden widths
    ``architecture`` (``{chain name: [widths]}``, as stored in ``model.sparserl_architecture``).
    The kept values are placeholders: loading the saved parameters overwrites them."""
    chains = prunable_chains(model)
    unknown = sorted(set(architecture) - set(chains))
    if unknown:
        raise UserError(f"saved architecture names unknown chain(s) {unknown}; allowed: {', '.join(chains)}")
    for name, widths in architecture.items():
        spec = chains[name]
        current = hidden_widths(spec.chain)
        if len(widths) != len(current) or any(int(w) < 1 or int(w) > c for w, c in zip(widths, current)):
            raise UserError(f"saved widths {list(widths)} of chain {name!r} do not fit the model's {current}; "
                            f"allowed: as many hidden layers, each 1..its built width")
        for layer, width in enumerate(widths):
            if int(width) < current[layer]:
                shrink(spec.chain, layer, torch.arange(int(width)), optimizer=spec.optimizer, mirrors=spec.mirrors)


def load(path, cls: type, env=None, device: Union[torch.device, str] = "auto", **kwargs) -> BaseAlgorithm:
    """Load an SB3 model saved after :class:`StructuredPruningCallback`, with its shrunk widths.

    Same arguments as ``cls.load`` (``cls``: the algorithm class, e.g. ``PPO``). Models without
    a stored architecture (dense or unstructured-sparse ones) load exactly as ``cls.load``.
    """
    if not (isinstance(cls, type) and issubclass(cls, BaseAlgorithm)):
        raise UserError(f"cls={cls!r}; allowed: an SB3 algorithm class such as PPO, A2C, DQN, SAC, TD3")
    import os
    if isinstance(path, (str, os.PathLike)) and not (os.path.isfile(path) or os.path.isfile(f"{os.fspath(path)}.zip")):
        # SB3 would raise a raw FileNotFoundError (it also tries PATH.zip)
        raise UserError(f"{os.fspath(path)!r}: no such SB3 model file (nor {os.fspath(path)}.zip)")

    class _Resizing(cls):
        # SB3's load() restores the saved attributes (ours included), then calls
        # _setup_model(), then loads the state dicts: resize in between.
        def _setup_model(self) -> None:
            super()._setup_model()
            architecture = getattr(self, ARCHITECTURE_ATTRIBUTE, None)
            if architecture:
                resize_to_architecture(self, architecture)

    _Resizing.__name__ = _Resizing.__qualname__ = cls.__name__
    model = _Resizing.load(path, env=env, device=device, **kwargs)
    model.__class__ = cls
    return model


# ------------------------------------------------------------------------------------- export
#: the module of the SB3 policy class stored in every SB3 zip -> the algorithm that saved it
_POLICY_MODULES = {"stable_baselines3.dqn.policies": "DQN", "stable_baselines3.td3.policies": "TD3",
                   "stable_baselines3.sac.policies": "SAC", "stable_baselines3.ppo.policies": "PPO",
                   "stable_baselines3.a2c.policies": "A2C"}


def _zip_data(path) -> dict:
    """The readable ``data`` JSON of an SB3 model zip (its pickled values stay unread)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a Stable-Baselines3 model zip ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a Stable-Baselines3 model zip (data is not a JSON object)")
    return data


def algorithm_of_zip(path) -> type:
    """The SB3 algorithm class that saved ``path`` (from the zip's stored policy class). PPO and
    A2C share ``ActorCriticPolicy`` (stored as ``common.policies``); their policies export alike."""
    import stable_baselines3 as sb3_pkg
    data = _zip_data(path)
    module = str(data.get("policy_class", {}).get("__module__", ""))
    if module in _POLICY_MODULES:
        return getattr(sb3_pkg, _POLICY_MODULES[module])
    if module == "stable_baselines3.common.policies":
        return sb3_pkg.PPO
    raise UserError(f"{path}: policy class from {module or 'an unknown module'}; supported: DQN, TD3, SAC, PPO, A2C")


#: class reprs (``str(cls)``, as SB3 stores non-JSON values beside their pickle) a zip's
#: ``policy_kwargs`` may name, resolved here by name instead of unpickling the zip's copy
_SAFE_CLASSES = {f"<class '{c.__module__}.{c.__qualname__}'>": c for c in (
    nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.GELU, nn.SiLU,
    torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.SGD)}


def _space_from_json(key: str, item: dict, path):
    """A Box or Discrete space rebuilt from the readable attributes SB3 stores next to the
    pickle. Box bounds come from their printed form (numpy prints up to 8 decimals), which
    is exact for the usual bounds; a summarised ('...') array is refused."""
    import numpy as np
    from gymnasium import spaces

    kind = str(item.get(":type:", ""))
    try:
        if kind.endswith("spaces.discrete.Discrete'>"):
            return spaces.Discrete(int(item["n"]), start=int(item.get("start", 0)))
        if kind.endswith("spaces.box.Box'>"):
            shape = tuple(int(d) for d in item["_shape"])
            dtype = np.dtype(str(item["dtype"]))
            bounds = []
            for side in ("low", "high"):
                text = str(item[side])
                if "..." in text:
                    raise ValueError(f"{side} is summarised")
                values = np.array(text.replace("[", " ").replace("]", " ").split(), dtype=np.float64)
                bounds.append(values.reshape(shape).astype(dtype))
            return spaces.Box(low=bounds[0], high=bounds[1], shape=shape, dtype=dtype)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the stored {key} ({exc})") from None
    raise UserError(f"{path}: stored {key} is {kind or 'of unknown type'}; supported: Box, Discrete")


def _policy_kwargs_from_json(item: dict, path) -> dict:
    kwargs = {}
    for name, value in item.items():
        if name.startswith(":"):
            continue
        if isinstance(value, str) and value.startswith("<"):
            if value not in _SAFE_CLASSES:
                raise UserError(f"{path}: policy_kwargs[{name!r}] = {value[:80]} cannot be read without "
                                f"unpickling; supported: torch.nn activations and torch.optim optimizers")
            value = _SAFE_CLASSES[value]
        kwargs[name] = value
    return kwargs


def zip_custom_objects(path, cls: type) -> dict:
    """``custom_objects`` for ``cls.load(path)`` that replace *every* pickled value of the zip's
    ``data`` JSON, so loading never unpickles anything from the file (a crafted zip's pickle
    runs arbitrary code). The policy class is the algorithm's ``MlpPolicy``, spaces and
    ``policy_kwargs`` are rebuilt from their readable JSON attributes, schedules become
    constants and anything else pickled is dropped (``None``): enough to rebuild the policy and
    load its weights (``.pth`` files are read with ``weights_only=True``), not to resume training."""
    data = _zip_data(path)
    objects: dict = {}
    for key, item in data.items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            continue
        if key == "policy_class":
            objects[key] = cls.policy_aliases["MlpPolicy"]
        elif key in ("observation_space", "action_space"):
            objects[key] = _space_from_json(key, item, path)
        elif key == "policy_kwargs":
            objects[key] = _policy_kwargs_from_json(item, path)
        elif key in ("lr_schedule", "clip_range", "clip_range_vf", "exploration_schedule"):
            objects[key] = _constant_schedule
        elif key == "train_freq":
            objects[key] = 1
        else:
            objects[key] = None
    return objects


def _constant_schedule(_progress_remaining: float) -> float:
    """Stands in for a zip's pickled schedules: exporting never steps an optimizer."""
    return 0.0


def load_zip_safely(path, cls: type) -> BaseAlgorithm:
    """:func:`load` for ``sparserl export``: nothing of the zip is unpickled
    (:func:`zip_custom_objects`); a zip SB3 cannot rebuild that way fails in one line."""
    objects = zip_custom_objects(path, cls)
    try:
        return load(path, cls, device="cpu", custom_objects=objects)
    except UserError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError, AssertionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: cannot rebuild the SB3 {cls.__name__} model without unpickling "
                        f"({type(exc).__name__}: {first})") from None


def _linears(module: nn.Module, what: str) -> tuple[list, str]:
    """The Linear layers of an SB3 MLP (``nn.Sequential`` of Linear + activation) and its one
    hidden activation, ``relu`` or ``tanh`` (SB3's PPO/A2C default): what the exported formats
    implement."""
    layers, acts = [], set()
    for m in module.modules():
        if isinstance(m, nn.Linear):
            layers.append(m)
        elif isinstance(m, nn.ReLU):
            acts.add("relu")
        elif isinstance(m, nn.Tanh):
            acts.add("tanh")
        elif isinstance(m, (nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.GELU, nn.SiLU)):
            raise UserError(f"{what} uses {type(m).__name__} activations; sparserl export supports ReLU and "
                            f"Tanh MLPs (train with policy_kwargs=dict(activation_fn=torch.nn.ReLU))")
    if len(acts) > 1:
        raise UserError(f"{what} mixes ReLU and Tanh activations; sparserl export supports one kind per network")
    return layers, acts.pop() if acts else "relu"


def policy_spec(model: BaseAlgorithm):
    """The deterministic policy of an SB3 model as a :class:`sparserl.export.spec.PolicySpec`:
    DQN greedy action; TD3/SAC ``tanh`` mean action rescaled to the action box; PPO/A2C (ReLU
    or their default Tanh MLPs): the greedy (argmax) action, or with a Box action space the
    Gaussian mean clipped to the box (``predict(deterministic=True)``)."""
    from gymnasium import spaces

    from ..export.spec import PolicySpec

    obs_shape = model.observation_space.shape
    policy, act_space = model.policy, model.action_space
    name = type(model).__name__
    extractor = getattr(policy, "features_extractor", None) or getattr(getattr(policy, "actor", None),
                                                                         "features_extractor", None)
    if extractor is not None and any(isinstance(m, nn.Linear) for m in extractor.modules()):
        raise UserError(f"{name}: a feature extractor with its own layers cannot be exported (only Flatten)")
    if name == "DQN":
        layers, act = _linears(policy.q_net.q_net, "the Q-network")
        return PolicySpec.from_linears(layers, head="argmax", obs_shape=obs_shape, activation=act)
    if isinstance(act_space, spaces.Box):
        scale = (act_space.high - act_space.low) / 2.0
        offset = (act_space.high + act_space.low) / 2.0
        if name == "TD3":
            mu = policy.actor.mu  # Linear/ReLU ... Linear, Tanh: the final Tanh is the export's tanh head
            layers, act = _linears(mu[:-1] if isinstance(mu[-1], nn.Tanh) else mu, "the actor")
        elif name == "SAC":
            layers, act = _linears(policy.actor.latent_pi, "the actor")
            layers = layers + [policy.actor.mu]
        else:
            return _on_policy_spec(model, name, obs_shape, clip=act_space)
        return PolicySpec.from_linears(layers, head="tanh", obs_shape=obs_shape, action_scale=scale,
                                       action_offset=offset, activation=act)
    if name in ("PPO", "A2C") and isinstance(act_space, spaces.Discrete):
        return _on_policy_spec(model, name, obs_shape)
    raise UserError(f"{name} with {act_space} cannot be exported (supported: DQN, TD3, SAC, PPO/A2C with "
                    f"Discrete or Box actions)")


def _on_policy_spec(model, name: str, obs_shape, clip=None):
    """PPO/A2C: ``mlp_extractor.policy_net`` then ``action_net``; the argmax of the logits, or
    (``clip``: the Box) the Gaussian mean clipped to the box as SB3's ``predict`` does."""
    from ..export.spec import PolicySpec

    policy = model.policy
    if getattr(policy, "use_sde", False) or getattr(policy, "squash_output", False):
        raise UserError(f"{name} with use_sde/squash_output cannot be exported; the default Gaussian policy can")
    if not isinstance(policy.action_net, nn.Linear):
        raise UserError(f"{name}: its action net is a {type(policy.action_net).__name__}, not one Linear layer")
    layers, act = _linears(policy.mlp_extractor.policy_net, "the policy network")
    layers = layers + [policy.action_net]
    if clip is None:
        return PolicySpec.from_linears(layers, head="argmax", obs_shape=obs_shape, activation=act)
    return PolicySpec.from_linears(layers, head="clip", obs_shape=obs_shape, activation=act,
                                   action_low=clip.low, action_high=clip.high)
