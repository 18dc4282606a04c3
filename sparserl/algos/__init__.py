"""Algorithms: each file reads top to bottom; :func:`make_agent` picks one."""
from __future__ import annotations

from .base import Agent
from .dqn import DQN
from .sac import SAC
from .td3 import TD3

AGENTS = {"dqn": DQN, "td3": TD3, "sac": SAC}


def make_agent(cfg, obs_space, act_space, widths: dict | None = None, device=None) -> Agent:
    """Build the agent on ``device`` with ``cfg.init`` weights; ``widths`` overrides hidden
    widths per MLP path (shrunk checkpoints, a method's own architecture such as 'tiny')."""
    agent = AGENTS[cfg.algo](cfg, obs_space, act_space, widths, device)
    agent.initialize_weights(cfg.init)
    return agent


__all__ = ["Agent", "DQN", "TD3", "SAC", "AGENTS", "make_agent"]
