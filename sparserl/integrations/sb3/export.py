"""An SB3 model's deterministic policy as a :class:`sparserl.export.spec.PolicySpec`, the input of
every ``sparserl export`` format."""
from __future__ import annotations

from torch import nn

from stable_baselines3.common.base_class import BaseAlgorithm

from ...errors import UserError
from .discovery import kind_of_policy

__all__ = ["policy_spec"]


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

    from ...export.spec import PolicySpec

    obs_shape = model.observation_space.shape
    policy, act_space = model.policy, model.action_space
    name = type(model).__name__
    kind = kind_of_policy(policy)
    extractor = getattr(policy, "features_extractor", None) or getattr(getattr(policy, "actor", None),
                                                                         "features_extractor", None)
    if extractor is not None and any(isinstance(m, nn.Linear) for m in extractor.modules()):
        raise UserError(f"{name}: a feature extractor with its own layers cannot be exported (only Flatten)")
    if kind == "dqn":
        layers, act = _linears(policy.q_net.q_net, "the Q-network")
        return PolicySpec.from_linears(layers, head="argmax", obs_shape=obs_shape, activation=act)
    if isinstance(act_space, spaces.Box):
        scale = (act_space.high - act_space.low) / 2.0
        offset = (act_space.high + act_space.low) / 2.0
        if kind == "td3":
            mu = policy.actor.mu  # Linear/ReLU ... Linear, Tanh: the final Tanh is the export's tanh head
            layers, act = _linears(mu[:-1] if isinstance(mu[-1], nn.Tanh) else mu, "the actor")
        elif kind == "sac":
            layers, act = _linears(policy.actor.latent_pi, "the actor")
            layers = layers + [policy.actor.mu]
        else:
            return _on_policy_spec(model, name, obs_shape, clip=act_space)
        return PolicySpec.from_linears(layers, head="tanh", obs_shape=obs_shape, action_scale=scale,
                                       action_offset=offset, activation=act)
    if kind == "actor_critic" and isinstance(act_space, spaces.Discrete):
        return _on_policy_spec(model, name, obs_shape)
    raise UserError(f"{name} with {act_space} cannot be exported (supported: DQN, TD3, SAC, PPO/A2C with "
                    f"Discrete or Box actions)")


def _on_policy_spec(model, name: str, obs_shape, clip=None):
    """PPO/A2C: ``mlp_extractor.policy_net`` then ``action_net``; the argmax of the logits, or
    (``clip``: the Box) the Gaussian mean clipped to the box as SB3's ``predict`` does."""
    from ...export.spec import PolicySpec

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
