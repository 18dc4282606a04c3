"""Argument checks of the Python API (:mod:`sparserl.api`), kept apart so that ``api.py`` stays
small: each turns what would be a raw ``AttributeError`` / ``TypeError`` / ``KeyError`` /
``OSError`` deep inside numpy, torch or gymnasium into one :class:`UserError` line naming the
argument, its value and what is allowed (the CLI's rule for bad input)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .algos import AGENTS
from .errors import UserError

SEED_MAX = 2 ** 32 - 1


def _short(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def check_env_argument(env: Any, who: str) -> None:
    """``TD3(42)``: the env must be an id or a Gymnasium env (it would fail later as an
    AttributeError on ``observation_space``)."""
    import gymnasium as gym
    if isinstance(env, str):
        return
    if isinstance(env, gym.Env) or (hasattr(env, "observation_space") and hasattr(env, "action_space")
                                    and hasattr(env, "step") and hasattr(env, "reset")):
        return
    raise UserError(f"{who}: env={_short(env)}; allowed: a Gymnasium env id such as 'Pendulum-v1' or a "
                    f"gymnasium.Env instance")


def check_observation(observation: Any) -> np.ndarray:
    """``predict``'s input as float32, refused in one line if it is not numeric or holds a
    NaN/inf (the networks would return NaN actions without a word)."""
    try:
        obs = np.asarray(observation, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise UserError(f"predict: observation {_short(observation)} is not numeric "
                        f"({' '.join(str(exc).split())[:80]}); allowed: an array of numbers") from None
    if not np.isfinite(obs).all():
        flat = obs.reshape(-1)
        index = int(np.flatnonzero(~np.isfinite(flat))[0])
        raise UserError(f"predict: observation holds {flat[index]} at flat index {index}; allowed: finite numbers")
    return obs


def check_whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer argument in ``[low, high]`` (``bool`` and ``1.5`` refused)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low or (high is not None and value > high):
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise UserError(f"{name}={_short(value)}; allowed: {allowed}")
    return int(value)


def check_evaluate_arguments(n_episodes: Any, seed: Any) -> tuple[int, int]:
    """``evaluate(n_episodes=0)`` returned NaN (the CLI refuses ``--episodes 0``); a negative
    seed was numpy's ValueError."""
    return check_whole("evaluate: n_episodes", n_episodes, 1), check_whole("evaluate: seed", seed, 0, SEED_MAX)


def check_save_path(path: Any) -> Path:
    """``save("")`` or ``save(a_directory)``: one line instead of torch's / the OS's error."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise UserError(f"save: path={_short(path)}; allowed: a file path such as 'model.pt'")
    p = Path(path)
    if p.is_dir():
        raise UserError(f"save: {p} is a directory; allowed: a file path such as {p / 'model.pt'}")
    if p.parent.exists() and not p.parent.is_dir():
        raise UserError(f"save: {p.parent} is a file, not a directory")
    return p


def check_load_path(path: Any) -> None:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise UserError(f"load: path={_short(path)}; allowed: a model file or a sparserl run directory")


#: what a model file / checkpoint.pt must hold (``api.model_state``)
MODEL_KEYS = ("config", "architecture", "agent")


def check_model_state(state: Any, path: Any) -> dict:
    """A loaded model's top-level layout, before anything is built from it."""
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a sparserl model (a {type(state).__name__}, not a dict)")
    missing = [k for k in MODEL_KEYS if k not in state]
    if missing:
        raise UserError(f"{path} is not a sparserl model (missing {', '.join(missing)})")
    algo = state["config"].get("algo") if isinstance(state["config"], dict) else None
    if not isinstance(algo, str) or algo not in AGENTS:
        raise UserError(f"{path}: stored algo {_short(algo)} is unknown; allowed: {', '.join(AGENTS)}")
    if not isinstance(state["config"], dict) or not isinstance(state["agent"], dict):
        raise UserError(f"{path} is not a sparserl model (config/agent are not mappings of the saved format)")
    architecture = state["architecture"]
    if not isinstance(architecture, dict) or not all(
            isinstance(w, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in w)
            for w in architecture.values()):
        raise UserError(f"{path}: stored architecture {_short(architecture)} is malformed; allowed: "
                        f"network name -> list of hidden widths >= 1")
    if state.get("spaces") is not None:
        check_spaces_record(state["spaces"], path)
    return state


def _positive_shape(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value)


def _bounds(value: Any, size: int) -> bool:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return array.ndim == 1 and array.size == size and not np.isnan(array).any()


def check_spaces_record(record: Any, path: Any) -> None:
    """The spaces stored with a model (``api.spaces_record``): ``obs_shape [-3]`` built a Box of
    negative size without a word."""
    def bad(what: str) -> UserError:
        return UserError(f"{path}: stored spaces {what}; the file was edited or damaged")

    if not isinstance(record, dict):
        raise bad(f"are a {type(record).__name__}, not a mapping")
    shape = record.get("obs_shape")
    if not _positive_shape(shape) or not shape:
        raise bad(f"have obs_shape {_short(shape)}; allowed: a non-empty list of integers >= 1")
    n_obs = int(np.prod(shape))
    for key in ("obs_low", "obs_high"):
        if not _bounds(record.get(key), n_obs):
            raise bad(f"have a malformed {key} (allowed: {n_obs} numbers)")
    act = record.get("action")
    if not isinstance(act, dict) or act.get("type") not in ("discrete", "box"):
        raise bad(f"have action {_short(act)}; allowed: type discrete or box")
    if act["type"] == "discrete":
        n = act.get("n")
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise bad(f"have a discrete action n={_short(n)}; allowed: an integer >= 1")
    else:
        a_shape = act.get("shape")
        if not _positive_shape(a_shape) or len(a_shape) != 1:
            raise bad(f"have action shape {_short(a_shape)}; allowed: [n] with n >= 1")
        for key in ("low", "high"):
            if not _bounds(act.get(key), int(a_shape[0])):
                raise bad(f"have a malformed action {key} (allowed: {a_shape[0]} numbers)")
