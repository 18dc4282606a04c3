"""benchmarks/anchors.py reads each published source at the asked step and our dense cells once
per seed, on crafted files laid out like the real repositories."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def anchors():
    spec = importlib.util.spec_from_file_location("anchors", ROOT / "benchmarks" / "anchors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dense_cell(run_dir: Path, algo: str, env: str, seed: int, returns: dict[int, float],
                label: str = "dense") -> None:
    cell = run_dir / algo / f"{env}-v5" / label / f"seed{seed}"
    cell.mkdir(parents=True)
    lines = ["step,eval_return,eval_return_std"] + [f"{s},{r},1.0" for s, r in returns.items()]
    (cell / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_each_source_is_read_at_the_step(anchors, tmp_path):
    rng = np.random.default_rng(0)
    paper = tmp_path / "TD3" / "learning_curves" / "Hopper"
    paper.mkdir(parents=True)
    curves = rng.normal(size=(3, 30))
    for i, c in enumerate(curves):
        np.save(paper / f"TD3_Hopper-v1_{i}.npy", c)
    zoo = tmp_path / "zoo" / "sac" / "Hopper-v3_1"
    zoo.mkdir(parents=True)
    results = rng.normal(size=(5, 20))
    np.savez(zoo / "evaluations.npz", timesteps=np.arange(1, 6) * 10_000, results=results,
             ep_lengths=np.ones((5, 20)))
    ts = tmp_path / "tianshou" / "examples" / "mujoco" / "benchmark" / "Hopper-v3" / "sac"
    ts.mkdir(parents=True)
    seeds = rng.normal(size=(4, 3))
    rows = ["env_step,rew,rew:shaded," + ",".join(f"rew:seed_{i}_x/test_rew.csv" for i in range(3))]
    rows += [f"{k * 5000},{s.mean()},{s.std()}," + ",".join(map(str, s)) for k, s in enumerate(seeds)]
    (ts / "test_rew_10seeds.csv").write_text("\n".join(rows) + "\n")

    paper_reading = anchors.td3_paper_at(paper.parent, "td3", "Hopper", 20_000)
    np.testing.assert_array_equal(paper_reading.at_step, curves[:, 4])
    np.testing.assert_array_equal(paper_reading.best, curves[:, :5].max(axis=1))  # up to the step only
    assert anchors.td3_paper_at(paper.parent, "sac", "Hopper", 20_000) is None  # TD3's own curves only
    zoo_reading = anchors.zoo_at(tmp_path / "zoo", "sac", "Hopper", 30_000)
    np.testing.assert_array_equal(zoo_reading.at_step, results[2])
    np.testing.assert_allclose(zoo_reading.best, [results[:3].mean(axis=1).max()])
    assert not zoo_reading.per_seed
    assert anchors.zoo_at(tmp_path / "zoo", "td3", "Hopper", 30_000) is None     # not published: no row
    # Tianshou's env_step starts after its 10k SAC warm-up: env step 20k is its row 10k
    ts_reading = anchors.tianshou_at(tmp_path / "tianshou", "sac", "Hopper", 20_000)
    np.testing.assert_allclose(ts_reading.at_step, seeds[2])
    np.testing.assert_allclose(ts_reading.best, seeds[:3].max(axis=0))
    with pytest.raises(SystemExit, match="env_step -5000"):   # before its warm-up ended: no row
        anchors.tianshou_at(tmp_path / "tianshou", "sac", "Hopper", 5_000)
    with pytest.raises(SystemExit, match="25000"):
        anchors.zoo_at(tmp_path / "zoo", "sac", "Hopper", 25_000)
    with pytest.raises(SystemExit, match="multiple of 5000"):
        anchors.td3_paper_at(paper.parent, "td3", "Hopper", 12_345)


def test_a_seed_copied_into_two_run_directories_counts_once(anchors, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _dense_cell(first, "td3", "Hopper", 0, {5000: 1.0, 10000: 2.0})
    _dense_cell(second, "td3", "Hopper", 0, {5000: 1.0, 10000: 2.0})     # the same cell, copied
    _dense_cell(second, "td3", "Hopper", 1, {5000: 6.0, 10000: 4.0, 15000: 8.0})
    _dense_cell(second, "sac", "Hopper", 0, {10000: 9.0})
    reading = anchors.ours_at([str(first), str(second)], "td3", "Hopper", 10_000)
    assert sorted(reading.at_step.tolist()) == [2.0, 4.0]
    assert sorted(reading.best.tolist()) == [2.0, 6.0]       # best up to 10k: 15k's 8.0 is later
    assert anchors.ours_at([str(second)], "sac", "Hopper", 10_000).at_step.tolist() == [9.0]
    _dense_cell(second, "sac", "Hopper", 1, {10000: 7.0}, label="dense-tuned")   # another label: only on request
    assert anchors.ours_at([str(second)], "sac", "Hopper", 10_000, "dense-tuned").at_step.tolist() == [7.0]


def test_two_different_runs_of_one_seed_are_an_error(anchors, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _dense_cell(first, "td3", "Hopper", 0, {10000: 2.0})
    _dense_cell(second, "td3", "Hopper", 0, {10000: 3.0})
    (first / "td3" / "Hopper-v5" / "dense" / "seed0" / "config.yaml").write_text("out: a\nlr: 0.001\n")
    (second / "td3" / "Hopper-v5" / "dense" / "seed0" / "config.yaml").write_text("out: b\nlr: 0.0003\n")
    with pytest.raises(SystemExit, match="different config"):
        anchors.ours_at([str(first), str(second)], "td3", "Hopper", 10_000)
    (second / "td3" / "Hopper-v5" / "dense" / "seed0" / "config.yaml").write_text("out: b\nlr: 0.001\n")
    assert anchors.ours_at([str(first), str(second)], "td3", "Hopper", 10_000).at_step.tolist() == [2.0]


def test_table_names_source_and_settings(anchors, tmp_path, capsys):
    zoo = tmp_path / "zoo" / "sac" / "Hopper-v3_1"
    zoo.mkdir(parents=True)
    np.savez(zoo / "evaluations.npz", timesteps=np.array([10_000]), results=np.full((1, 20), 7.0),
             ep_lengths=np.ones((1, 20)))
    _dense_cell(tmp_path / "runs", "sac", "Hopper", 0, {10000: 5.0})
    assert anchors.main(["--zoo", str(tmp_path / "zoo"), "--step", "10000", "--runs", str(tmp_path / "runs"),
                         "--algo", "sac", "--env", "Hopper"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| SAC | Hopper | sb3-zoo"))
    assert row.split(" | ")[3:] == ["7 ± 0 (1 run, 20 episodes)", "5 ± 0 (median 5, n = 1: 5)", "7", "5 |"]
    assert anchors.SETTINGS["sb3-zoo"] in out
    with pytest.raises(SystemExit):
        anchors.main(["--step", "10000"])   # no source named


def test_dqn_rows_read_the_zoo_folder_of_each_env(anchors, tmp_path, capsys):
    for folder, value in (("CartPole-v1_1", 500.0), ("LunarLander-v2_1", 120.0)):
        path = tmp_path / "zoo" / "dqn" / folder
        path.mkdir(parents=True)
        np.savez(path / "evaluations.npz", timesteps=np.array([10_000, 20_000]),
                 results=np.array([np.full(10, value), np.full(10, value / 2)]), ep_lengths=np.ones((2, 10)))
    assert anchors.main(["--zoo", str(tmp_path / "zoo"), "--step", "20000", "--algo", "dqn"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| DQN")]
    assert [(r[1], r[3], r[5]) for r in rows] == [("CartPole", "250 ± 0 (1 run, 10 episodes)", "500"),
                                                   ("LunarLander", "60 ± 0 (1 run, 10 episodes)", "120")]
