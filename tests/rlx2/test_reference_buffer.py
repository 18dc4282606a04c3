"""The dynamic buffer as `--preset paper` configures it: the RLx2 reference's rule, step by step.

The reference (RLx2_TD3/train.py and DST/utils.py, SPEC §1.3), every 10,000 env steps:
    distance = mean over the oldest 2,048 samples and the action dims of delta^2 / 2
               (delta = (current policy action - stored behaviour mean) / action bound)
    if distance > 0.2 and size > min_size:  drop the oldest int(0.1 * size)
and nothing else: the capacity stays max_size (new data keeps arriving), and one drop may take
the size below min_size.

Crafted buffer: 1-d observations holding the insertion index ("tag"), Hopper's 3-d actions,
stored behaviour means 0.  The stub policy returns `1.0 * bound` in every dimension for
tags < K ("far"), 0 otherwise, so a window with f far samples out of 2,048 has
distance = f / 2048 * 1.0^2 / 2.
"""
import math

import numpy as np
import pytest

from sparserl.buffers import DynamicCapacity, ReplayBuffer, calibrated_threshold
from sparserl.cli import build_parser, config_from_args

BOUND = np.array([1.0, 2.0, 0.5], dtype=np.float32)  # per-dim action bound (scale), 3-d like Hopper


def far_before(k, delta=1.0):
    def policy(obs):
        return np.where(obs[:, :1] < k, delta * BOUND, 0.0).astype(np.float32)
    return policy


def add(buf, tag):
    buf.add([float(tag)], np.zeros(3, np.float32), 0.0, [tag + 0.5], False, False,
            behaviour=np.zeros(3, np.float32))


def oldest_tag(buf):
    return int(buf.obs[buf.physical(np.array([0]))][0, 0])


def paper_dynamic_capacity(buf, **flags):
    """A DynamicCapacity configured by `--preset paper` (TD3 on Hopper, rlx2), the way the
    trainer builds it, with the min / max sizes scaled down to a test-sized buffer."""
    extra = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items())
    cfg = config_from_args(build_parser().parse_args(
        f"train --algo td3 --env Hopper-v5 --method rlx2 --preset paper --steps 100000 {extra}".split()))
    assert cfg.dynamic_buffer and cfg.buffer_check_every == 10_000
    return DynamicCapacity(buf, cfg.buffer_min, cfg.buffer_max, cfg.buffer_threshold, cfg.buffer_check_every,
                           cfg.policy_distance, cfg.buffer_shrink)


def test_paper_preset_follows_the_reference_rule_step_by_step():
    buf = ReplayBuffer((1,), (3,), np.float32, max_size=10_000, seed=0, store_behaviour=True)
    dyn = paper_dynamic_capacity(buf, buffer_min=5_000, buffer_max=10_000)
    assert (dyn.metric, dyn.shrink, dyn.threshold, dyn.window) == ("mse", "reference", 0.2, 2048)
    for tag in range(6_000):
        add(buf, tag)
    far = far_before(math.inf)  # every stored sample far: distance 1.0^2 / 2 = 0.5 > 0.2

    def check(step, policy):
        rec = dyn.maybe_update(step, policy, BOUND)
        return rec["evicted"], buf.size, buf.capacity, oldest_tag(buf), rec

    assert dyn.maybe_update(15_000, far, BOUND) is None              # not a check step
    # (evicted, size, capacity, oldest tag) after each check, by hand from the rule:
    ev, size, cap, first, rec = check(10_000, far)                   # 6000 > 5000: drop int(600)
    assert (ev, size, cap, first) == (600, 5_400, 10_000, 600)
    assert rec["policy_distance"] == pytest.approx(0.5) and rec["buffer_size"] == 5_400
    assert rec["buffer_capacity"] == 10_000
    assert check(20_000, far)[:4] == (540, 4_860, 10_000, 1_140)     # 5400 > 5000: drop 540 -> below min
    ev, size, cap, first, rec = check(30_000, far)                   # 4860 <= 5000: no drop, still logged
    assert (ev, size, cap, first) == (0, 4_860, 10_000, 1_140) and rec["policy_distance"] == pytest.approx(0.5)
    for tag in range(6_000, 11_200):                                 # no cap: grows back to max 10,000
        add(buf, tag)
    assert (buf.size, oldest_tag(buf)) == (10_000, 1_200)            # FIFO at max: 11,200 - 10,000
    assert check(40_000, far)[:4] == (1_000, 9_000, 10_000, 2_200)
    # Only the oldest window counts: tags < 3,200 far -> 1,000 of 2,048 far in 2200..4247:
    # 1000/2048 * 0.5 = 0.244 > 0.2 -> drop int(900); then 3100..5147 holds 100 far -> 0.024.
    ev, size, cap, first, rec = check(50_000, far_before(3_200))
    assert (ev, size, cap, first) == (900, 8_100, 10_000, 3_100)
    assert rec["policy_distance"] == pytest.approx(1_000 / 2048 * 0.5, rel=1e-6)
    ev, size, cap, first, rec = check(60_000, far_before(3_200))
    assert (ev, size, cap, first) == (0, 8_100, 10_000, 3_100)
    assert rec["policy_distance"] == pytest.approx(100 / 2048 * 0.5, rel=1e-6)
    assert dyn.last_distance == rec["policy_distance"]


def test_fraction_mode_is_not_the_reference_it_caps():
    # the same first two checks under `fraction`: never below min, and the capacity follows
    buf = ReplayBuffer((1,), (3,), np.float32, max_size=10_000, seed=0, store_behaviour=True)
    dyn = paper_dynamic_capacity(buf, buffer_min=5_000, buffer_max=10_000, buffer_shrink="fraction")
    for tag in range(6_000):
        add(buf, tag)
    far = far_before(math.inf)
    dyn.maybe_update(10_000, far, BOUND)
    assert (buf.size, buf.capacity) == (5_400, 5_400)
    dyn.maybe_update(20_000, far, BOUND)
    assert (buf.size, buf.capacity) == (5_000, 5_000)       # capped at min, the reference gives 4,860 / 10,000
    for tag in range(6_000, 7_000):
        add(buf, tag)
    assert buf.size == 5_000                                 # a smaller FIFO, unlike the reference


@pytest.mark.parametrize("action_dim", [1, 3, 6])
def test_same_drift_triggers_under_both_metrics_at_the_documented_thresholds(action_dim):
    """mse = RMS(delta)^2 / 2 and L2 = RMS(delta) * sqrt(A) per sample, so the l2 threshold
    equivalent to the reference's mse 0.2 is sqrt(0.4 * A) (RMS delta = sqrt(0.4) ~ 0.632)."""
    bound = np.linspace(0.5, 3.0, action_dim).astype(np.float32)
    # an uneven drift direction (per-dim deltas differ), normalised to RMS 1
    shape = np.linspace(1.0, 2.0, action_dim) * np.where(np.arange(action_dim) % 2, -1.0, 1.0)
    shape = (shape / np.sqrt(np.mean(shape ** 2))).astype(np.float32)
    assert calibrated_threshold("mse", action_dim) == 0.2
    assert calibrated_threshold("l2", action_dim) == pytest.approx(math.sqrt(0.4 * action_dim))
    def check(rms, metric, threshold=None):  # threshold None: the calibrated default
        buf = ReplayBuffer((1,), (action_dim,), np.float32, max_size=3_000, seed=0, store_behaviour=True)
        for tag in range(3_000):
            buf.add([float(tag)], np.zeros(action_dim, np.float32), 0.0, [0.0], False, False,
                    behaviour=np.zeros(action_dim, np.float32))
        dyn = DynamicCapacity(buf, 1_000, 3_000, threshold, 10, metric, "reference")
        rec = dyn.maybe_update(10, lambda obs: np.tile(rms * shape * bound, (len(obs), 1)), bound)
        expected = rms ** 2 / 2 if metric == "mse" else rms * math.sqrt(action_dim)
        assert rec["policy_distance"] == pytest.approx(expected, rel=1e-5)
        return rec["evicted"] > 0

    above, below = math.sqrt(0.4) * 1.02, math.sqrt(0.4) * 0.98
    assert check(above, "mse") and check(above, "l2")
    assert not check(below, "mse") and not check(below, "l2")
    # the pairing SPEC §1.3 forbids, L2 with 0.2, already fires at a third of that drift
    assert check(math.sqrt(0.4) / 3, "l2", threshold=0.2) and not check(math.sqrt(0.4) / 3, "mse")


def test_threshold_flag_and_default():
    buf = ReplayBuffer((1,), (3,), np.float32, max_size=100, store_behaviour=True)
    sizes = dict(buffer_min=10, buffer_max=100)
    assert paper_dynamic_capacity(buf, **sizes).threshold == 0.2
    assert paper_dynamic_capacity(buf, **sizes, policy_distance="l2").threshold == pytest.approx(math.sqrt(1.2))
    assert paper_dynamic_capacity(buf, **sizes, policy_distance="l2", buffer_threshold=0.5).threshold == 0.5
