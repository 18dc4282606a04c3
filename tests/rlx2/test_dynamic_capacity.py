"""RLx2's dynamic-capacity buffer (SPEC §1.3) with a policy whose distance to the stored
behaviour actions is known exactly: the paper's L2 metric and the two capping shrink rules
(`to-threshold`, `fraction`), given explicitly; the reference rule (the default) and the
threshold calibration are in test_reference_buffer.py.

Action dim 2, action bound scale = (2, 4).  Stored behaviour actions are 0.  The stub
policy returns 0.5 * scale for "old" observations (obs tag < K) and 0 otherwise, so per
sample the scaled difference is (0.5, 0.5) for old data and (0, 0) for new data:
  l2  = ||(0.5, 0.5)|| = 0.5 * sqrt(2) ~= 0.7071 per old sample,
  mse = mean(0.5^2, 0.5^2) / 2 = 0.125 per old sample.
"""
import math

import numpy as np
import pytest

from sparserl.buffers import DynamicCapacity, ReplayBuffer

SCALE = np.array([2.0, 4.0], dtype=np.float32)
L2_FAR = 0.5 * math.sqrt(2)


def far_before(k):
    """Policy far (0.5 * scale) from the stored zeros for obs tags < k, equal to them after."""
    def policy(obs):
        return np.where(obs[:, :1] < k, 0.5 * SCALE, 0.0).astype(np.float32)
    return policy


def filled(count, max_size):
    buf = ReplayBuffer((1,), (2,), np.float32, max_size=max_size, seed=0, store_behaviour=True)
    for i in range(count):
        add(buf, i)
    return buf


def add(buf, i):
    # tag = insertion index; one long episode so n-step windows span many transitions
    buf.add([float(i)], [0.0, 0.0], 1.0, [i + 0.5], False, False, behaviour=np.zeros(2, np.float32))


def oldest_tag(buf):
    return int(buf.obs[buf.physical(np.array([0]))][0, 0])


def test_distance_metrics_have_the_known_values():
    buf = filled(100, 100)
    dyn = DynamicCapacity(buf, 10, 100, metric="l2", shrink="to-threshold")
    assert dyn.distance(far_before(10**9), SCALE) == pytest.approx(L2_FAR, rel=1e-6)
    assert dyn.distance(far_before(0), SCALE) == 0.0
    # half of the 100 samples far: mean L2 = 0.5 * 0.7071
    assert dyn.distance(far_before(50), SCALE) == pytest.approx(0.5 * L2_FAR, rel=1e-6)
    dyn_mse = DynamicCapacity(buf, 10, 100, metric="mse", shrink="to-threshold")
    assert dyn_mse.distance(far_before(10**9), SCALE) == pytest.approx(0.125)
    # per-dim scaled diff (0.3, 0.4): l2 = 0.5, mse = (0.09 + 0.16) / 2 / 2 = 0.0625
    policy = lambda obs: np.tile(np.array([0.3, 0.4], np.float32) * SCALE, (len(obs), 1))
    assert dyn.distance(policy, SCALE) == pytest.approx(0.5, rel=1e-6)
    assert dyn_mse.distance(policy, SCALE) == pytest.approx(0.0625, rel=1e-6)


def test_to_threshold_evicts_window_chunks_until_the_oldest_window_is_close():
    # 10,000 transitions, the oldest K = 5,000 far.  Window 2048 (the default):
    #   offset 0    : window all far -> 0.7071 > 0.2, evict 2048
    #   offset 2048 : all far         -> evict (total 4096)
    #   offset 4096 : 904 far of 2048 -> 904/2048 * 0.7071 = 0.312 > 0.2, evict (total 6144)
    #   offset 6144 : none far        -> 0 <= 0.2, stop.
    buf = filled(10_000, 12_000)
    dyn = DynamicCapacity(buf, 1_000, 10_000, threshold=0.2, check_every=100, metric="l2", shrink="to-threshold")
    assert buf.capacity == 10_000
    assert dyn.maybe_update(150, far_before(5_000), SCALE) is None  # not a check step
    rec = dyn.maybe_update(200, far_before(5_000), SCALE)
    assert rec["policy_distance"] == pytest.approx(L2_FAR, rel=1e-6)
    assert rec["evicted"] == 6_144 and buf.size == 10_000 - 6_144 == 3_856
    assert buf.capacity == 3_856 and oldest_tag(buf) == 6_144
    assert dyn.distance(far_before(5_000), SCALE) <= 0.2
    # the smaller buffer works as a FIFO: new data pushes out old, size stays at capacity
    for i in range(10_000, 10_100):
        add(buf, i)
    assert buf.size == 3_856 and oldest_tag(buf) == 6_244
    # policy now close to everything stored: capacity grows back to max and refills
    rec = dyn.maybe_update(300, far_before(0), SCALE)
    assert rec["evicted"] == 0 and buf.capacity == 10_000
    for i in range(10_100, 20_000):
        add(buf, i)
    assert buf.size == 10_000 and oldest_tag(buf) == 10_000  # never above max


def test_to_threshold_stops_at_min_size():
    # 10,000 stored, the oldest 9,500 far, min 1,000:
    #   evictions of 2048 at offsets 0, 2048, 4096, 6144 (each oldest window all far) -> size 1808
    #   window = the last 1808: 1308 far -> 1308/1808 * 0.7071 = 0.51 > 0.2,
    #   evict min(2048, 1808 - 1000) = 808 -> size 1000 = min: stop although still far.
    buf = filled(10_000, 10_000)
    dyn = DynamicCapacity(buf, 1_000, 10_000, threshold=0.2, check_every=100, metric="l2", shrink="to-threshold")
    rec = dyn.maybe_update(100, far_before(9_500), SCALE)
    assert rec["evicted"] == 9_000 and buf.size == 1_000 and buf.capacity == 1_000
    assert oldest_tag(buf) == 9_000
    # still far, at min: nothing more is evicted, capacity never below min
    rec = dyn.maybe_update(200, far_before(10**9), SCALE)
    assert rec["evicted"] == 0 and buf.size == 1_000 and buf.capacity == 1_000


def test_fraction_rule_evicts_ten_percent_per_check():
    buf = filled(10_000, 10_000)
    dyn = DynamicCapacity(buf, 1_000, 10_000, threshold=0.2, check_every=100, shrink="fraction", metric="l2")
    far = far_before(10**9)
    rec = dyn.maybe_update(100, far, SCALE)                 # int(0.1 * 10000) = 1000
    assert rec["evicted"] == 1_000 and buf.size == buf.capacity == 9_000 and oldest_tag(buf) == 1_000
    rec = dyn.maybe_update(200, far, SCALE)                 # int(0.1 * 9000) = 900
    assert rec["evicted"] == 900 and buf.size == buf.capacity == 8_100 and oldest_tag(buf) == 1_900
    # close to min: 10% of 1,050 would be 105 but only 50 may go
    small = filled(1_050, 2_000)
    dyn2 = DynamicCapacity(small, 1_000, 2_000, threshold=0.2, check_every=1, shrink="fraction", metric="l2")
    assert dyn2.maybe_update(7, far, SCALE)["evicted"] == 50 and small.size == small.capacity == 1_000


def test_metric_changes_the_decision():
    # all stored data far: l2 = 0.7071 > 0.2 shrinks, mse = 0.125 <= 0.2 keeps everything
    for metric, expect_evicted in (("l2", True), ("mse", False)):
        buf = filled(5_000, 5_000)
        dyn = DynamicCapacity(buf, 1_000, 5_000, threshold=0.2, check_every=10, metric=metric, shrink="to-threshold")
        rec = dyn.maybe_update(10, far_before(10**9), SCALE)
        assert (rec["evicted"] > 0) == expect_evicted, metric
        assert 1_000 <= buf.capacity <= 5_000


def test_capacity_bounded_by_max_below_the_physical_ring():
    buf = filled(0, 12_000)
    DynamicCapacity(buf, 100, 3_000)
    for i in range(5_000):
        add(buf, i)
    assert buf.size == 3_000 and oldest_tag(buf) == 2_000


def test_bad_bounds_are_rejected():
    buf = filled(10, 100)
    with pytest.raises(ValueError):
        DynamicCapacity(buf, 50, 10)
    with pytest.raises(ValueError):
        DynamicCapacity(buf, 10, 200)
    with pytest.raises(ValueError):
        DynamicCapacity(buf, 10, 100, metric="l1")
    with pytest.raises(ValueError, match="reference, fraction, to-threshold"):
        DynamicCapacity(buf, 10, 100, shrink="half")


@pytest.mark.parametrize("shrink", ["to-threshold", "fraction"])
def test_sampling_never_returns_evicted_data(shrink):
    buf = filled(6_000, 6_000)
    dyn = DynamicCapacity(buf, 500, 6_000, threshold=0.2, check_every=1, shrink=shrink, metric="l2")
    dyn.maybe_update(1, far_before(3_000), SCALE)
    first = oldest_tag(buf)
    assert first > 0  # something was evicted
    # to-threshold: offset 0 window all far -> evict; offset 2048 window 952/2048 far ->
    # 0.33 > 0.2 -> evict; offset 4096 none far -> stop: 4096 evicted.  fraction: 10% of 6000.
    assert first == (4_096 if shrink == "to-threshold" else 600)
    for i in range(6_000, 6_300):  # keep writing (wraps the ring) and sampling
        add(buf, i)
    newest = 6_299
    for n in (1, 3):
        batch = buf.sample(4_096, n)
        tags = batch.obs[:, 0].numpy()
        assert tags.min() >= first + 300 and tags.max() <= newest  # 300 more pushed out by the FIFO
        valid_mid = batch.mid_obs[:, :, 0][batch.step_mask[:, 1:] > 0] if n > 1 else batch.obs[:, 0]
        assert valid_mid.min() >= first + 300 and valid_mid.max() <= newest
        assert batch.next_obs[:, 0].min() >= first + 300.5
        assert (batch.behaviour == 0).all()


def test_shrunk_buffer_survives_a_checkpoint_roundtrip():
    # what resume does: build a fresh ring + DynamicCapacity (capacity = max), then load state
    buf = filled(6_000, 6_000)
    dyn = DynamicCapacity(buf, 500, 6_000, threshold=0.2, check_every=1, metric="l2", shrink="to-threshold")
    dyn.maybe_update(1, far_before(3_000), SCALE)          # evicts 4096 (see the test above)
    fresh = filled(0, 6_000)
    dyn2 = DynamicCapacity(fresh, 500, 6_000, threshold=0.2, check_every=1, metric="l2", shrink="to-threshold")
    fresh.load_state_dict(buf.state_dict())
    dyn2.load_state_dict(dyn.state_dict())
    assert (fresh.size, fresh.capacity, oldest_tag(fresh)) == (1_904, 1_904, 4_096)
    assert dyn2.last_distance == pytest.approx(L2_FAR, rel=1e-6)
    a, b = buf.window(np.arange(1_904), 3), fresh.window(np.arange(1_904), 3)
    assert torch_equal(a.obs, b.obs) and torch_equal(a.rewards, b.rewards) and torch_equal(a.next_obs, b.next_obs)
    add(fresh, 6_000)                                      # FIFO at the restored capacity
    assert fresh.size == 1_904 and oldest_tag(fresh) == 4_097


def torch_equal(x, y):
    return bool((x == y).all())
