"""Small custom envs for the API tests (importable as tests.api.envs_for_tests)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np


class GridObsEnv(gym.Env):
    """Discrete actions, a (5, 7) Box observation (like highway-env's Kinematics)."""

    def __init__(self, horizon: int = 20):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(5, 7), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.horizon = horizon

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, size=(5, 7)).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.uniform(-1, 1, size=(5, 7)).astype(np.float32)
        reward = float(action == 1)
        return obs, reward, False, self.t >= self.horizon, {}


class DictObsEnv(GridObsEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32)})
