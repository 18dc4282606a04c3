"""`--method rlx2` end to end on a tiny budget, and the ablation switches."""
import csv
import json

import gymnasium as gym
import pytest

from sparserl.algos import make_agent
from sparserl.cli import build_parser, config_from_args, main
from sparserl.methods import attach_method

TINY = ("--env Pendulum-v1 --hidden 64 64 --steps 600 --learning-starts 200 --buffer-min 300 "
        "--buffer-check-every 200 --topology-delta 100 --batch-size 32 --eval-every 200 --eval-episodes 1 "
        "--checkpoint-every 0 --no-progress --no-tensorboard --actor-sparsity 0.9 --critic-sparsity 0.8")


# the paper's L2 distance with the capping to-threshold rule (not the default): its numbers are
# predictable on Pendulum's random warm-up data
PAPER_L2 = "--policy-distance l2 --buffer-shrink to-threshold --buffer-threshold 0.2"


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_rlx2_run_writes_its_fields(tmp_path, algo, capsys):
    out = tmp_path / algo
    argv = ["train", "--algo", algo, "--method", "rlx2", "--out", str(out), *TINY.split(), *PAPER_L2.split()]
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "rlx2" and s["updates"] == 400          # env steps 200..599
    assert s["sparsity"]["actor"] == pytest.approx(0.9, abs=0.01)
    assert s["sparsity"]["critic"] == pytest.approx(0.8, abs=0.01)
    f = s["flops"]
    assert 0 < f["train_total"] < f["train_dense_total"]
    assert 0 < f["infer_per_action"] < f["infer_dense_per_action"]
    # buffer ring = min(1e6, steps) = 600 slots; capacity moves within [min 300, max 600]
    assert 300 <= s["buffer"]["capacity_final"] <= 600
    assert 300 <= s["buffer"]["size_final"] <= s["buffer"]["capacity_final"]
    assert s["buffer"]["policy_distance_last"] >= 0
    # delay = 10% of 400 updates = 40 < 400: the run ends on n = 3
    assert s["nstep_final"] == 3
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [200, 400, 600]
    assert {"policy_distance", "buffer_capacity", "nstep"} <= set(rows[0])
    for r in rows:
        assert 300 <= int(r["buffer_capacity"]) <= 600 and float(r["policy_distance"]) >= 0
    # Checks at env steps 200, 400, 600 (PAPER_L2: L2, threshold 0.2, to-threshold; Pendulum: 1-D action, bound 2, so the
    # per-sample distance is |a - a_behaviour| / 2):
    #  200: 200 stored (all uniform-random warm-up actions) <= min 300 -> no eviction, cap 600.
    #       The warm-up part is far: E|U - c| >= 0.5 for U ~ U[-1, 1] and any policy output c.
    #  400: all 400 stored in the 2048 window, half warm-up -> distance >= 0.5 * 0.5 = 0.25 > 0.2,
    #       evict min(2048, 400 - 300) = 100 -> size = capacity = 300 (= min).
    #  600: the FIFO kept size 300; whatever the distance, the size stays 300 (at min, or grown
    #       capacity with no more env steps to fill it).
    dist = [float(r["policy_distance"]) for r in rows]
    assert dist[0] > 0.2 and dist[1] > 0.2
    assert [int(r["buffer_capacity"]) for r in rows[:2]] == [600, 300]
    assert int(rows[2]["buffer_capacity"]) in (300, 600)
    assert s["buffer"]["size_final"] == 300
    assert [int(r["nstep"]) for r in rows] == [1, 3, 3]  # 0 updates at step 200, 200 / 400 later


def test_default_reference_buffer_logs_every_check_and_never_caps(tmp_path):
    """Defaults (= --preset paper): mse distance, threshold 0.2, the reference's shrink rule.
    Checks every 100 env steps from the end of warm-up (200, 300, ..., 600): each one is a
    TensorBoard point; metrics.csv (one row per evaluation, every 200 steps) carries the
    latest check's record.  The reference never caps: capacity stays at max (600)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "ref"
    argv = ["train", "--algo", "td3", "--method", "rlx2", "--out", str(out), *TINY.split(),
            "--buffer-check-every", "100", "--tensorboard"]
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["buffer"]["threshold"] == 0.2 and s["buffer"]["capacity_final"] == 600
    events = EventAccumulator(str(out / "tb")).Reload()
    for tag in ("buffer/policy_distance", "buffer/buffer_size", "buffer/buffer_capacity", "buffer/evicted"):
        assert [e.step for e in events.Scalars(tag)] == [200, 300, 400, 500, 600], tag
    assert {e.value for e in events.Scalars("buffer/buffer_capacity")} == {600.0}
    sizes = [int(e.value) for e in events.Scalars("buffer/buffer_size")]
    evicted = [int(e.value) for e in events.Scalars("buffer/evicted")]
    dist = [e.value for e in events.Scalars("buffer/policy_distance")]
    size = 200                               # stored when the first check runs
    for k, (d, ev, got) in enumerate(zip(dist, evicted, sizes)):  # the reference rule, check by check
        expect_ev = int(0.1 * size) if d > 0.2 and size > 300 else 0
        assert ev == expect_ev and got == size - ev, k
        size = min(got + 100, 600)           # 100 more env steps before the next check, max 600
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [200, 400, 600]
    assert [int(r["buffer_size"]) for r in rows] == sizes[::2] and {r["buffer_capacity"] for r in rows} == {"600"}


def cfg_of(extra: str):
    return config_from_args(build_parser().parse_args(
        ["train", "--algo", "td3", "--method", "rlx2", *TINY.split(), *extra.split()]))


def updater_names(cfg):
    env = gym.make(cfg.env)
    agent = make_agent(cfg, env.observation_space, env.action_space)
    attach_method(agent, cfg, 400)
    return {name: ps[0].sparse.updater.name for name, ps in agent.plugins.items()}


def test_ablation_switches_parse_one_at_a_time():
    full = cfg_of("")
    assert (full.nstep, full.dynamic_buffer, full.grow) == (3, True, "gradient")  # resolved from the method
    assert updater_names(full) == {"actor": "rigl", "critic": "rigl"}
    one = cfg_of("--nstep 1")
    assert (one.nstep, one.dynamic_buffer) == (1, True)
    nobuf = cfg_of("--no-dynamic-buffer")
    assert (nobuf.nstep, nobuf.dynamic_buffer) == (3, False)
    rand = cfg_of("--grow random")
    assert (rand.nstep, rand.dynamic_buffer, rand.grow) == (3, True, "random")
    assert updater_names(rand) == {"actor": "set", "critic": "set"}


def test_ablated_run_has_no_buffer_block_and_one_step(tmp_path):
    out = tmp_path / "ablated"
    argv = ["train", "--algo", "td3", "--method", "rlx2", "--out", str(out), *TINY.split(),
            "--steps", "300", "--nstep", "1", "--no-dynamic-buffer", "--grow", "random"]
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text())
    assert "buffer" not in s and s["nstep_final"] == 1 and s["updates"] == 100
    assert s["sparsity"]["critic"] == pytest.approx(0.8, abs=0.01)
