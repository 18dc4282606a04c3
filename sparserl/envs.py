"""Environment creation with one-line errors for bad ids and algorithm/action-space mismatches."""
from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np

from .algos import AGENTS
from .errors import UserError


# Env ids that a package registers only when it is imported (Gymnasium >= 1.0 loads no env
# plugins by itself): id prefix -> (module, how to install it).
LAZY_ENV_MODULES = {
    prefix: ("highway_env", "pip install 'sparserl[driving]'")
    for prefix in ("highway", "merge", "roundabout", "intersection", "parking", "racetrack", "exit",
                   "lane-keeping", "two-way", "u-turn")
}


def _gym_make(env_id: str, **kwargs) -> gym.Env:
    """``gym.make``; an unknown id of a lazily registered family imports its package and retries."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.NameNotFound:
        lazy = next((v for prefix, v in LAZY_ENV_MODULES.items() if env_id.startswith(prefix)), None)
        if lazy is None:
            raise
        module, install = lazy
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(f"--env {env_id!r} needs the {module} package; install it with: {install}") from None
        return gym.make(env_id, **kwargs)


def make_env(env_id: str, seed: int | None = None, kwargs: dict | None = None,
             allow_import: bool = False) -> gym.Env:
    """A registered Gymnasium id (``Hopper-v5``) or ``module.path:ClassName``; ``kwargs`` go to
    the env constructor (``--env-kwargs``, e.g. highway-env's ``config``).

    Any id with a ``:`` imports a module (ours or Gymnasium's ``module:Env-v0``), which runs its
    code, so it needs ``allow_import=True``: pass it only when the user typed the env id (``--env``,
    the Python API) or opted in (``--trust-env-module``), never for an id read from a config, run
    or checkpoint.
    """
    if isinstance(env_id, str) and ":" in env_id and not allow_import:
        raise UserError(f"env {env_id!r} names module {env_id.partition(':')[0]!r}; pass --trust-env-module "
                        f"to import it (importing runs its code)")
    kwargs = dict(kwargs or {})
    try:
        if ":" in env_id and env_id not in gym.registry:
            module_name, _, class_name = env_id.partition(":")
            env_cls = getattr(importlib.import_module(module_name), class_name)
            if not (isinstance(env_cls, type) and issubclass(env_cls, gym.Env)):
                raise TypeError(f"{class_name} is not a gymnasium.Env subclass")
            env = env_cls(**kwargs)
            if env.spec is None or env.spec.max_episode_steps is None:  # unregistered: no time limit yet
                env = gym.wrappers.TimeLimit(env, 1000)
        else:
            env = _gym_make(env_id, **kwargs)
    except (gym.error.Error, ImportError, AttributeError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"unknown or unusable --env {env_id!r} ({msg}); use a registered Gymnasium id "
                        f"such as Hopper-v5 or module.path:ClassName") from None
    except UserError:
        raise
    except Exception as exc:  # the env's own constructor raised: its fault, said in one line
        from .faults import exception_text
        raise UserError(f"--env {env_id!r}: creating the environment raised {exception_text(exc)}") from None
    env = prepare_env(env, env_id)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def prepare_env(env: gym.Env, env_id: str) -> gym.Env:
    """What the MLPs need: a flat vector observation. A ``Box`` of any shape (e.g.
    highway-env's vehicles x features ``Kinematics``) is flattened; other spaces get one line."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict):
        raise UserError(f"{env_id}: Dict observations are not supported; wrap the env in "
                        f"gymnasium.wrappers.FlattenObservation (or pick the keys you need) first")
    if not isinstance(space, gym.spaces.Box):
        raise UserError(f"{env_id}: only Box observations are supported, got {space}; wrap the env in "
                        f"gymnasium.wrappers.FlattenObservation for a vector")
    if len(space.shape) != 1:
        env = gym.wrappers.FlattenObservation(env)
    return env


#: how a message names each kind of action space an algorithm can need, and what to use instead
ACTION_SPACE_WORDS = {gym.spaces.Box: ("a continuous (Box)", "use --algo dqn for discrete actions"),
                      gym.spaces.Discrete: ("a discrete", "use --algo td3 or sac for continuous actions")}


def check_compatible(algo: str, env: gym.Env, env_id: str) -> None:
    """Refuse an env whose action space the algorithm cannot act in (the agent class says which
    kind it needs: ``Agent.action_space_type``) or whose actions it would map wrongly."""
    space = env.action_space
    needed = AGENTS[algo].action_space_type
    if not isinstance(space, needed):
        kind, instead = ACTION_SPACE_WORDS[needed]
        raise UserError(f"--algo {algo} needs {kind} action space, but {env_id} has {space}; {instead}")
    if isinstance(space, gym.spaces.Discrete) and int(space.start) != 0:
        # the Q-network's argmax (in training, eval, checkpoints and every export format) is an
        # index 0..n-1: without this check the env would get action k for the agent's k + start
        raise UserError(f"{env_id}: discrete actions must start at 0, got {space} (start={int(space.start)}); "
                        f"wrap the env so its actions are 0..{int(space.n) - 1}")
    if isinstance(space, gym.spaces.Box) and space.dtype.kind != "f":
        # the actor outputs real numbers; an integer Box would get them truncated (or refused)
        raise UserError(f"{env_id}: continuous actions must be floating point, got a Box of {space.dtype} "
                        f"({space}); use a float Box (and round in the env) or a Discrete space with --algo dqn")
    if isinstance(space, gym.spaces.Box) and len(space.shape) != 1:
        # actions are one vector everywhere (networks, buffer, exports); a matrix would be reshaped silently
        raise UserError(f"{env_id}: continuous actions must be a 1-D Box (a vector), got shape {space.shape}; "
                        f"wrap the env so its action is a vector of {int(np.prod(space.shape))}")
    if isinstance(space, gym.spaces.Box) and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise UserError(f"{env_id}: continuous actions must be bounded, got low={space.low} high={space.high}")
    if not isinstance(env.observation_space, gym.spaces.Box):
        raise UserError(f"{env_id}: only Box (vector) observations are supported, got {env.observation_space}")


def get_rng_state(env: gym.Env) -> dict:
    return env.unwrapped.np_random.bit_generator.state


def set_rng_state(env: gym.Env, state: dict) -> None:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    env.unwrapped.np_random = rng


def original_observation_space(env: gym.Env):
    """The observation space before :func:`prepare_env`'s flattening (what users feed ``predict``)."""
    if isinstance(env, gym.wrappers.FlattenObservation):
        return env.env.observation_space
    return env.observation_space
