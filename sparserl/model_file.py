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
    """What :meth:`BaseAlgorithm.save` and a run's ``checkpoint.pt`` hold (the same format).
    The agent's mostly-zero tensors (masked weights, their optimizer moments) are stored as
    values plus a bit mask (:func:`sparserl.checkpoint.compact`), so a sparse agent's file is
    smaller than a dense one's; :func:`read_model` expands them back exactly."""
    return {"format": MODEL_FORMAT, "config": cfg.to_dict(), "architecture": agent.architecture(),
            "spaces": spaces, "agent": checkpoint.compact(agent.state_dict())}


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
    device = resolve_device(device)
    try:  # the state is data: one that does not fit its own architecture is bad input, not a crash
        agent = make_agent(cfg, obs_space, act_space, state["architecture"], device)
        agent.load_state_dict(state["agent"], with_training_state=False)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        from .faults import exception_text
        raise UserError(f"cannot build the saved {cfg.algo} model: its state does not fit its architecture "
                        f"({exception_text(exc, 160)})") from None
    return cfg, agent, spaces


def read_model(path: Union[str, Path]) -> dict:
    from .api_checks import check_load_path, check_model_state
    check_load_path(path)
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    return check_model_state(checkpoint.load(p), p)


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
    cfg, agent, spaces = agent_from_state(state, device, live_env)
    if live_env is not None and state.get("spaces") is not None:
        _check_env_fits(live_env, spaces, env or cfg.env, Path(run_dir))
    return cfg, agent, live_env


def _check_env_fits(env, spaces: dict, env_id: str, run_dir: Path) -> None:
    """``eval --env OTHER``: the env must have the spaces the model was trained on (another
    observation width was a matrix-size traceback; another action space, wrong actions)."""
    import gymnasium as gym
    n_obs = int(np.prod(spaces["obs_shape"]))
    got_obs = int(np.prod(env.observation_space.shape))
    act, space = spaces["action"], env.action_space
    if act["type"] == "discrete":
        fits = isinstance(space, gym.spaces.Discrete) and int(space.n) == int(act["n"])
        trained = f"Discrete({act['n']})"
    else:
        fits = isinstance(space, gym.spaces.Box) and tuple(space.shape) == tuple(act["shape"])
        trained = f"a Box of shape {tuple(act['shape'])}"
    if got_obs != n_obs or not fits:
        raise UserError(f"--env {env_id}: its spaces ({got_obs} observation values, actions {space}) do not fit the "
                        f"model in {run_dir} ({n_obs} observation values, actions {trained}); allowed: an env "
                        f"with the spaces of the one it was trained on")
