"""Replay buffer with n-step windows, a movable capacity and behaviour-action means.

The buffer is one preallocated ring of ``max_size`` slots read through a *logical* window
``[start, start + size)``: logical offset 0 is the oldest transition, ``size - 1`` the
newest (the write head follows it).  Keeping the valid data contiguous in logical order
makes three things simple and exact:

* n-step windows: a window starting at offset j may use offsets j..j+n-1 only while they
  are ``< size`` (never past the write head) and stop after the first transition that
  ended its episode (terminated *or* truncated);
* evicting the oldest data (dynamic capacity, RLx2 §1.3) is ``start += k``;
* a changing capacity is just a bound on ``size``.

``terminated`` and ``truncated`` are stored apart: a time-limit truncation is not a
terminal, so targets bootstrap through it from the stored real ``next_obs``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from .checkpoint import rng_state_from_str, rng_state_to_str


@dataclass
class Batch:
    """A minibatch of n-step windows (n = 1 gives ordinary transitions).

    ``rewards[:, k]`` is r_{t+k} for k < m and 0 beyond the window, ``step_mask[:, k]`` is 1
    for k < m, ``next_obs`` is s_{t+m} (the real next state of the window's last
    transition), ``terminated`` says whether that last transition was terminal, ``n_steps``
    is m and ``mid_obs[:, k-1]`` is s_{t+k} for 1 <= k < n (zeros outside the window; SAC's
    soft n-step return needs them).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    step_mask: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    n_steps: torch.Tensor
    mid_obs: Optional[torch.Tensor] = None
    behaviour: Optional[torch.Tensor] = None

    @property
    def size(self) -> int:
        """Windows per agent (B; a stacked group's batch has a leading agent axis before it)."""
        return self.rewards.shape[-2]

    def discounted_reward(self, gamma: float) -> torch.Tensor:
        """sum_{k<m} gamma^k r_{t+k}, shape (B,)."""
        n = self.rewards.shape[-1]
        powers = gamma ** torch.arange(n, dtype=self.rewards.dtype, device=self.rewards.device)
        return (self.rewards * powers).sum(dim=-1)

    def bootstrap_discount(self, gamma: float) -> torch.Tensor:
        """gamma^m * (1 - terminated), shape (B,): the weight of the bootstrapped value."""
        return (gamma ** self.n_steps.to(self.rewards.dtype)) * (1.0 - self.terminated)


class ReplayBuffer:
    """Preallocated numpy ring buffer; see the module docstring for the layout."""

    def __init__(self, obs_shape: tuple, action_shape: tuple, action_dtype, max_size: int,
                 seed: int = 0, store_behaviour: bool = False, rng: np.random.Generator | None = None,
                 device: torch.device | str | None = None):
        if max_size <= 0:
            raise ValueError(f"buffer max_size must be positive, got {max_size}")
        self.max_size = int(max_size)
        self.capacity = int(max_size)
        self.obs = np.zeros((max_size, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((max_size, *obs_shape), dtype=np.float32)
        self.actions = np.zeros((max_size, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(max_size, dtype=np.float32)
        self.terminated = np.zeros(max_size, dtype=bool)
        self.truncated = np.zeros(max_size, dtype=bool)
        # Pre-noise mean of the behaviour policy (continuous control): the dynamic buffer
        # compares it with the current policy to decide whether old data is still useful.
        self.behaviour = np.zeros((max_size, *action_shape), dtype=np.float32) if store_behaviour else None
        self.start = 0
        self.size = 0
        self.total_added = 0
        # sampling stream: pass ``rng`` (the trainer spawns one independent of its exploration stream)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    # -- writing ------------------------------------------------------------------------
    def add(self, obs, action, reward, next_obs, terminated: bool, truncated: bool, behaviour=None) -> None:
        i = (self.start + self.size) % self.max_size
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = terminated
        self.truncated[i] = truncated
        if self.behaviour is not None:
            self.behaviour[i] = action if behaviour is None else behaviour
        if self.size < self.capacity:
            self.size += 1
        else:  # full at the current capacity: the oldest transition makes room
            self.start = (self.start + 1) % self.max_size
        self.total_added += 1

    def evict_oldest(self, count: int) -> int:
        """Drop the ``count`` oldest transitions; returns how many were dropped."""
        count = int(max(0, min(count, self.size)))
        self.start = (self.start + count) % self.max_size
        self.size -= count
        return count

    def set_capacity(self, capacity: int) -> None:
        """Bound the number of stored transitions; evicts the oldest beyond it."""
        if not 1 <= capacity <= self.max_size:
            raise ValueError(f"capacity must be in [1, {self.max_size}], got {capacity}")
        self.capacity = int(capacity)
        if self.size > self.capacity:
            self.evict_oldest(self.size - self.capacity)

    def __len__(self) -> int:
        return self.size

    def physical(self, offsets: np.ndarray) -> np.ndarray:
        """Ring indices of logical offsets (0 = oldest)."""
        return (self.start + offsets) % self.max_size

    # -- reading ------------------------------------------------------------------------
    def oldest(self, count: int) -> dict[str, np.ndarray]:
        idx = self.physical(np.arange(min(count, self.size)))
        out = {"obs": self.obs[idx], "actions": self.actions[idx]}
        if self.behaviour is not None:
            out["behaviour"] = self.behaviour[idx]
        return out

    def sample(self, batch_size: int, n: int = 1, mid_obs: bool = True) -> Batch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        offsets = self.rng.integers(0, self.size, size=batch_size)
        return self.window(offsets, n, mid_obs)

    def window(self, offsets: np.ndarray, n: int = 1, mid_obs: bool = True) -> Batch:
        """n-step windows starting at the given logical offsets (deterministic; used by tests).
        ``mid_obs=False`` skips gathering the intermediate states (only SAC's soft return uses them)."""
        want_mid_obs = mid_obs
        offsets = np.asarray(offsets, dtype=np.int64)
        b = len(offsets)
        first = self.physical(offsets)
        device = self.device
        if device.type == "cpu":
            as_t = torch.from_numpy
        else:  # minibatches go to the networks' device in one copy per array
            def as_t(a):
                return torch.from_numpy(a).to(device, non_blocking=True)
        if n == 1:  # hot path of every 1-step update: no window bookkeeping
            return Batch(
                obs=as_t(self.obs[first]), actions=as_t(self.actions[first]),
                rewards=as_t(self.rewards[first]).unsqueeze(1), step_mask=torch.ones(b, 1, device=device),
                next_obs=as_t(self.next_obs[first]),
                terminated=as_t(self.terminated[first].astype(np.float32)),
                n_steps=torch.ones(b, dtype=torch.int64, device=device), mid_obs=None,
                behaviour=None if self.behaviour is None else as_t(self.behaviour[first]))
        valid = np.zeros((b, n), dtype=bool)
        valid[:, 0] = True
        last = first.copy()
        for k in range(1, n):
            prev = self.physical(offsets + k - 1)
            ended = self.terminated[prev] | self.truncated[prev]
            valid[:, k] = valid[:, k - 1] & ~ended & (offsets + k < self.size)
            last = np.where(valid[:, k], self.physical(offsets + k), last)
        rewards = np.zeros((b, n), dtype=np.float32)
        mid_obs = np.zeros((b, n - 1, *self.obs.shape[1:]), dtype=np.float32) if n > 1 and want_mid_obs else None
        for k in range(n):
            idx = self.physical(np.minimum(offsets + k, self.size - 1))
            rewards[:, k] = np.where(valid[:, k], self.rewards[idx], 0.0)
            if k >= 1 and mid_obs is not None:
                mid_obs[:, k - 1] = self.obs[idx] * valid[:, k].reshape(b, *([1] * (self.obs.ndim - 1)))
        return Batch(
            obs=as_t(self.obs[first]),
            actions=as_t(self.actions[first]),
            rewards=as_t(rewards),
            step_mask=as_t(valid.astype(np.float32)),
            next_obs=as_t(self.next_obs[last]),
            terminated=as_t(self.terminated[last].astype(np.float32)),
            n_steps=as_t(valid.sum(axis=1).astype(np.int64)),
            mid_obs=None if mid_obs is None else as_t(mid_obs),
            behaviour=None if self.behaviour is None else as_t(self.behaviour[first]),
        )

    # -- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Only the valid part, in logical order (tensors, so ``weights_only`` loading works)."""
        idx = self.physical(np.arange(self.size))
        state = {
            "obs": torch.from_numpy(self.obs[idx]), "next_obs": torch.from_numpy(self.next_obs[idx]),
            "actions": torch.from_numpy(self.actions[idx]), "rewards": torch.from_numpy(self.rewards[idx]),
            "terminated": torch.from_numpy(self.terminated[idx]), "truncated": torch.from_numpy(self.truncated[idx]),
            "capacity": self.capacity, "total_added": self.total_added,
            "rng": rng_state_to_str(self.rng.bit_generator.state),
        }
        if self.behaviour is not None:
            state["behaviour"] = torch.from_numpy(self.behaviour[idx])
        return state

    def load_state_dict(self, state: dict) -> None:
        n = int(state["obs"].shape[0])
        self.start, self.size = 0, n
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated", "behaviour"):
            if name in state and getattr(self, name) is not None:
                getattr(self, name)[:n] = state[name].numpy()
        self.capacity = int(state["capacity"])
        self.total_added = int(state["total_added"])
        self.rng.bit_generator.state = rng_state_from_str(state["rng"])


#: The RLx2 reference code's threshold, applied to the ``mse`` distance (mean of delta^2 / 2).
REFERENCE_THRESHOLD = 0.2
POLICY_DISTANCES = ("mse", "l2")
SHRINK_RULES = ("reference", "fraction", "to-threshold")


def calibrated_threshold(metric: str, action_dim: int, mse_threshold: float = REFERENCE_THRESHOLD) -> float:
    """The threshold of ``metric`` that fires at the same policy drift as ``mse_threshold`` on
    the reference's ``mse`` scale.

    If every scaled per-dimension difference has RMS ``d``, then ``mse = d^2 / 2`` and the
    per-sample Euclidean distance is ``d * sqrt(A)`` for ``A`` action dimensions.  So
    ``mse = 0.2`` (the reference) is ``d = sqrt(0.4) ~ 0.63`` and the same drift on the ``l2``
    scale is ``sqrt(2 * 0.2 * A)``: 1.10 for 3-d actions (Hopper), 1.55 for 6-d (Walker2d,
    HalfCheetah).  (With drift spread unevenly over samples the mean L2 is at most this, by
    Jensen's inequality, so the calibrated ``l2`` rule never fires at *less* drift.)
    Using 0.2 on the L2 scale instead would evict at 5-8x less drift than the reference.
    """
    if metric == "mse":
        return float(mse_threshold)
    if metric == "l2":
        return math.sqrt(2.0 * mse_threshold * action_dim)
    raise ValueError(f"policy distance must be one of {', '.join(POLICY_DISTANCES)}, got {metric!r}")


class DynamicCapacity:
    """RLx2's dynamic-capacity control (SPEC §1.3).

    Every ``check_every`` env steps the policy distance is measured on the oldest
    ``window`` transitions: the current deterministic policy action against the stored
    pre-noise behaviour action, both divided by the action bound.

    * ``metric="mse"`` (the reference code, default): mean over samples and action
      dimensions of ``delta^2 / 2``;
    * ``metric="l2"`` (the paper's Eq. 6): mean over samples of the Euclidean distance.

    ``threshold=None`` takes :func:`calibrated_threshold`: the reference's 0.2 for ``mse``,
    the same per-dimension drift (``sqrt(0.4 * A)``) for ``l2``.

    If the distance exceeds ``threshold`` and the buffer holds more than ``min_size``, the
    oldest data is dropped by one of three rules:

    * ``shrink="reference"`` (default; exactly the RLx2 reference's ``shrink()``): drop the
      oldest ``int(fraction * size)`` transitions (10% of the *current* size) once.  The
      capacity is not touched: it stays ``max_size``, so new data keeps arriving and the
      size grows again until ``max_size``; one eviction may take the size below
      ``min_size`` (the ``size > min_size`` guard is checked before it, as in the reference).
    * ``shrink="fraction"``: the same 10% per check, but never below ``min_size``, and the
      capacity is then capped at the remaining size (the buffer works as a smaller FIFO until
      the distance is back within the threshold).  Not the reference: it caps.
    * ``shrink="to-threshold"`` (the paper's wording): evict ``window``-sized chunks of the
      oldest data until the distance of the new oldest window is within the threshold (or
      ``min_size`` is reached), then cap the capacity there, like ``fraction``.

    With a capping rule, a check whose distance is within the threshold lets the capacity
    grow back to ``max_size``.  Every check returns a record (distance, capacity, size,
    evicted), whether or not it evicted anything.
    """

    def __init__(self, buffer: ReplayBuffer, min_size: int, max_size: int, threshold: Optional[float] = None,
                 check_every: int = 10_000, metric: str = "mse", shrink: str = "reference",
                 window: int = 2048, fraction: float = 0.1):
        if metric not in POLICY_DISTANCES:
            raise ValueError(f"policy distance must be one of {', '.join(POLICY_DISTANCES)}, got {metric!r}")
        if shrink not in SHRINK_RULES:
            raise ValueError(f"buffer shrink must be one of {', '.join(SHRINK_RULES)}, got {shrink!r}")
        if not 1 <= min_size <= max_size <= buffer.max_size:
            raise ValueError(f"need 1 <= buffer_min ({min_size}) <= buffer_max ({max_size}) <= {buffer.max_size}")
        if buffer.behaviour is None:
            raise ValueError("the dynamic buffer needs a buffer that stores behaviour actions")
        action_dim = int(np.prod(buffer.behaviour.shape[1:]))
        self.buffer, self.min_size, self.max_size = buffer, int(min_size), int(max_size)
        self.threshold = calibrated_threshold(metric, action_dim) if threshold is None else float(threshold)
        self.check_every, self.metric = int(check_every), metric
        self.shrink, self.window, self.fraction = shrink, int(window), fraction
        self.buffer.set_capacity(self.max_size)
        self.last_distance = float("nan")

    def distance(self, policy: Callable[[np.ndarray], np.ndarray], action_scale: np.ndarray) -> float:
        old = self.buffer.oldest(self.window)
        diff = (policy(old["obs"]) - old["behaviour"]) / action_scale
        if self.metric == "l2":
            return float(np.linalg.norm(diff, axis=-1).mean())
        return float((diff ** 2).mean() / 2.0)

    def maybe_update(self, env_step: int, policy: Callable[[np.ndarray], np.ndarray],
                     action_scale: np.ndarray) -> Optional[dict]:
        """Run a check if one is due at this env step; returns its log record if it ran."""
        if env_step % self.check_every != 0 or self.buffer.size == 0:
            return None
        dist = self.distance(policy, action_scale)
        evicted = 0
        if dist > self.threshold and self.buffer.size > self.min_size:
            if self.shrink == "reference":
                evicted = self.buffer.evict_oldest(int(self.fraction * self.buffer.size))
            elif self.shrink == "fraction":
                evicted = self.buffer.evict_oldest(min(int(self.fraction * self.buffer.size),
                                                       self.buffer.size - self.min_size))
            else:
                d = dist
                while d > self.threshold and self.buffer.size > self.min_size:
                    evicted += self.buffer.evict_oldest(min(self.window, self.buffer.size - self.min_size))
                    d = self.distance(policy, action_scale)
            if self.shrink != "reference":
                self.buffer.set_capacity(max(self.buffer.size, self.min_size))
        elif dist <= self.threshold:
            self.buffer.set_capacity(self.max_size)
        self.last_distance = dist
        return {"policy_distance": dist, "buffer_capacity": self.buffer.capacity,
                "buffer_size": self.buffer.size, "evicted": evicted}

    def state_dict(self) -> dict:
        return {"last_distance": self.last_distance}

    def load_state_dict(self, state: dict) -> None:
        self.last_distance = float(state["last_distance"])
