"""What DQN, TD3 and SAC share: networks by name, the optimisation seam and accounting.

Every gradient step of every network goes through :meth:`Agent.optimize`, and every target
update through :meth:`Agent.update_target`.  That is the one small interface through which
sparse training (masks, topology updates) and structured pruning (penalty, neuron
surgery) act on an algorithm: they are *plugins* attached to a network name, and the
algorithm files never mention them.
"""
from __future__ import annotations

import abc
import contextlib
from typing import ClassVar, Iterator, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ..networks import MLP, init_weights_


class NetworkPlugin(Protocol):
    """Per-network hook (sparse masks, structured pruner...) attached by a method to
    ``agent.plugins[name]``: :meth:`Agent.optimize` and :meth:`Agent.update_target` drive the
    training hooks, the method's guard, metrics and summary the rest, and the agent's
    ``state_dict`` carries the plugin's own state (exact resume)."""

    def penalty(self) -> torch.Tensor | float: ...            # added to the loss
    def before_optimizer_step(self) -> bool: ...             # False: skip this optimizer step
    def after_optimizer_step(self) -> bool: ...              # True: the network's shape/non-zeros changed
    def after_target_update(self) -> None: ...               # keep target networks consistent
    def set_paused(self, paused: bool) -> None: ...          # the prune guard holds topology / pruning changes
    def extra_train_flops(self) -> float: ...                # FLOPs the plugin itself spent
    def metrics(self, name: str) -> dict: ...                # metrics.csv columns of network ``name``
    def add_summary(self, out: dict, name: str) -> None: ...  # its block(s) of summary.json, into ``out``
    def summary(self) -> dict: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class Agent(abc.ABC):
    """What the trainer, the methods (plugins, schedules) and export use of an algorithm.

    A subclass calls ``super().__init__(cfg, obs_space, act_space, device)``, then builds
    ``networks`` (name -> the module that name's optimizer trains: ``actor``, ``critic``,
    ``q``), ``targets`` (name -> its target copy, only for networks that have one) and
    ``optimizers`` (name -> optimizer), and implements the abstract methods below. What the
    rest of the package needs before any network exists is declared on the class: how often
    each network learns (:meth:`network_update_periods`: the methods' schedules and the plan
    warnings), the sizes of its MLPs (:meth:`mlp_sizes`: the memory check) and the kind of
    action space it acts in (:attr:`action_space_type`: the env check), so that no other
    module branches on the algorithm's name and the algorithm that applies a rule states it.
    """

    #: name -> the module that name's optimizer trains (what plugins attach to, what is saved)
    networks: dict[str, nn.Module]
    #: name -> its target copy, only for the networks that have one (see :meth:`targets_of`)
    targets: dict[str, nn.Module]
    #: name -> the optimizer of ``networks[name]``, stepped only through :meth:`optimize`
    optimizers: dict[str, torch.optim.Optimizer]
    #: the kind of action space the algorithm acts in (``gym.spaces.Discrete`` or ``Box``): the
    #: env check asks this, and every other decision about actions is made on the space itself
    action_space_type: ClassVar[type[gym.Space]]
    #: whether n-step minibatches must carry the window's intermediate states (SAC's soft return)
    uses_mid_obs: ClassVar[bool] = False

    def __init__(self, cfg, obs_space, act_space, device: torch.device | str | None = None):
        self.cfg = cfg
        #: (observation space, action space): the reference agent of :meth:`dense_reference_flops`
        #: and export's observation shape are built from them
        self.spaces = (obs_space, act_space)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.plugins: dict[str, list[NetworkPlugin]] = {}
        self.n_updates: dict[str, int] = {}
        self.train_flops = 0.0
        self.train_flops_dense = 0.0
        self._flops_cache: dict[int, tuple[float, float]] = {}
        self._dense_flops: dict[int, float] = {}

    # -- what each algorithm declares ---------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def network_update_periods(cls, cfg) -> dict[str, int]:
        """Critic (or Q-network) updates per gradient update of each network, by name, for a
        run of ``cfg``: the one statement of how often each network learns, which the
        algorithm's ``update``, the methods' schedules (:meth:`update_period`) and the plan
        warnings (before any network exists) all read."""

    @classmethod
    @abc.abstractmethod
    def mlp_sizes(cls, obs_dim: int, act_dim: int, hidden: list[int]) -> list[list[int]]:
        """Layer sizes ``[input, *hidden, output]`` of every online MLP the algorithm builds
        for these dimensions (``act_dim``: the number of discrete actions, or of action
        components): what the memory check counts before anything is allocated."""

    @abc.abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deployment action (greedy / deterministic) for one observation or a batch."""

    @abc.abstractmethod
    def explore(self, obs: np.ndarray, rng: np.random.Generator, progress: float) -> tuple[np.ndarray, np.ndarray]:
        """(executed action, behaviour action stored with it) while training; ``rng`` is the
        trainer's exploration generator, ``progress`` the fraction of the planned run done."""

    @abc.abstractmethod
    def update(self, batch) -> dict[str, float]:
        """One gradient update (one critic / Q-network step, and whatever else is due) on
        ``batch``; returns the logged scalars (``losses/*``, ...)."""

    @abc.abstractmethod
    def inference_network(self) -> nn.Module:
        """The module that runs once per action at deployment (actor or Q-network)."""

    @abc.abstractmethod
    def policy_spec(self):
        """The deployment policy as a :class:`sparserl.export.spec.PolicySpec` (export)."""

    def policy_batch(self, obs: np.ndarray) -> np.ndarray:
        """The current policy's actions on a batch of observations: what the dynamic buffer
        compares stored behaviour actions with (the deployment action unless overridden)."""
        return self.act(obs)

    def update_period(self, network: str) -> int:
        """Critic updates per gradient update of ``network`` (see :meth:`network_update_periods`)."""
        return self.network_update_periods(self.cfg)[network]

    def targets_of(self, network: str) -> list[nn.Module]:
        """The target networks that follow ``network`` ([] if it has none): what a plugin
        must keep consistent with it (masks, removed neurons)."""
        return [self.targets[network]] if network in self.targets else []

    def place(self) -> None:
        """Move every network and target to ``self.device`` (in place: the Parameter objects
        stay the same, so optimizers built before or after both work)."""
        for net in (*self.networks.values(), *self.targets.values()):
            net.to(self.device)

    def tensor(self, x) -> torch.Tensor:
        """An observation (or a batch) as a float32 tensor on the agent's device."""
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    # -- what the update code asks of its agent (a stacked group answers per agent) ------
    def randn(self, shape) -> torch.Tensor:
        """Standard normal noise of ``shape`` on the agent's device, from torch's global
        generator (seeded by ``--seed``). A stacked group (:mod:`sparserl.vectorised`) draws
        each agent's slice from that agent's own stream, so an agent's noise does not depend on
        the other agents."""
        return torch.randn(shape, device=self.device)

    def report(self, logs: dict) -> dict[str, float]:
        """The scalar logs of one update as Python floats (``losses/*``, ``values/*``): the
        update code leaves them as tensors and reads them here once, so a stacked group can
        split them per agent instead."""
        return {k: (v.item() if torch.is_tensor(v) else v) for k, v in logs.items()}

    # -- the optimisation seam ----------------------------------------------------------
    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """One gradient step of network ``name`` on ``loss``, through its plugins."""
        loss = self.penalised(name, loss)
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.before_step(name):
            optimizer.step()
        self.after_step(name)

    # The three pieces of :meth:`optimize` around the backward pass and the optimizer step: a
    # stacked group (:mod:`sparserl.vectorised`) runs one backward and one optimizer kernel for
    # all its agents and calls these per agent in between.
    def penalised(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the plugins' penalties (structured pruning's group-sparse term)."""
        for plugin in self.plugins.get(name, ()):
            loss = loss + plugin.penalty()
        return loss

    def before_step(self, name: str) -> bool:
        """After the backward pass: the plugins' hooks (gradient masks, topology updates), then
        gradient clipping; False when a plugin asks to skip this optimizer step."""
        take_step = True
        for plugin in self.plugins.get(name, ()):
            take_step = plugin.before_optimizer_step() and take_step
        if take_step and self.cfg.max_grad_norm is not None:  # after masking: the sparse gradient is clipped
            optimizer = self.optimizers[name]
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm, foreach=True)
        return take_step

    def after_step(self, name: str) -> None:
        """After the optimizer step: the plugins re-impose masks / shapes; counts the update."""
        changed = False
        for plugin in self.plugins.get(name, ()):
            changed = plugin.after_optimizer_step() or changed
        if changed:
            self._flops_cache.clear()
        self.n_updates[name] = self.n_updates.get(name, 0) + 1

    @torch.no_grad()
    def update_target(self, name: str, tau: float) -> None:
        """Polyak update (tau = 1: hard copy); plugins then re-impose masks / shapes."""
        online = list(self.networks[name].parameters())
        target = list(self.targets[name].parameters())
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:  # one multi-tensor kernel instead of a lerp per tensor
            torch._foreach_lerp_(target, online, tau)
        for plugin in self.plugins.get(name, ()):
            plugin.after_target_update()

    # -- accounting ---------------------------------------------------------------------
    def count_flops(self, module: nn.Module, batch_size: int, passes: int) -> None:
        """Add ``passes`` forward-equivalents of ``module`` on ``batch_size`` samples.

        Convention (SPEC §1.4, RLx2 appendix): a forward pass costs F, a backward pass 2F
        (input gradient + weight gradient), so forward+backward = 3 passes; F counts a
        multiply-add as 2 FLOPs over non-zero weights only (dense: all weights).
        """
        key = id(module)
        if key not in self._flops_cache:
            from ..sparse.flops import forward_flops
            self._flops_cache[key] = forward_flops(module)
        if key not in self._dense_flops:
            self._dense_flops[key] = self.dense_reference_flops(module)
        sparse = self._flops_cache[key][1]
        dense = self._dense_flops[key]
        self.train_flops += passes * batch_size * sparse
        self.train_flops_dense += passes * batch_size * dense

    @property
    def critic_updates(self) -> int:
        """Critic (or Q-network) updates so far: the clock of schedules and throughput."""
        return self.n_updates.get("critic", self.n_updates.get("q", 0))

    @property
    def gradient_steps(self) -> int:
        """The older name of :attr:`critic_updates` (``gradient_steps`` in a config is the
        updates per round, a different thing)."""
        return self.critic_updates

    def dense_reference_flops(self, module: nn.Module) -> float:
        """Forward FLOPs of ``module`` in the dense network of the configured widths.

        'Dense' must keep meaning the full-width unpruned network even after structured
        pruning shrank the module (also after a resume) or for the narrowed 'tiny'
        baseline, so it is read off a freshly built reference agent."""
        from ..sparse.flops import forward_flops
        if not hasattr(self, "_reference"):
            with torch.random.fork_rng(devices=[]):  # building it must not shift the run's RNG
                self._reference = type(self)(self.cfg, *self.spaces)  # on the CPU: only counted
        for name, root in (*self.networks.items(), *self.targets.items()):
            for sub, m in root.named_modules():
                if m is module:
                    ref = self._reference.networks[name]
                    return forward_flops(ref.get_submodule(sub) if sub else ref)[0]
        raise ValueError("count_flops: module is not part of this agent")

    def total_train_flops(self) -> float:
        extra = sum(p.extra_train_flops() for ps in self.plugins.values() for p in ps)
        return self.train_flops + extra

    def on_env_step(self, step: int) -> None:
        """Env-step clock hook (DQN's target updates); nothing by default."""

    @torch.no_grad()
    def initialize_weights(self, scheme: str) -> None:
        """Re-initialise every network (see :func:`init_weights_`); targets become copies
        again.  Runs before a method attaches masks."""
        if scheme == "default":
            return
        for name, net in self.networks.items():
            init_weights_(net, scheme)
            if name in self.targets:
                self.targets[name].load_state_dict(net.state_dict())

    # -- architecture (structured pruning can shrink any MLP) --------------------------
    def mlps(self) -> dict[str, MLP]:
        """Every online MLP by dotted path, e.g. ``actor``, ``critic.q1``."""
        out = {}
        for name, net in self.networks.items():
            for sub, module in net.named_modules():
                if isinstance(module, MLP):
                    out[f"{name}.{sub}" if sub else name] = module
        return out

    def architecture(self) -> dict[str, list[int]]:
        return {path: mlp.hidden_sizes for path, mlp in self.mlps().items()}

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "networks": {k: v.state_dict() for k, v in self.networks.items()},
            "targets": {k: v.state_dict() for k, v in self.targets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "plugins": {k: [p.state_dict() for p in ps] for k, ps in self.plugins.items()},
            "n_updates": dict(self.n_updates),
            "train_flops": self.train_flops, "train_flops_dense": self.train_flops_dense,
            "flops_cache": self._named_flops_cache(),
            "extra": self.extra_state(),
        }

    def _module_paths(self) -> dict[int, str]:
        return {id(m): f"{kind}:{name}:{sub}"
                for kind, roots in (("net", self.networks), ("target", self.targets))
                for name, root in roots.items() for sub, m in root.named_modules()}

    def _named_flops_cache(self) -> dict:
        """The per-module FLOP counts in use, by module path: the count of a sparse network is
        taken when it changes (a topology update), so an exact resume must restore it rather
        than recount weights that have moved since."""
        paths = self._module_paths()
        return {paths[k]: [float(v[0]), float(v[1])] for k, v in self._flops_cache.items() if k in paths}

    def load_state_dict(self, state: dict, with_training_state: bool = True) -> None:
        for k, v in state["networks"].items():
            self.networks[k].load_state_dict(v)
        for k, v in state["targets"].items():
            self.targets[k].load_state_dict(v)
        if with_training_state:
            for k, v in state["optimizers"].items():
                self.optimizers[k].load_state_dict(v)
            for k, ps in state["plugins"].items():
                for plugin, ps_state in zip(self.plugins.get(k, ()), ps):
                    plugin.load_state_dict(ps_state)
            self.n_updates = dict(state["n_updates"])
            self.train_flops = float(state["train_flops"])
            self.train_flops_dense = float(state["train_flops_dense"])
            self.load_extra_state(state["extra"])
        self._flops_cache.clear()
        if with_training_state and state.get("flops_cache"):
            ids = {path: key for key, path in self._module_paths().items()}
            self._flops_cache.update({ids[p]: tuple(v) for p, v in state["flops_cache"].items() if p in ids})

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the multi-tensor (foreach) kernels: on CPU they are not the default, yet for
    these small MLPs they cut the optimizer step's per-parameter overhead noticeably. (The fused
    CPU kernel is ~3x faster still, but its rounding differs between a dense masked weight and
    the csr backend's value vector, so the two backends would no longer train identically.)"""
    return torch.optim.Adam(params, lr=lr, foreach=True)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for ``module`` inside the block (e.g. the critic inside the actor
    loss): the actor's update needs only gradients *through* the critic, so computing the
    critic's own weight gradients there is wasted work (they would be discarded anyway)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
