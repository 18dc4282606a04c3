"""Algorithms: each file reads top to bottom; :func:`make_agent` picks one."""
from __future__ import annotations

from .base import Agent
from .dqn import DQN, DQNAgent
from .sac import SAC, SACAgent
from .td3 import TD3, TD3Agent

#: ``--algo`` value -> its agent class. The agents are named ``*Agent``, apart from the user-facing
#: models of the Python API (``sparserl.TD3`` ...); ``DQN``, ``TD3``, ``SAC`` here are older aliases
AGENTS = {"dqn": DQNAgent, "td3": TD3Agent, "sac": SACAgent}


def make_agent(cfg, obs_space, act_space, widths: dict | None = None, device=None) -> Agent:
    """Build the agent on ``device`` with ``cfg.init`` weights; ``widths`` overrides hidden
    widths per MLP path (shrunk checkpoints, a method's own architecture such as 'tiny')."""
    agent = AGENTS[cfg.algo](cfg, obs_space, act_space, widths, device)
    agent.initialize_weights(cfg.init)
    return agent


__all__ = ["Agent", "DQNAgent", "TD3Agent", "SACAgent", "DQN", "TD3", "SAC", "AGENTS", "make_agent"]
