"""highway-env (optional extra `driving`): lazy registration, the flattened Kinematics
observation, one short DQN run on it, and the example's PNG strip."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparserl import envs
from sparserl.envs import make_env
from sparserl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
needs_highway = pytest.mark.skipif(importlib.util.find_spec("highway_env") is None,
                                   reason="highway-env not installed (pip install 'sparserl[driving]')")
FLAT_ID = "sparserl-test/HighwayFastFlat-v0"


def test_missing_lazy_package_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setattr(envs, "LAZY_ENV_MODULES", {"nosuchfamily": ("no_such_module_xyz", "pip install it")})
    with pytest.raises(UserError, match="no_such_module_xyz"):
        make_env("nosuchfamily-v0")


@needs_highway
def test_make_env_imports_highway_env_on_first_use():
    # a fresh interpreter: nothing has imported highway_env, so gym.make alone does not know the id
    code = ("import sys, gymnasium as gym\n"
            "from sparserl.envs import make_env\n"
            "assert 'highway-fast-v0' not in gym.registry\n"
            "env = make_env('highway-fast-v0')\n"
            "print('highway_env' in sys.modules, env.observation_space.shape)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "True (25,)"  # Kinematics 5 x 5, flattened for the MLPs


def _flat_highway(**kwargs):
    import gymnasium as gym
    return gym.wrappers.FlattenObservation(make_env("highway-fast-v0"))


@pytest.fixture()
def flat_highway_id():
    import gymnasium as gym
    if FLAT_ID not in gym.registry:
        gym.register(FLAT_ID, entry_point=_flat_highway)
    return FLAT_ID


@needs_highway
def test_flattened_kinematics_observation(flat_highway_id):
    from sparserl.envs import original_observation_space
    raw = make_env("highway-fast-v0")  # make_env flattens any Box observation
    assert raw.unwrapped.config["observation"]["type"] == "Kinematics"
    rows, features = original_observation_space(raw).shape  # vehicles x (presence, x, y, vx, vy)
    flat = make_env(flat_highway_id)
    obs, _ = flat.reset(seed=0)
    assert flat.observation_space.shape == obs.shape == (rows * features,)
    raw_obs, _ = raw.unwrapped.reset(seed=0)
    np.testing.assert_array_equal(obs, raw_obs.reshape(-1))
    _, _, _, _, info = flat.step(flat.action_space.sample())
    assert "crashed" in info  # what the collision rate counts


@needs_highway
def test_short_structured_dqn_run_on_highway(tmp_path, flat_highway_id):
    from sparserl.config import TrainConfig, resolve
    from sparserl.trainer import Trainer

    cfg = resolve(TrainConfig(algo="dqn", env="highway-fast-v0", method="structured", steps=30, learning_starts=10,
                              batch_size=8, train_freq=1, hidden=[16, 16], eval_every=0, eval_episodes=1,
                              checkpoint_every=0, progress=False, tensorboard=False, out=str(tmp_path),
                              prune_every=5, prune_start=0.1, prune_end=0.9, min_width=2))
    summary = Trainer(cfg).train()
    assert summary["updates"] == 20
    assert np.isfinite(summary["final_eval_return"])
    assert summary["architecture"]["q"] != [16, 16]  # pruned while driving


@needs_highway
def test_example_writes_a_png_strip(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("highway_frames", ROOT / "examples" / "highway_frames.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "road.png"
    assert module.main(["--episodes", "1", "--frames", "2", "--every", "1", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "collision rate" in capsys.readouterr().out


class _CrashEveryOtherEpisode:
    """A stand-in env: 3-step episodes, reward 1 a step; odd-numbered episodes end in a crash."""

    def __init__(self, reports_crashes: bool = True, crashes: bool = True):
        import gymnasium as gym
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.reports, self.crashes, self.episode, self.t = reports_crashes, crashes, -1, 0

    def reset(self, seed=None):
        self.episode, self.t = self.episode + 1, 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        crashed = self.crashes and self.episode % 2 == 1 and self.t == 2
        info = {"crashed": crashed} if self.reports else {}
        return np.zeros(2, np.float32), 1.0, crashed, self.t >= 3, info


class _ZeroPolicy:
    def act(self, obs):
        return 0


def test_evaluate_counts_episodes_that_crashed():
    from sparserl.trainer import evaluate
    result = evaluate(_ZeroPolicy(), _CrashEveryOtherEpisode(), episodes=4)
    mean, std = result  # still unpacks like the (mean, std) pair
    assert result.collision_rate == 2 / 4  # episodes 1 and 3 crash
    assert (mean, std) == (result.mean, result.std) == (np.mean([3, 2, 3, 2]), np.std([3, 2, 3, 2]))
    assert evaluate(_ZeroPolicy(), _CrashEveryOtherEpisode(reports_crashes=False), 4).collision_rate is None
    assert evaluate(_ZeroPolicy(), _CrashEveryOtherEpisode(crashes=False), 4).collision_rate == 0.0


def test_eval_result_keeps_its_collision_rate_through_pickle_and_copy():
    import copy
    import pickle

    from sparserl.trainer import EvalResult
    result = EvalResult(2.5, 0.5, 0.25)
    for clone in (pickle.loads(pickle.dumps(result)), copy.copy(result), copy.deepcopy(result)):
        assert (tuple(clone), clone.collision_rate) == ((2.5, 0.5), 0.25)
    assert "collision_rate=0.25" in repr(result)


def _fake_cell(root, label, seed, summary):
    import json
    cell = root / "dqn" / "highway-fast-v0" / label / f"seed{seed}"
    cell.mkdir(parents=True)
    (cell / "summary.json").write_text(json.dumps({"method": label, "steps": 100, "final_eval_return": 20.0,
                                                   "best_eval_return": 21.0, **summary}))


def test_report_shows_a_collision_rate_only_for_cells_where_every_seed_has_one(tmp_path):
    from sparserl.bench.report import load_report_data, render_tables
    _fake_cell(tmp_path, "dense", 0, {"final_collision_rate": 0.2})
    _fake_cell(tmp_path, "dense", 1, {"final_collision_rate": 0.4})
    _fake_cell(tmp_path, "structured", 0, {"final_collision_rate": 0.1})
    _fake_cell(tmp_path, "structured", 1, {})  # a run from before the collision rate existed
    data = load_report_data(tmp_path, n_boot=10)
    rates = dict(zip(data.table["label"], data.table["collision_rate"]))
    assert rates["dense"] == pytest.approx(0.3) and np.isnan(rates["structured"])
    md = render_tables(data)
    header = next(line for line in md.splitlines() if line.startswith("| Algo | Env | Method"))
    column = header.split(" | ").index("Collision rate")
    rows = {line.split(" | ")[2]: line.split(" | ") for line in md.splitlines() if "| highway-fast-v0 |" in line
            and line.split(" | ")[2] in rates}
    assert rows["dense"][column] == "0.30" and rows["structured"][column] == "–"


def test_eval_line_names_the_collision_rate_only_where_the_env_reports_crashes():
    from sparserl.cli import _eval_line
    from sparserl.trainer import EvalResult
    assert _eval_line(EvalResult(2.5, 0.5, 0.25), 4).endswith("collision rate 0.25 (1/4)")
    assert "collision" not in _eval_line(EvalResult(2.5, 0.5), 4)


@needs_highway
def test_highway_run_logs_and_reports_the_collision_rate(tmp_path):
    import pandas as pd

    from sparserl.bench.report import collect_runs
    from sparserl.config import TrainConfig, resolve
    from sparserl.trainer import Trainer

    run = tmp_path / "dqn" / "highway-fast-v0" / "dense" / "seed0"
    cfg = resolve(TrainConfig(algo="dqn", env="highway-fast-v0", steps=20, learning_starts=10, batch_size=8,
                              hidden=[8], eval_every=10, eval_episodes=2, checkpoint_every=0, progress=False,
                              tensorboard=False, out=str(run)))
    summary = Trainer(cfg).train()
    metrics = pd.read_csv(run / "metrics.csv")
    rates = metrics["eval_collision_rate"].to_numpy()
    assert len(rates) == 2 and all(r in (0.0, 0.5, 1.0) for r in rates)  # 2 episodes per evaluation
    assert summary["final_collision_rate"] == rates[-1]
    assert collect_runs(tmp_path)["collision_rate"].tolist() == [rates[-1]]


@needs_highway
def test_example_drives_the_exported_policy(tmp_path, capsys):
    from sparserl.config import TrainConfig, resolve
    from sparserl.trainer import Trainer

    run = tmp_path / "run"
    cfg = resolve(TrainConfig(algo="dqn", env="highway-fast-v0", steps=12, learning_starts=10, batch_size=4,
                              hidden=[8], eval_every=0, eval_episodes=1, checkpoint_every=0, progress=False,
                              tensorboard=False, out=str(run)))
    Trainer(cfg).train()
    policy = tmp_path / "policy.npz"
    assert subprocess.run([sys.executable, "-m", "sparserl", "export", str(run), "--format", "npz",
                           "--out", str(policy)], capture_output=True, text=True, cwd=ROOT).returncode == 0
    spec = importlib.util.spec_from_file_location("highway_frames", ROOT / "examples" / "highway_frames.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--exported", str(policy), "--episodes", "2", "--frames", "0"]) == 0
    exported_line = capsys.readouterr().out
    road = tmp_path / "road.png"  # rendering goes through the same flattened observation as training
    assert module.main(["--run", str(run), "--episodes", "2", "--frames", "1", "--out", str(road)]) == 0
    assert road.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint_line = capsys.readouterr().out.splitlines()[0] + "\n"
    assert exported_line.startswith(f"{policy}: return ") and "collision rate" in exported_line
    # the same greedy policy on the same episode seeds: the same return and collision rate
    assert exported_line.split(": ", 1)[1] == checkpoint_line.split(": ", 1)[1]
