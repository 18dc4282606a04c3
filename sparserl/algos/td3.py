"""TD3 (Fujimoto et al., 2018): twin critics, target policy smoothing, delayed actor updates.

Read top to bottom: networks, acting, the critic target (n-step aware), the update.
"""
from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..buffers import Batch
from ..networks import MLP
from .base import Agent, adam, frozen, to_numpy


class Actor(nn.Module):
    """Deterministic policy: MLP -> tanh -> rescaled to the action box."""

    def __init__(self, obs_dim: int, act_dim: int, hidden, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = MLP(obs_dim, act_dim, hidden)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs)) * self.scale + self.bias


class TwinQ(nn.Module):
    """Two independent Q(s, a) MLPs (clipped double Q-learning)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden, hidden2=None):
        super().__init__()
        self.q1 = MLP(obs_dim + act_dim, 1, hidden)
        self.q2 = MLP(obs_dim + act_dim, 1, hidden if hidden2 is None else hidden2)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q1_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.q1(torch.cat([obs, act], dim=-1)).squeeze(-1)


def twin_q_step(agent: Agent, batch: Batch, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """One clipped-double-Q critic update toward ``target`` (shared by TD3 and SAC); returns
    the logs as tensors (the caller's :meth:`Agent.report` reads them).

    Means are taken over the last (sample) axis so that the same code serves a group of
    agents stacked on a leading axis (:mod:`sparserl.vectorised`): one loss per agent."""
    q1, q2 = agent.critic(batch.obs, batch.actions)
    critic_loss = (F.mse_loss(q1, target, reduction="none").mean(-1)
                   + F.mse_loss(q2, target, reduction="none").mean(-1))
    agent.optimize("critic", critic_loss)
    agent.count_flops(agent.critic, batch.size, 3)
    return {"losses/critic": critic_loss.detach(), "values/q1": q1.detach().mean(-1)}


def delayed_actor_periods(cfg) -> dict[str, int]:
    """TD3's delayed policy update, kept by SAC: the actor (and TD3's targets) learns once
    every ``policy_delay`` critic updates."""
    return {"actor": cfg.policy_delay, "critic": 1}


def widths_for(widths: dict | None, path: str, default) -> list[int]:
    """Hidden widths of one MLP: a shrunk checkpoint's, else the configured ones."""
    return list((widths or {}).get(path, default))


class TD3Agent(Agent):
    action_space_type = gym.spaces.Box

    def __init__(self, cfg, obs_space, act_space, widths: dict | None = None, device=None):
        super().__init__(cfg, obs_space, act_space, device)
        obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
        self.low, self.high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        self.max_action_np = (self.high - self.low) / 2.0
        self.max_action = torch.as_tensor(self.max_action_np, device=self.device)
        self.low_t = torch.as_tensor(self.low, device=self.device)
        self.high_t = torch.as_tensor(self.high, device=self.device)
        self.actor = Actor(obs_dim, act_dim, widths_for(widths, "actor.net", cfg.hidden), self.low, self.high)
        self.critic = TwinQ(obs_dim, act_dim, widths_for(widths, "critic.q1", cfg.hidden),
                            widths_for(widths, "critic.q2", cfg.hidden))
        self.networks = {"actor": self.actor, "critic": self.critic}
        self.targets = {name: copy.deepcopy(net).requires_grad_(False) for name, net in self.networks.items()}
        self.place()
        self.optimizers = {name: adam(net.parameters(), cfg.lr) for name, net in self.networks.items()}
        self.n_critic_updates = 0

    @classmethod
    def network_update_periods(cls, cfg) -> dict[str, int]:
        return delayed_actor_periods(cfg)

    @classmethod
    def mlp_sizes(cls, obs_dim: int, act_dim: int, hidden: list[int]) -> list[list[int]]:
        """The actor and the two critics."""
        return [[obs_dim, *hidden, act_dim], [obs_dim + act_dim, *hidden, 1], [obs_dim + act_dim, *hidden, 1]]

    # -- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action (evaluation, deployment)."""
        return to_numpy(self.actor(self.tensor(obs)))

    def explore(self, obs: np.ndarray, rng: np.random.Generator, progress: float) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian exploration around the deterministic action; returns (action, pre-noise mean)."""
        mean = self.act(obs)
        noise = rng.normal(0.0, self.cfg.exploration_noise * self.max_action_np, size=mean.shape)
        return np.clip(mean + noise, self.low, self.high).astype(np.float32), mean

    def inference_network(self) -> nn.Module:
        return self.actor

    # -- learning -----------------------------------------------------------------------
    @torch.no_grad()
    def critic_target(self, batch: Batch) -> torch.Tensor:
        """y = sum_{k<m} g^k r_{t+k} + g^m (1 - terminal) min_i Q'_i(s_{t+m}, pi'(s_{t+m}) + clipped noise)."""
        gamma = self.cfg.gamma
        noise = self.randn(batch.actions.shape) * self.cfg.policy_noise * self.max_action
        noise = torch.maximum(torch.minimum(noise, self.cfg.noise_clip * self.max_action),
                              -self.cfg.noise_clip * self.max_action)
        next_action = self.targets["actor"](batch.next_obs) + noise
        next_action = torch.maximum(torch.minimum(next_action, self.high_t), self.low_t)
        q1, q2 = self.targets["critic"](batch.next_obs, next_action)
        return batch.discounted_reward(gamma) + batch.bootstrap_discount(gamma) * torch.minimum(q1, q2)

    def update(self, batch: Batch) -> dict[str, float]:
        b = batch.size
        logs = twin_q_step(self, batch, self.critic_target(batch))
        self.count_flops(self.targets["actor"], b, 1)
        self.count_flops(self.targets["critic"], b, 1)
        self.n_critic_updates += 1

        if self.n_critic_updates % self.update_period("actor") == 0:
            with frozen(self.critic):
                actor_loss = -self.critic.q1_value(batch.obs, self.actor(batch.obs)).mean(-1)
            self.optimize("actor", actor_loss)
            self.count_flops(self.actor, b, 3)
            self.count_flops(self.critic.q1, b, 2)  # forward + input gradient (critic frozen)
            self.update_target("actor", self.cfg.tau)
            self.update_target("critic", self.cfg.tau)
            logs["losses/actor"] = actor_loss.detach()
        return self.report(logs)

    def extra_state(self) -> dict:
        return {"n_critic_updates": self.n_critic_updates}

    def load_extra_state(self, state: dict) -> None:
        self.n_critic_updates = int(state["n_critic_updates"])

    def policy_spec(self):
        """The deterministic policy as plain arrays (``tanh(net(obs)) * scale + bias``), for export."""
        from ..export.spec import PolicySpec
        return PolicySpec.from_linears(self.actor.net.linear_layers(), head="tanh", obs_shape=self.spaces[0].shape,
                                       action_scale=self.actor.scale, action_offset=self.actor.bias,
                                       reference_hidden=self.cfg.hidden)


#: the older name of :class:`TD3Agent` (``sparserl.TD3`` is the user-facing model of :mod:`sparserl.api`)
TD3 = TD3Agent
