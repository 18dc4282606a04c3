"""Evaluation of a deterministic policy: the one definition of "the return of a run".

Used by the training loop (:mod:`~sparserl.trainer`), ``sparserl eval`` (checkpoints and
exported policies) and the Python API's ``model.evaluate``; kept apart from the trainer so
that evaluating a loaded model does not import the training loop.
"""
from __future__ import annotations

import numpy as np

from .faults import checked_env_reset, checked_env_step


class EvalResult(tuple):
    """``(mean, std)`` of the evaluation return -- it unpacks like the plain pair -- plus
    ``collision_rate``: the fraction of episodes in which the env reported ``info["crashed"]``
    (highway-env's flag for the ego vehicle hitting another one, the driving showcase's safety
    metric), or ``None`` for envs that never report the flag."""

    def __new__(cls, mean: float, std: float, collision_rate: float | None = None):
        result = super().__new__(cls, (float(mean), float(std)))
        result.collision_rate = collision_rate
        return result

    def __reduce__(self):  # copy/pickle rebuild it from its three values
        return (type(self), (self[0], self[1], self.collision_rate))

    def __repr__(self) -> str:
        return f"EvalResult(mean={self[0]!r}, std={self[1]!r}, collision_rate={self.collision_rate!r})"

    @property
    def mean(self) -> float:
        return self[0]

    @property
    def std(self) -> float:
        return self[1]


def evaluate(agent, env, episodes: int, step: int | None = None) -> EvalResult:
    """Mean and std of the deterministic policy's return over full episodes (and the collision
    rate where the env reports crashes).  Reads ``info`` only: the env's RNG use is unchanged.
    The env's outputs get the training loop's checks (:mod:`sparserl.faults`), so a raising or
    misbehaving evaluation env is one line naming it (``step``: the training step, for the message)."""
    where = "the evaluation env's"
    at = 0 if step is None else step
    returns, crashes, reports_crashes = [], 0, False
    for _ in range(episodes):
        obs, _ = checked_env_reset(env, at, where)
        done, total, crashed = False, 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = checked_env_step(env, agent.act(obs), at, where)
            total += float(reward)
            if isinstance(info, dict) and "crashed" in info:
                reports_crashes = True
                crashed = crashed or bool(info["crashed"])
            done = terminated or truncated
        returns.append(total)
        crashes += crashed
    rate = crashes / episodes if reports_crashes and episodes else None
    return EvalResult(float(np.mean(returns)), float(np.std(returns)), rate)
