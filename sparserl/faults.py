"""Stop a run at the first sign of a fault, before it can reach the replay buffer or a checkpoint.

Faults are reported as one line (they are ``UserError``\\ s, so the CLI prints them without a
traceback): a non-finite observation, reward, loss or parameter (:class:`NonFiniteError`), or an
exception raised inside the environment (:class:`EnvStepError`).  The checks are placed so that
the last good checkpoint stays intact:

* :func:`checked_env_step` and :func:`checked_env_reset` (or :func:`check_finite_transition`)
  before a transition is stored;
* :func:`check_finite_losses` on the logs of every update (they are already Python floats, so
  the check costs no tensor work);
* :func:`assert_finite_state` immediately before every ``resume.pt`` / ``checkpoint.pt`` write: a
  poisoned state is never written, whatever slipped through the other checks.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from .errors import UserError


class RunFault(UserError):
    """The run stopped on a fault in its data or environment; its last checkpoint is intact."""


class NonFiniteError(RunFault):
    """A NaN or an infinity in an observation, reward, loss or parameter."""


class EnvStepError(RunFault):
    """The environment raised inside ``step`` or ``reset``."""


def _first_bad(values: np.ndarray) -> str:
    """``nan at index 3`` for the first non-finite entry of an array."""
    flat = values.reshape(-1)
    index = int(np.flatnonzero(~np.isfinite(flat))[0])
    where = f" at index {tuple(int(i) for i in np.unravel_index(index, values.shape))}" if values.ndim > 1 else (
        f" at index {index}" if values.ndim == 1 else "")
    return f"{flat[index]}{where}"


def check_finite_array(value: Any, what: str, step: int) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` and the env ``step`` if ``value`` has a NaN/inf.
    Integer arrays (discrete observations) are finite by construction and skipped."""
    array = np.asarray(value)
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise NonFiniteError(f"non-finite {what} ({_first_bad(array)}) at env step {step}; the run stopped "
                             f"before storing it, its last checkpoint is intact")


def check_reward_type(reward: Any, step: int, where: str = "the environment's") -> None:
    """A reward must be one real number: ``None`` or an array (a vector-env or multi-objective
    reward) would otherwise fail deep inside the replay buffer, or be silently reduced."""
    if isinstance(reward, (bool, np.bool_)) or not (
            isinstance(reward, (int, float, np.integer, np.floating))
            or (isinstance(reward, np.ndarray) and reward.ndim == 0 and reward.dtype.kind in "iuf")):
        shape = f" of shape {reward.shape}" if isinstance(reward, np.ndarray) else ""
        raise EnvStepError(f"{where} step returned reward {_short(reward)} ({type(reward).__name__}{shape}) at env "
                           f"step {step}; allowed: one real number; the run stopped, its last checkpoint is intact")


def check_observation_shape(obs: Any, space, step: int, what: str, where: str = "the environment's") -> None:
    """An observation must have the shape of the env's ``observation_space`` (the networks'
    input width); a wrongly shaped one would fail later as a matrix-size traceback."""
    shape = getattr(space, "shape", None)
    try:
        got = np.shape(obs)
    except Exception:  # a ragged list
        got = None
    if shape is not None and got != tuple(shape):
        raise EnvStepError(f"{where} {what} returned an observation of shape {got} at env step {step}; its "
                           f"observation_space says {tuple(shape)}; the run stopped, its last checkpoint is intact")


def _short(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def check_finite_reward(reward: Any, step: int) -> None:
    check_reward_type(reward, step)
    if not math.isfinite(float(reward)):
        raise NonFiniteError(f"non-finite reward ({float(reward)}) at env step {step}; the run stopped "
                             f"before storing it, its last checkpoint is intact")


def check_finite_transition(obs: Any, reward: Any, next_obs: Any, step: int) -> None:
    """One transition from the environment, checked before it enters the replay buffer."""
    check_finite_reward(reward, step)
    check_finite_array(obs, "observation", step)
    check_finite_array(next_obs, "next observation", step)


def check_finite_losses(logs: Mapping[str, Any], update: int) -> None:
    """The scalar logs of one update (``{"losses/critic": 0.3, ...}``); NaN/inf losses mean the
    networks are about to be (or already are) poisoned."""
    for name, value in logs.items():
        if isinstance(value, (float, int, np.floating, np.integer)) and not math.isfinite(float(value)):
            raise NonFiniteError(f"non-finite {name} ({float(value)}) at gradient step {update}; the run "
                                 f"stopped, its last checkpoint is intact (lower --lr, or check the "
                                 f"environment's rewards)")


def non_finite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [name for name, tensor in named
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def check_finite_module(module: nn.Module, name: str = "network") -> list[str]:
    """Non-finite parameters and buffers of one module, as ``name.param`` strings (empty: all good)."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [f"{name}.{param}" for param in non_finite_tensors(named)]


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> Iterable[tuple[str, torch.Tensor]]:
    for index, state in enumerate(optimizer.state.values()):
        for key, value in state.items():
            if torch.is_tensor(value):
                yield f"state[{index}].{key}", value


def assert_finite_state(modules: Mapping[str, nn.Module], step: int,
                        optimizers: Mapping[str, torch.optim.Optimizer] | None = None) -> None:
    """Call before writing any checkpoint: raise :class:`NonFiniteError` if a network (or an
    optimizer moment) holds a NaN/inf, so the previous, good checkpoint is not overwritten.

    Pass every module the checkpoint holds, targets included, e.g.
    ``{**agent.networks, **{f"{k}_target": v for k, v in agent.targets.items()}}``.
    """
    bad = [entry for name, module in modules.items() for entry in check_finite_module(module, name)]
    for name, optimizer in (optimizers or {}).items():
        bad += [f"{name} optimizer {entry}" for entry in non_finite_tensors(_optimizer_tensors(optimizer))]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteError(f"non-finite values in {', '.join(bad[:3])}{more} at env step {step}; no checkpoint "
                             f"written, the last good one is intact")


def exception_text(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (one line, at most ``limit`` characters of message)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__


def _env_error(exc: Exception, what: str, step: int, where: str = "the environment's") -> EnvStepError:
    return EnvStepError(f"{where} {what} raised {exception_text(exc)} at env step {step}; the run stopped, "
                        f"its last checkpoint is intact")


def env_step(env, action, step: int, where: str = "the environment's"):
    """``env.step(action)``; an exception inside it becomes one :class:`EnvStepError` line naming
    the env step.  ``KeyboardInterrupt`` and other non-``Exception``\\ s pass through.  A step
    must return the 5-tuple of Gymnasium's API (an old 4-tuple ``step`` is named as such)."""
    try:
        result = env.step(action)
    except Exception as exc:
        raise _env_error(exc, "step", step, where) from exc
    if not (isinstance(result, tuple) and len(result) == 5):
        size = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
        raise EnvStepError(f"{where} step returned {size} at env step {step}; allowed: (obs, reward, terminated, "
                           f"truncated, info) as in Gymnasium's API; the run stopped, its last checkpoint is intact")
    return result


def env_reset(env, step: int, where: str = "the environment's", **kwargs):
    """``env.reset(**kwargs)`` with the same one-line error as :func:`env_step`."""
    try:
        result = env.reset(**kwargs)
    except Exception as exc:
        raise _env_error(exc, "reset", step, where) from exc
    if not (isinstance(result, tuple) and len(result) == 2):
        raise EnvStepError(f"{where} reset returned {_short(result)} at env step {step}; allowed: (obs, info) as "
                           f"in Gymnasium's API; the run stopped, its last checkpoint is intact")
    return result


def checked_env_step(env, action, step: int, where: str = "the environment's"):
    """:func:`env_step`, then its reward and next observation checked: the trainer's one call per
    env step (the current observation was checked when it came out of ``step`` or ``reset``, see
    :func:`checked_env_reset`).  Returns ``env.step``'s 5-tuple."""
    next_obs, reward, terminated, truncated, info = env_step(env, action, step, where)
    check_reward_type(reward, step, where)
    check_finite_reward(reward, step)
    check_observation_shape(next_obs, env.observation_space, step, "step", where)
    check_finite_array(next_obs, "observation", step)
    return next_obs, reward, terminated, truncated, info


def checked_env_reset(env, step: int, where: str = "the environment's", **kwargs):
    """:func:`env_reset` with its observation checked.  Returns ``(obs, info)``."""
    obs, info = env_reset(env, step, where, **kwargs)
    check_observation_shape(obs, env.observation_space, step, "reset", where)
    check_finite_array(obs, "observation after reset", step)
    return obs, info
