"""How many optimizer steps ``model.learn()`` will take: every schedule of the callbacks counts
gradient steps, and its planned total comes from here (the rules are in the package docstring)."""
from __future__ import annotations

import math

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

from ...errors import UserError

__all__ = ["planned_updates", "planned_gradient_steps"]


def planned_updates(model: BaseAlgorithm, total_timesteps: int, num_timesteps: int = 0) -> int:
    """Optimizer steps ``model.learn()`` will take from ``num_timesteps`` to ``total_timesteps``
    env steps (see the package docstring); for TD3's actor divide by ``policy_delay``."""
    remaining = max(0, int(total_timesteps) - int(num_timesteps))
    if isinstance(model, OnPolicyAlgorithm):
        rollout = model.n_steps * model.n_envs
        iterations = math.ceil(remaining / rollout)
        epochs = int(getattr(model, "n_epochs", 1))
        batch = int(getattr(model, "batch_size", None) or rollout)
        return iterations * epochs * math.ceil(rollout / batch)
    if isinstance(model, OffPolicyAlgorithm):
        freq = model.train_freq
        if not isinstance(freq, TrainFreq):  # before learn() converts it
            freq = freq if isinstance(freq, tuple) else (freq, "step")
            freq = TrainFreq(int(freq[0]), TrainFrequencyUnit(freq[1]))
        if freq.unit != TrainFrequencyUnit.STEP:
            raise UserError(f"train_freq={tuple(freq)!r} counts episodes, so the number of gradient steps is "
                            f"unknown in advance; pass planned_updates=<gradient steps> to the callback")
        per_rollout = freq.frequency * model.n_envs
        rollouts = math.ceil(remaining / per_rollout)
        # SB3 trains after a rollout once num_timesteps > learning_starts
        before_start = max(0, (model.learning_starts - int(num_timesteps)) // per_rollout)
        steps = model.gradient_steps if model.gradient_steps >= 0 else per_rollout
        return max(0, rollouts - before_start) * steps
    raise UserError(f"{type(model).__name__} is not an on- or off-policy SB3 algorithm; "
                    f"allowed: PPO, A2C, DQN, SAC, TD3")


#: the older name of :func:`planned_updates`, still importable
planned_gradient_steps = planned_updates
