"""Finding what sparserl acts on in an SB3 model: the networks to sparsify, the MLP chains to
prune, their optimizers and target networks. The one discovery path: :func:`policy_kind` maps
the policy to its kind by ``isinstance`` over :data:`POLICY_KINDS` (subclasses included), and
every consumer (both callbacks, save/load, export) dispatches on that kind."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from ...errors import UserError

__all__ = ["POLICY_KINDS", "policy_kind", "kind_of_policy", "SparseNetwork", "PrunableChain", "sparse_networks",
           "prunable_chains"]

#: SB3 policy class -> its kind; the first ``isinstance`` match wins (subclasses included)
POLICY_KINDS: tuple[tuple[type, str], ...] = (
    (ActorCriticPolicy, "actor_critic"),   # PPO, A2C
    (DQNPolicy, "dqn"),
    (TD3Policy, "td3"),
    (SACPolicy, "sac"),
)


def kind_of_policy(policy) -> Optional[str]:
    """The kind of ``policy`` in :data:`POLICY_KINDS`, or None for an unsupported policy."""
    for cls, kind in POLICY_KINDS:
        if isinstance(policy, cls):
            return kind
    return None


def policy_kind(model: BaseAlgorithm) -> str:
    """The kind of ``model.policy`` (:data:`POLICY_KINDS`); UserError for an unsupported one."""
    kind = kind_of_policy(model.policy)
    if kind is None:
        raise _unsupported(model)
    return kind


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
    """The networks :class:`SparseTrainingCallback` sparsifies (table in the package docstring)."""
    policy, kind = model.policy, policy_kind(model)
    if kind == "actor_critic":
        opt = policy.optimizer
        actor = _linear_names(policy, ["features_extractor", "pi_features_extractor",
                                       "mlp_extractor.policy_net", "action_net"])
        critic = _linear_names(policy, ["vf_features_extractor", "mlp_extractor.value_net", "value_net"])
        return [SparseNetwork("actor", policy, actor, opt), SparseNetwork("critic", policy, critic, opt)]
    if kind == "dqn":
        return [SparseNetwork("q", policy.q_net, _linear_names(policy.q_net, [""]), policy.optimizer,
                              [policy.q_net_target])]
    # sac or td3
    actor, critic = policy.actor, policy.critic
    td3 = kind == "td3"
    return [
        SparseNetwork("actor", actor, _linear_names(actor, [""]), actor.optimizer,
                      [policy.actor_target] if td3 else [],
                      update_every=int(getattr(model, "policy_delay", 1)) if td3 else 1),
        SparseNetwork("critic", critic, _linear_names(critic, [""], critic.optimizer), critic.optimizer,
                      [policy.critic_target]),
    ]


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
    """The MLP chains :class:`StructuredPruningCallback` prunes, by name (package docstring).
    Chains without a hidden layer are left out."""
    policy = model.policy
    if getattr(model, "use_sde", False):
        raise UserError("use_sde=True is not supported by structured pruning (gSDE's noise matrix has the "
                        "last hidden layer's width); allowed: use_sde=False")
    kind = policy_kind(model)
    chains: list[PrunableChain] = []
    if kind == "actor_critic":
        ext, opt = policy.mlp_extractor, policy.optimizer
        chains += [PrunableChain("actor", _chain_of(ext.policy_net) + [policy.action_net], opt),
                   PrunableChain("critic", _chain_of(ext.value_net) + [policy.value_net], opt)]
    elif kind == "dqn":
        chains.append(PrunableChain("q", _chain_of(policy.q_net.q_net), policy.optimizer,
                                    [_chain_of(policy.q_net_target.q_net)]))
    else:   # sac or td3
        actor = policy.actor
        if kind == "td3":
            chains.append(PrunableChain("actor", _chain_of(actor.mu), actor.optimizer,
                                        [_chain_of(policy.actor_target.mu)],
                                        update_every=int(getattr(model, "policy_delay", 1))))
        else:
            chain = _chain_of(actor.latent_pi) + [actor.mu]
            chains.append(PrunableChain("actor", chain, actor.optimizer,
                                        [(_shadow_chain(chain, actor.log_std), actor.optimizer)]))
        for i, (q, q_target) in enumerate(zip(policy.critic.q_networks, policy.critic_target.q_networks)):
            chains.append(PrunableChain(f"critic.qf{i}", _chain_of(q), policy.critic.optimizer, [_chain_of(q_target)]))
    return {c.name: c for c in chains if len(c.chain) >= 2}
