"""DQN (Mnih et al., 2015) with the Double-DQN target (van Hasselt et al., 2016).

Huber loss, epsilon-greedy exploration with a linear schedule, and a target network that is
hard-copied (tau = 1) or Polyak-averaged (tau < 1) every ``target_update_every`` env steps.
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
from .base import Agent, adam, to_numpy
from .td3 import widths_for


class DQNAgent(Agent):
    action_space_type = gym.spaces.Discrete

    def __init__(self, cfg, obs_space, act_space, widths: dict | None = None, device=None):
        super().__init__(cfg, obs_space, act_space, device)
        self.n_actions = int(act_space.n)
        self.q = MLP(int(np.prod(obs_space.shape)), self.n_actions, widths_for(widths, "q", cfg.hidden))
        self.networks = {"q": self.q}
        self.targets = {"q": copy.deepcopy(self.q).requires_grad_(False)}
        self.place()
        self.optimizers = {"q": adam(self.q.parameters(), cfg.lr)}

    @classmethod
    def network_update_periods(cls, cfg) -> dict[str, int]:
        return {"q": 1}

    @classmethod
    def mlp_sizes(cls, obs_dim: int, act_dim: int, hidden: list[int]) -> list[list[int]]:
        """The Q-network: one output per action."""
        return [[obs_dim, *hidden, act_dim]]

    def epsilon(self, progress: float) -> float:
        """Linear decay from eps_start to eps_end over the first eps_fraction of the run."""
        frac = min(1.0, progress / max(self.cfg.eps_fraction, 1e-8))
        return self.cfg.eps_end + (1.0 - frac) * (self.cfg.eps_start - self.cfg.eps_end)  # exact at the end

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return to_numpy(self.q(self.tensor(obs)).argmax(-1))

    def explore(self, obs: np.ndarray, rng: np.random.Generator, progress: float) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.epsilon(progress):
            action = np.asarray(rng.integers(self.n_actions))
        else:
            action = self.act(obs)
        return action, action

    def inference_network(self) -> nn.Module:
        return self.q

    @torch.no_grad()
    def q_target(self, batch: Batch) -> torch.Tensor:
        next_q = self.targets["q"](batch.next_obs)
        if self.cfg.double_q:
            best = self.q(batch.next_obs).argmax(-1, keepdim=True)
            next_value = next_q.gather(-1, best).squeeze(-1)
        else:
            next_value = next_q.max(-1).values
        return batch.discounted_reward(self.cfg.gamma) + batch.bootstrap_discount(self.cfg.gamma) * next_value

    def update(self, batch: Batch) -> dict[str, float]:
        """One Q-network step. Axes are counted from the end so that a group of agents stacked
        on a leading axis (:mod:`sparserl.vectorised`) runs the same code: one loss per agent."""
        b = batch.size
        target = self.q_target(batch)
        q = self.q(batch.obs).gather(-1, batch.actions.long().unsqueeze(-1)).squeeze(-1)
        loss = F.smooth_l1_loss(q, target, reduction="none").mean(-1)
        self.optimize("q", loss)
        self.count_flops(self.targets["q"], b, 1)
        self.count_flops(self.q, b, 3 + (1 if self.cfg.double_q else 0))  # + online argmax pass
        return self.report({"losses/q": loss.detach(), "values/q": q.detach().mean(-1)})

    def on_env_step(self, step: int) -> None:
        """Target update on the env-step clock, as in the DQN papers."""
        if (step + 1) % self.cfg.target_update_every == 0:
            self.update_target("q", self.cfg.tau)

    def policy_spec(self):
        """The greedy policy ``argmax_a Q(obs, a)`` as plain arrays, for export."""
        from ..export.spec import PolicySpec
        return PolicySpec.from_linears(self.q.linear_layers(), head="argmax", obs_shape=self.spaces[0].shape,
                                       reference_hidden=self.cfg.hidden)


#: the older name of :class:`DQNAgent` (``sparserl.DQN`` is the user-facing model of :mod:`sparserl.api`)
DQN = DQNAgent
