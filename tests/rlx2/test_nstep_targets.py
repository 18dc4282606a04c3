"""n-step windows and the TD3 / SAC n-step targets against hand computations (SPEC §1.2).

The constructed buffer (obs dim 1, action dim 1, gamma = 0.5 so every number is exact):

    logical t  : 0    1    2    3      4    5       6    7   | write head
    obs s_t    : 0    1    2    3      4    5       6    7
    next_obs   : 0.5  1.5  2.5  3.5    4.5  5.5     6.5  7.5
    reward r_t : 1    2    3    4      5    6       7    8
    flag       :                TERM        TRUNC

Episode A = t0..t3 (t3 terminal), episode B = t4..t5 (t5 truncated by a time limit),
episode C = t6..t7 (unfinished: the write head follows t7).  Before these, four junk
transitions (reward 100, obs -1) were written and evicted so that the valid data wraps
around the physical ring (max_size 10, start = 4): a window that read past the write head
would hit the junk still lying in physical slots 2 and 3.
"""
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from sparserl.algos.sac import SAC
from sparserl.algos.td3 import TD3
from sparserl.buffers import ReplayBuffer
from sparserl.config import TrainConfig, resolve

GAMMA = 0.5
TERMINAL, TRUNCATED = 3, 5


def make_buffer() -> ReplayBuffer:
    buf = ReplayBuffer((1,), (1,), np.float32, max_size=10, store_behaviour=True)
    for _ in range(4):
        buf.add([-1.0], [0.0], 100.0, [-1.0], False, False)
    assert buf.evict_oldest(4) == 4 and buf.start == 4 and buf.size == 0
    for t in range(8):
        buf.add([float(t)], [0.1 * t], float(t + 1), [t + 0.5], t == TERMINAL, t == TRUNCATED)
    # the data really wraps: logical 6 and 7 live in physical slots 0 and 1
    assert buf.size == 8 and list(buf.physical(np.array([5, 6, 7]))) == [9, 0, 1]
    return buf


# Hand-derived windows for n = 3 (r_t = t + 1):
#   offset: rewards          step_mask  m  next_obs term  mid_obs (s_{t+1}, s_{t+2})
EXPECTED = {
    0: ([1, 2, 3], [1, 1, 1], 3, 2.5, 0, [1, 2]),   # full window, t2 does not end the episode
    1: ([2, 3, 4], [1, 1, 1], 3, 3.5, 1, [2, 3]),   # terminal t3 is the window's last step
    2: ([3, 4, 0], [1, 1, 0], 2, 3.5, 1, [3, 0]),   # stops at the terminal t3
    3: ([4, 0, 0], [1, 0, 0], 1, 3.5, 1, [0, 0]),   # starts on the terminal
    4: ([5, 6, 0], [1, 1, 0], 2, 5.5, 0, [5, 0]),   # stops at the truncation t5: NOT terminal
    5: ([6, 0, 0], [1, 0, 0], 1, 5.5, 0, [0, 0]),   # starts on the truncation
    6: ([7, 8, 0], [1, 1, 0], 2, 7.5, 0, [7, 0]),   # stops at the write head after t7
    7: ([8, 0, 0], [1, 0, 0], 1, 7.5, 0, [0, 0]),   # newest transition
}


def test_window_fields_match_hand_computation():
    buf = make_buffer()
    batch = buf.window(np.arange(8), n=3)
    for j, (rew, mask, m, nxt, term, mid) in EXPECTED.items():
        assert batch.rewards[j].tolist() == rew, j
        assert batch.step_mask[j].tolist() == mask, j
        assert int(batch.n_steps[j]) == m, j
        assert batch.next_obs[j].tolist() == [nxt], j
        assert float(batch.terminated[j]) == term, j
        assert batch.mid_obs[j, :, 0].tolist() == mid, j
        assert batch.obs[j].tolist() == [float(j)], j
        assert batch.actions[j].tolist() == pytest.approx([0.1 * j]), j
    # discounted rewards: window 0 = 1 + 0.5*2 + 0.25*3 = 2.75; window 4 = 5 + 0.5*6 = 8
    assert batch.discounted_reward(GAMMA)[[0, 4]].tolist() == [2.75, 8.0]
    # bootstrap weights: 0.5^3 = 0.125 (w0), 0 for terminal w1..w3, 0.5^2 = 0.25 (w4), 0.5 (w5)
    assert batch.bootstrap_discount(GAMMA)[:6].tolist() == [0.125, 0.0, 0.0, 0.0, 0.25, 0.5]


def test_one_step_window_is_the_plain_transition():
    buf = make_buffer()
    batch = buf.window(np.array([0, 3, 5, 7]), n=1)
    assert batch.rewards[:, 0].tolist() == [1, 4, 6, 8]
    assert batch.next_obs[:, 0].tolist() == [0.5, 3.5, 5.5, 7.5]
    assert batch.terminated.tolist() == [0, 1, 0, 0]       # only t3 is terminal
    assert batch.n_steps.tolist() == [1, 1, 1, 1] and batch.mid_obs is None
    assert batch.bootstrap_discount(GAMMA).tolist() == [0.5, 0.0, 0.5, 0.5]


def test_longer_n_still_stops_at_boundaries():
    buf = make_buffer()
    batch = buf.window(np.array([0, 4, 6]), n=5)
    # w0 with n=5: t0..t3 then the terminal stops it -> m = 4, rewards 1,2,3,4
    assert batch.rewards[0].tolist() == [1, 2, 3, 4, 0] and int(batch.n_steps[0]) == 4
    assert float(batch.terminated[0]) == 1.0
    # w4: t4, t5 (truncated) -> m = 2; w6: t6, t7, write head -> m = 2 (no junk reward 100)
    assert batch.rewards[1].tolist() == [5, 6, 0, 0, 0] and batch.rewards[2].tolist() == [7, 8, 0, 0, 0]
    assert batch.n_steps[1:].tolist() == [2, 2]


# ------------------------------------------------------------------------- stub networks
class StubTwinQ(nn.Module):
    """Q1(s, a) = s + 10, Q2(s, a) = s + 20: the clipped double-Q min is s + 10."""

    def forward(self, obs, act):
        s = obs[:, 0]
        return s + 10.0, s + 20.0


class StubGaussianActor(nn.Module):
    """log pi(.|s) = -s, action 0 (only the log-prob enters the SAC target)."""

    def sample(self, obs):
        return torch.zeros(obs.shape[0], 1), -obs[:, 0]


def spaces_1d():
    box = spaces.Box(-1.0, 1.0, (1,), np.float32)
    return box, box


def test_td3_nstep_target_matches_hand_computation():
    cfg = resolve(TrainConfig(algo="td3", hidden=[8], gamma=GAMMA, policy_noise=0.0))
    agent = TD3(cfg, *spaces_1d())
    agent.targets["critic"] = StubTwinQ()
    batch = make_buffer().window(np.arange(8), n=3)
    y = agent.critic_target(batch)
    # y = sum_k g^k r_{t+k} + g^m (1 - term) (s' + 10), g = 0.5:
    expected = [
        2.75 + 0.125 * 12.5,     # w0: 1 + 1 + 0.75, s' = 2.5            -> 4.3125
        2.0 + 1.5 + 1.0,         # w1: terminal, no bootstrap             -> 4.5
        3.0 + 2.0,               # w2: terminal                           -> 5
        4.0,                     # w3: terminal                           -> 4
        5.0 + 3.0 + 0.25 * 15.5,  # w4: truncation bootstraps from s'=5.5  -> 11.875
        6.0 + 0.5 * 15.5,        # w5                                     -> 13.75
        7.0 + 4.0 + 0.25 * 17.5,  # w6: write head, s' = 7.5               -> 15.375
        8.0 + 0.5 * 17.5,        # w7                                     -> 16.75
    ]
    assert y.tolist() == pytest.approx(expected, abs=1e-5)


def test_sac_soft_nstep_target_matches_hand_computation():
    cfg = resolve(TrainConfig(algo="sac", hidden=[8], gamma=GAMMA, alpha=0.5, autotune=False))
    agent = SAC(cfg, *spaces_1d())
    assert agent.alpha == pytest.approx(0.5)
    agent.targets["critic"] = StubTwinQ()
    agent.actor = StubGaussianActor()
    agent.count_flops = lambda *a, **k: None  # the stub has no layers to count
    batch = make_buffer().window(np.arange(8), n=3)
    y = agent.critic_target(batch)
    # y = R - alpha sum_{1<=k<m} g^k logp(s_{t+k}) + g^m (1-term) (Q(s') - alpha logp(s'))
    # with logp(s) = -s, alpha = 0.5: entropy terms add 0.5 g^k s_{t+k}; soft V(s') = s'+10+0.5 s'
    expected = [
        2.75 + 0.5 * (0.5 * 1 + 0.25 * 2) + 0.125 * (12.5 + 1.25),   # w0 -> 4.96875
        4.5 + 0.5 * (0.5 * 2 + 0.25 * 3),                           # w1 terminal -> 5.375
        5.0 + 0.5 * (0.5 * 3),                                      # w2 terminal -> 5.75
        4.0,                                                        # w3 -> 4
        8.0 + 0.5 * (0.5 * 5) + 0.25 * (15.5 + 2.75),               # w4 -> 13.8125
        6.0 + 0.5 * (15.5 + 2.75),                                  # w5 -> 15.125
        11.0 + 0.5 * (0.5 * 7) + 0.25 * (17.5 + 3.75),              # w6 -> 18.0625
        8.0 + 0.5 * (17.5 + 3.75),                                  # w7 -> 18.625
    ]
    assert y.tolist() == pytest.approx(expected, abs=1e-4)
    # n = 1 is the ordinary SAC target: w0 = 1 + 0.5 * (0.5 + 10 + 0.25) = 6.375
    y1 = agent.critic_target(make_buffer().window(np.array([0]), n=1))
    assert y1.tolist() == pytest.approx([6.375], abs=1e-5)
