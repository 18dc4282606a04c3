"""SAC (Haarnoja et al., 2018): twin critics, tanh-squashed Gaussian, automatic entropy tuning.

The critic target is the soft n-step return: with m <= n steps in the window,
y = sum_{k<m} g^k r_{t+k} - alpha sum_{1<=k<m} g^k log pi(a~_k|s_{t+k})
    + g^m (1 - terminal) (min_i Q'_i(s_{t+m}, a') - alpha log pi(a'|s_{t+m})),
with a~_k and a' sampled from the current actor (n = 1 gives the usual SAC target).
"""
from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ..buffers import Batch
from ..networks import MLP
from .base import Agent, adam, frozen, to_numpy
from .td3 import TwinQ, delayed_actor_periods, twin_q_step, widths_for

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianActor(nn.Module):
    """One MLP chain whose output layer gives [mean, log_std] (a plain chain keeps the
    network prunable as a whole: there is no separate head to special-case)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = MLP(obs_dim, 2 * act_dim, hidden)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, obs: torch.Tensor):
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action and its log-probability (tanh change of variables)."""
        mean, log_std = self(obs)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)
        y = torch.tanh(u)
        log_prob = (-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (torch.log(self.scale * (1 - y.pow(2)) + 1e-6)).sum(-1)
        return y * self.scale + self.bias, log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0]) * self.scale + self.bias


class SACAgent(Agent):
    action_space_type = gym.spaces.Box
    uses_mid_obs = True

    def __init__(self, cfg, obs_space, act_space, widths: dict | None = None, device=None):
        super().__init__(cfg, obs_space, act_space, device)
        obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
        low, high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        self.actor = GaussianActor(obs_dim, act_dim, widths_for(widths, "actor.net", cfg.hidden), low, high)
        self.critic = TwinQ(obs_dim, act_dim, widths_for(widths, "critic.q1", cfg.hidden),
                            widths_for(widths, "critic.q2", cfg.hidden))
        self.networks = {"actor": self.actor, "critic": self.critic}
        # Only the critic has a target network in SAC.
        self.targets = {"critic": copy.deepcopy(self.critic).requires_grad_(False)}
        self.place()
        self.optimizers = {name: adam(net.parameters(), cfg.lr) for name, net in self.networks.items()}
        self.target_entropy = -float(act_dim)
        self.log_alpha = torch.tensor(math.log(cfg.alpha), device=self.device, requires_grad=cfg.autotune)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.lr) if cfg.autotune else None
        self.n_critic_updates = 0

    @classmethod
    def network_update_periods(cls, cfg) -> dict[str, int]:
        return delayed_actor_periods(cfg)

    @classmethod
    def mlp_sizes(cls, obs_dim: int, act_dim: int, hidden: list[int]) -> list[list[int]]:
        """The actor (its output layer gives the mean and the log-std) and the two critics."""
        return [[obs_dim, *hidden, 2 * act_dim], [obs_dim + act_dim, *hidden, 1], [obs_dim + act_dim, *hidden, 1]]

    @property
    def alpha(self) -> float:
        return self.log_alpha.exp().item()

    # -- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        return to_numpy(self.actor.deterministic(self.tensor(obs)))

    @torch.no_grad()
    def explore(self, obs: np.ndarray, rng: np.random.Generator, progress: float) -> tuple[np.ndarray, np.ndarray]:
        """(executed action, pre-noise mean). ``--sac-collect sample`` (standard SAC) executes a
        tanh-Gaussian sample drawn with the trainer's generator ``rng`` (so exploration is
        reproducible from the run's seed alone); ``mean`` executes the deterministic mean action,
        which is what the RLx2 reference code collects with after warm-up (its ``select_action``
        is called without sampling) and so what produced the paper's SAC numbers. With ``mean``
        the stored behaviour action equals the executed one."""
        mean, log_std = self.actor(self.tensor(obs))
        mean, std = to_numpy(mean), np.exp(to_numpy(log_std))
        scale, bias = to_numpy(self.actor.scale), to_numpy(self.actor.bias)
        mean_action = (np.tanh(mean) * scale + bias).astype(np.float32)
        if self.cfg.sac_collect == "mean":
            return mean_action, mean_action.copy()
        u = mean + std * rng.standard_normal(mean.shape)
        return (np.tanh(u) * scale + bias).astype(np.float32), mean_action

    def inference_network(self) -> nn.Module:
        return self.actor

    # -- learning -----------------------------------------------------------------------
    @torch.no_grad()
    def critic_target(self, batch: Batch) -> torch.Tensor:
        gamma, alpha = self.cfg.gamma, self.alpha
        next_action, next_log_prob = self.actor.sample(batch.next_obs)
        q1, q2 = self.targets["critic"](batch.next_obs, next_action)
        soft_value = torch.minimum(q1, q2) - alpha * next_log_prob
        target = batch.discounted_reward(gamma) + batch.bootstrap_discount(gamma) * soft_value
        if batch.mid_obs is not None:  # entropy bonuses at the window's intermediate states
            b, n1, d = batch.mid_obs.shape
            _, mid_log_prob = self.actor.sample(batch.mid_obs.reshape(b * n1, d))
            powers = gamma ** torch.arange(1, n1 + 1, dtype=target.dtype, device=target.device)
            target = target - alpha * (mid_log_prob.reshape(b, n1) * batch.step_mask[:, 1:] * powers).sum(1)
            self.count_flops(self.actor, b * n1, 1)
        return target

    def update(self, batch: Batch) -> dict[str, float]:
        b = batch.size
        logs = twin_q_step(self, batch, self.critic_target(batch))
        self.count_flops(self.actor, b, 1)
        self.count_flops(self.targets["critic"], b, 1)
        self.update_target("critic", self.cfg.tau)
        self.n_critic_updates += 1
        logs["losses/alpha"] = self.alpha

        if self.n_critic_updates % self.update_period("actor") == 0:
            action, log_prob = self.actor.sample(batch.obs)
            with frozen(self.critic):
                q1_pi, q2_pi = self.critic(batch.obs, action)
            actor_loss = (self.alpha * log_prob - torch.minimum(q1_pi, q2_pi)).mean()
            self.optimize("actor", actor_loss)
            self.count_flops(self.actor, b, 3)
            self.count_flops(self.critic, b, 2)  # forward + input gradient (critic frozen)
            logs["losses/actor"] = actor_loss.item()
            if self.alpha_optimizer is not None:
                alpha_loss = -(self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean()
                self.alpha_optimizer.zero_grad()
                alpha_loss.backward()
                self.alpha_optimizer.step()
        return self.report(logs)

    def extra_state(self) -> dict:
        state = {"n_critic_updates": self.n_critic_updates, "log_alpha": self.log_alpha.detach().clone()}
        if self.alpha_optimizer is not None:
            state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.n_critic_updates = int(state["n_critic_updates"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optimizer is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])

    def policy_spec(self):
        """The deterministic policy ``tanh(mean) * scale + bias`` as plain arrays, for export
        (only the mean half of the actor's output layer; log_std is not needed to act)."""
        from ..export.spec import PolicySpec
        return PolicySpec.from_linears(self.actor.net.linear_layers(), head="tanh", obs_shape=self.spaces[0].shape,
                                       keep_outputs=int(np.prod(self.spaces[1].shape)),
                                       action_scale=self.actor.scale, action_offset=self.actor.bias,
                                       reference_hidden=self.cfg.hidden)


#: the older name of :class:`SACAgent` (``sparserl.SAC`` is the user-facing model of :mod:`sparserl.api`)
SAC = SACAgent
