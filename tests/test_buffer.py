"""Replay buffer: terminated vs truncated bootstrapping, wrap-around, shapes/dtypes, state round trip."""
import numpy as np
import pytest
import torch

from sparserl.buffers import ReplayBuffer

GAMMA = 0.99


def _obs(i: int, dim: int = 3) -> np.ndarray:
    """A distinct, recognisable observation for transition i."""
    return np.full(dim, float(i), dtype=np.float32)


def _fill(buf: ReplayBuffer, count: int, act_dim: int | None = 2, start: int = 0,
          terminated_at=(), truncated_at=()) -> None:
    """Add transitions i = start..start+count-1 with obs=i, next_obs=i+0.5, reward=i, action=i."""
    for i in range(start, start + count):
        action = np.full(act_dim, float(i), dtype=np.float32) if act_dim else np.int64(i % 4)
        buf.add(_obs(i), action, float(i), _obs(i) + 0.5, i in terminated_at, i in truncated_at)


# --- terminated vs truncated ----------------------------------------------------------------

def test_terminal_does_not_bootstrap_but_truncation_does():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=16)
    _fill(buf, 6, terminated_at={2}, truncated_at={4})
    batch = buf.window(np.array([1, 2, 4]), n=1)
    disc = batch.bootstrap_discount(GAMMA)
    assert disc.shape == (3,)
    assert disc[0].item() == pytest.approx(GAMMA)   # ordinary transition
    assert disc[1].item() == 0.0                    # terminal: no bootstrap
    assert disc[2].item() == pytest.approx(GAMMA)   # time-limit truncation: bootstrap through it
    # The state we bootstrap from is the stored *real* next state, not the next episode's reset.
    assert torch.equal(batch.next_obs[2], torch.from_numpy(_obs(4) + 0.5))
    assert torch.equal(batch.next_obs[0], torch.from_numpy(_obs(1) + 0.5))
    assert batch.terminated.tolist() == [0.0, 1.0, 0.0]
    assert torch.allclose(batch.discounted_reward(GAMMA), torch.tensor([1.0, 2.0, 4.0]))


def test_nstep_window_stops_at_episode_end_either_way():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=16)
    _fill(buf, 10, terminated_at={2}, truncated_at={6})
    batch = buf.window(np.array([1, 5, 7]), n=3)
    # offset 1: r1, r2 then the terminal at 2 ends the window -> m=2, no bootstrap
    # offset 5: r5, r6 then truncation at 6 ends the window -> m=2, bootstrap gamma^2 from next_obs of 6
    # offset 7: full window 7, 8, 9 -> m=3
    assert batch.n_steps.tolist() == [2, 2, 3]
    disc = batch.bootstrap_discount(GAMMA)
    assert disc[0].item() == 0.0
    assert disc[1].item() == pytest.approx(GAMMA ** 2)
    assert disc[2].item() == pytest.approx(GAMMA ** 3)
    assert torch.equal(batch.next_obs[1], torch.from_numpy(_obs(6) + 0.5))
    assert torch.equal(batch.next_obs[2], torch.from_numpy(_obs(9) + 0.5))
    expected = torch.tensor([1 + GAMMA * 2, 5 + GAMMA * 6, 7 + GAMMA * 8 + GAMMA ** 2 * 9])
    assert torch.allclose(batch.discounted_reward(GAMMA), expected)


def test_nstep_window_never_reads_past_the_write_head():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=16)
    _fill(buf, 5)
    batch = buf.window(np.array([4, 3]), n=3)
    assert batch.n_steps.tolist() == [1, 2]
    assert torch.equal(batch.next_obs[0], torch.from_numpy(_obs(4) + 0.5))


# --- wrap-around -----------------------------------------------------------------------------

def test_wraparound_overwrites_oldest_and_keeps_logical_order():
    max_size, total = 8, 21
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=max_size, seed=0)
    _fill(buf, total)
    assert len(buf) == max_size
    assert buf.total_added == total
    kept = list(range(total - max_size, total))
    # Logical order: offset 0 is the oldest surviving transition, offset size-1 the newest.
    batch = buf.window(np.arange(max_size), n=1)
    assert batch.obs[:, 0].tolist() == [float(i) for i in kept]
    assert batch.rewards[:, 0].tolist() == [float(i) for i in kept]
    # Random samples only ever come from the last max_size transitions.
    sampled = buf.sample(512).obs[:, 0].numpy()
    assert set(sampled.astype(int)) <= set(kept)
    assert len(set(sampled.astype(int))) > max_size // 2  # and not just one slot
    # n-step windows run across the physical end of the ring in logical order.
    win = buf.window(np.array([0]), n=3)
    assert win.rewards[0].tolist() == [float(kept[0]), float(kept[1]), float(kept[2])]
    assert torch.equal(win.next_obs[0], torch.from_numpy(_obs(kept[2]) + 0.5))


def test_wraparound_state_dict_is_in_logical_order():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=5)
    _fill(buf, 12)
    state = buf.state_dict()
    assert state["obs"][:, 0].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]


# --- shapes and dtypes -----------------------------------------------------------------------

def test_sample_shapes_and_dtypes_continuous():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=32, seed=1, store_behaviour=True)
    _fill(buf, 20)
    b = buf.sample(7, 1)
    assert b.obs.shape == (7, 3) and b.obs.dtype == torch.float32
    assert b.next_obs.shape == (7, 3) and b.next_obs.dtype == torch.float32
    assert b.actions.shape == (7, 2) and b.actions.dtype == torch.float32
    assert b.rewards.shape == (7, 1) and b.rewards.dtype == torch.float32
    assert b.terminated.shape == (7,) and b.terminated.dtype == torch.float32
    assert b.n_steps.shape == (7,) and b.n_steps.dtype == torch.int64
    assert b.mid_obs is None
    assert b.behaviour is not None and b.behaviour.shape == (7, 2)
    assert b.discounted_reward(GAMMA).shape == (7,)
    assert b.bootstrap_discount(GAMMA).shape == (7,)
    # obs / action / reward of a sampled row belong to the same transition
    assert torch.equal(b.obs[:, 0], b.actions[:, 0]) and torch.equal(b.obs[:, 0], b.rewards[:, 0])


def test_sample_shapes_and_dtypes_discrete():
    buf = ReplayBuffer((3,), (), np.int64, max_size=32, seed=1)
    _fill(buf, 20, act_dim=None)
    b = buf.sample(5, 1)
    assert b.obs.shape == (5, 3)
    assert b.actions.shape == (5,) and b.actions.dtype == torch.int64
    assert b.rewards.shape == (5, 1)
    assert b.behaviour is None
    nb = buf.sample(5, 3)
    assert nb.rewards.shape == (5, 3) and nb.step_mask.shape == (5, 3)
    assert nb.mid_obs.shape == (5, 2, 3)


def test_behaviour_action_is_stored_apart_from_the_noisy_action():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=4, store_behaviour=True)
    buf.add(_obs(0), np.array([0.5, -0.5], np.float32), 0.0, _obs(1), False, False,
            behaviour=np.array([0.25, -0.25], np.float32))
    b = buf.window(np.array([0]))
    assert b.actions[0].tolist() == [0.5, -0.5]
    assert b.behaviour[0].tolist() == [0.25, -0.25]


def test_sampling_empty_buffer_raises():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=4)
    with pytest.raises(ValueError):
        buf.sample(2)


# --- state_dict round trip -------------------------------------------------------------------

def test_state_dict_round_trip_restores_data_and_sampling_rng():
    buf = ReplayBuffer((3,), (2,), np.float32, max_size=8, seed=3, store_behaviour=True)
    _fill(buf, 13, terminated_at={9}, truncated_at={11})
    buf.sample(4)  # advance the RNG so the round trip has to carry its state
    state = buf.state_dict()
    other = ReplayBuffer((3,), (2,), np.float32, max_size=8, seed=999, store_behaviour=True)
    other.load_state_dict(state)
    assert len(other) == len(buf) and other.total_added == buf.total_added and other.capacity == buf.capacity
    everything = np.arange(len(buf))
    a, b = buf.window(everything, n=2), other.window(everything, n=2)
    for field in ("obs", "actions", "rewards", "next_obs", "terminated", "n_steps", "behaviour"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    s1, s2 = buf.sample(16), other.sample(16)
    assert torch.equal(s1.obs, s2.obs)
    # Both keep working identically after more data arrives (the write head was restored).
    _fill(buf, 3, start=13)
    _fill(other, 3, start=13)
    assert torch.equal(buf.window(everything).obs, other.window(everything).obs)
    assert other.window(np.array([len(other) - 1])).obs[0, 0].item() == 15.0


def test_mid_obs_only_when_asked():
    """TD3 and DQN never read a window's intermediate states: sampling skips gathering them."""
    buf = ReplayBuffer((2,), (1,), np.float32, 20, seed=0)
    for t in range(10):
        buf.add(np.full(2, t), np.zeros(1), 1.0, np.full(2, t + 1), False, False)
    with_mid = buf.window(np.array([0, 3]), 3)
    without = buf.window(np.array([0, 3]), 3, mid_obs=False)
    assert without.mid_obs is None and with_mid.mid_obs.shape == (2, 2, 2)
    assert torch.equal(with_mid.rewards, without.rewards) and torch.equal(with_mid.next_obs, without.next_obs)
    from sparserl.algos import SAC, TD3
    assert SAC.uses_mid_obs and not TD3.uses_mid_obs
