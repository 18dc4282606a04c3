"""The saved-model format: what ``model.save``, a run's ``checkpoint.pt`` and ``sparserl
eval`` / ``export`` / ``sparserl.load`` read and write, and rebuilding an agent from it.

One module owns the format so that the trainer (which writes checkpoints), the Python API
(save / load) and the command line (eval, flops, export) share it without importing one
another: it imports neither the training loop nor the API.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import checkpoint
from .config import TrainConfig
from .devices import resolve_device
from .errors import UserError

MODEL_FORMAT = "sparserl-model/1"


def spaces_record(obs_space, act_space) -> dict:
    """The observation/action spaces as plain data, stored with every saved model so that
    loading needs no environment (and imports no environment module). ``obs_space`` is the
    env's own (before flattening), so ``predict`` accepts observations of that shape."""
    import gymnasium as gym
    record: dict = {"obs_shape": list(obs_space.shape),
                    "obs_low": np.asarray(obs_space.low, np.float32).ravel().tolist(),
                    "obs_high": np.asarray(obs_space.high, np.float32).ravel().tolist()}
    if isinstance(act_space, gym.spaces.Discrete):
        record["action"] = {"type": "discrete", "n": int(act_space.n)}
    else:
        record["action"] = {"type": "box", "shape": list(act_space.shape),
                            "low": np.asarray(act_space.low, np.float32).ravel().tolist(),
                            "high": np.asarray(act_space.high, np.float32).ravel().tolist()}
    return record


def spaces_from_record(record: dict):
    import gymnasium as gym
    n_obs = int(np.prod(record["obs_shape"]))
    obs_space = gym.spaces.Box(np.asarray(record["obs_low"], np.float32).reshape(n_obs),
                               np.asarray(record["obs_high"], np.float32).reshape(n_obs), dtype=np.float32)
    act = record["action"]
    if act["type"] == "discrete":
        return obs_space, gym.spaces.Discrete(act["n"])
    shape = tuple(act["shape"])
    return obs_space, gym.spaces.Box(np.asarray(act["low"], np.float32).reshape(shape),
                                     np.asarray(act["high"], np.float32).reshape(shape), dtype=np.float32)


def model_state(cfg: TrainConfig, agent, spaces: Optional[dict]) -> dict:
    """What :meth:`BaseAlgorithm.save` and a run's ``checkpoint.pt`` hold (the same format)."""
    return {"format": MODEL_FORMAT, "config": cfg.to_dict(), "architecture": agent.architecture(),
            "spaces": spaces, "agent": agent.state_dict()}


def agent_from_state(state: dict, device: str = "cpu", env=None):
    """``(config, agent, spaces record)`` of a saved model or checkpoint, shrunk architecture
    included, built from its stored spaces; a checkpoint older than stored spaces asks ``env``
    (or makes the stored env id, never importing a ``module:Class`` id)."""
    from .algos import make_agent
    cfg = TrainConfig.from_dict(state["config"])
    if state.get("spaces") is not None:
        spaces = state["spaces"]
        obs_space, act_space = spaces_from_record(spaces)
    else:
        if env is None:
            from .envs import make_env
            env = make_env(cfg.env, kwargs=cfg.env_kwargs)
        obs_space, act_space = env.observation_space, env.action_space
        spaces = spaces_record(obs_space, act_space)
    agent = make_agent(cfg, obs_space, act_space, state["architecture"], resolve_device(device))
    agent.load_state_dict(state["agent"], with_training_state=False)
    return cfg, agent, spaces


def read_model(path: Union[str, Path]) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    state = checkpoint.load(p)
    if not isinstance(state, dict) or "config" not in state or "agent" not in state:
        raise UserError(f"{p} is not a sparserl model (no config/agent inside)")
    return state


def load_agent(run_dir: str | Path, device: str = "cpu", env: str | None = None, trust_env_module: bool = False,
               with_env: bool = True):
    """Rebuild a run's agent (shrunk architectures included) from its checkpoint, and the env
    to run it in: ``env`` (given by the user) or the stored id, whose module is imported only
    with ``trust_env_module``. Checkpoints store their spaces, so ``with_env=False`` builds no env."""
    from .envs import make_env

    state = read_model(run_dir)
    cfg = TrainConfig.from_dict(state["config"])
    live_env = None
    if with_env or state.get("spaces") is None:
        live_env = make_env(env or cfg.env, kwargs=cfg.env_kwargs, allow_import=bool(env) or trust_env_module)
    cfg, agent, _ = agent_from_state(state, device, live_env)
    return cfg, agent, live_env
