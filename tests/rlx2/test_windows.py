"""n-step windows never cross an episode boundary or the write head: checked against a
plain-Python model of the FIFO through wrap-around, capacity changes and evictions.

Every transition is tagged with its insertion index i: obs = i, next_obs = i + 0.5,
reward = i, so a window's content tells exactly which transitions it used.
"""
import numpy as np
import pytest

from sparserl.buffers import ReplayBuffer


class Model:
    """What the buffer should hold: tags in logical order, and which tags ended an episode."""

    def __init__(self, capacity):
        self.stored, self.ended, self.capacity = [], set(), capacity

    def add(self, tag, ended):
        self.stored.append(tag)
        if ended:
            self.ended.add(tag)
        if len(self.stored) > self.capacity:
            self.stored.pop(0)

    def evict(self, k):
        del self.stored[:k]

    def set_capacity(self, c):
        self.capacity = c
        if len(self.stored) > c:
            self.evict(len(self.stored) - c)

    def window(self, j, n):
        """Tags of the window at logical offset j: extend while the previous step did not end
        its episode and the next one exists (is before the write head)."""
        tags = [self.stored[j]]
        while len(tags) < n and tags[-1] not in self.ended and j + len(tags) < len(self.stored):
            tags.append(self.stored[j + len(tags)])
        return tags


def check_all_windows(buf: ReplayBuffer, model: Model, n: int):
    assert buf.size == len(model.stored)
    if buf.size == 0:
        return
    offsets = np.arange(buf.size)
    batch = buf.window(offsets, n)
    assert batch.obs[:, 0].tolist() == [float(t) for t in model.stored]
    for j in offsets:
        tags = model.window(int(j), n)
        m = len(tags)
        assert int(batch.n_steps[j]) == m
        assert batch.rewards[j, :m].tolist() == [float(t) for t in tags]
        assert batch.rewards[j, m:].abs().sum() == 0 and batch.step_mask[j].tolist() == [1.0] * m + [0.0] * (n - m)
        if n > 1:
            assert batch.mid_obs[j, : m - 1, 0].tolist() == [float(t) for t in tags[1:]]
        assert float(batch.next_obs[j, 0]) == tags[-1] + 0.5
        # consecutive insertion indices = same episode, no jump over the write head
        assert tags == list(range(tags[0], tags[0] + m))
        # no step but the last ended its episode
        assert not any(t in model.ended for t in tags[:-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_windows_match_model_through_wraparound_and_eviction(seed):
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer((1,), (1,), np.float32, max_size=23, seed=seed)
    model = Model(23)
    tag = 0
    for _round in range(40):
        for _ in range(int(rng.integers(1, 15))):
            term, trunc = bool(rng.random() < 0.12), bool(rng.random() < 0.08)
            buf.add([float(tag)], [0.0], float(tag), [tag + 0.5], term, trunc)
            model.add(tag, term or trunc)
            tag += 1
        op = rng.integers(0, 3)
        if op == 0:
            k = int(rng.integers(0, 8))
            assert buf.evict_oldest(k) == min(k, len(model.stored))
            model.evict(k)
        elif op == 1:
            c = int(rng.integers(1, 24))
            buf.set_capacity(c)
            model.set_capacity(c)
        for n in (1, 2, 3, 5):
            check_all_windows(buf, model, n)
    assert tag > 23 * 5  # the ring wrapped around many times


def test_write_head_right_after_a_wrap():
    # max_size 4, 6 adds of one long episode: the ring holds tags 2..5 (physical start 2);
    # the newest window must stop at the write head instead of reading the overwritten tag 2.
    buf = ReplayBuffer((1,), (1,), np.float32, max_size=4)
    for t in range(6):
        buf.add([float(t)], [0.0], float(t), [t + 0.5], False, False)
    batch = buf.window(np.array([2, 3]), n=3)
    # offset 2 = tag 4: tags 4, 5 then the head -> m = 2, rewards 4 + 5
    assert batch.rewards.tolist() == [[4, 5, 0], [5, 0, 0]]
    assert batch.next_obs[:, 0].tolist() == [5.5, 5.5] and batch.terminated.tolist() == [0, 0]
