"""``vectorise: K`` in a suite: seeds of one configuration run K at a time in one
``sparserl train --seeds`` process, each seed still in its own cell directory."""
import json
from pathlib import Path

import pytest

from sparserl.bench import runner
from sparserl.bench import report_main
from sparserl.bench.runner import group_jobs, run_suite
from sparserl.bench.suite import group_command, load_suite
from sparserl.errors import UserError

SUITE = """
name: vec
steps: 300
seeds: [0, 1, 2]
eval_every: 150
eval_episodes: 1
vectorise: 2
overrides: {hidden: [32, 32], learning_starts: 100, batch_size: 32, tensorboard: false, torch_threads: 1,
            preset: none}
cells:
  - {algo: td3, env: Pendulum-v1, method: [dense, rigl], overrides: {topology_delta: 25}}
  - {algo: td3, env: Pendulum-v1, method: static, vectorise: 1}
"""


def _suite(tmp_path) -> Path:
    path = tmp_path / "vec.yaml"
    path.write_text(SUITE)
    return path


def test_cells_of_one_configuration_are_grouped_by_vectorise(tmp_path, monkeypatch):
    suite = load_suite(_suite(tmp_path), tmp_path / "out")
    todo = [(c, ["cmd"], None) for c in suite.cells]
    jobs = group_jobs(todo)
    groups = sorted((sorted(c.seed for c in job[0]), job[0][0].method) for job in jobs if isinstance(job[0], list))
    singles = sorted((job[0].method, job[0].seed) for job in jobs if not isinstance(job[0], list))
    assert groups == [([0, 1], "dense"), ([0, 1], "rigl"), ([2], "dense"), ([2], "rigl")]
    assert singles == [("static", 0), ("static", 1), ("static", 2)]
    cells = [c for c in suite.cells if c.method == "dense"][:2]
    cmd = group_command(cells)
    assert cmd[cmd.index("--seeds") + 1] == "0,1" and "--seed" not in cmd
    assert cmd[cmd.index("--out") + 1] == str(cells[0].out_dir.parent)
    # a resumable seed and a fresh one never share a group (a group starts at one step)
    monkeypatch.setattr(runner, "is_resumable", lambda d: Path(d).name == "seed0")
    jobs = [job for job in group_jobs(todo) if isinstance(job[0], list) and job[0][0].method == "dense"]
    assert sorted((sorted(c.seed for c in j[0]), j[2]) for j in jobs) == [([0], True), ([1, 2], False)]
    resume = next(j[1] for j in jobs if j[2])
    assert resume[resume.index("--resume") + 1] == str(cells[0].out_dir.parent) and "--seeds" in resume


def test_a_vectorised_suite_runs_to_normal_cell_directories(tmp_path, capsys):
    out = tmp_path / "out"
    summary = run_suite(_suite(tmp_path), out, workers=1, progress=False)
    assert summary["failed"] == 0 and summary["completed"] == 9, summary
    config_dir = out / "td3" / "Pendulum-v1" / "dense"
    assert (config_dir / "seeds-0,1.stdout.log").exists() and (config_dir / "seeds-2.stdout.log").exists()
    for seed in (0, 1, 2):
        data = json.loads((config_dir / f"seed{seed}" / "summary.json").read_text())
        assert data["seed"] == seed and data["steps"] == 300
    assert report_main([str(out)]) in (0, None)
    assert "dense" in (out / "report.md").read_text()


def test_vectorise_is_refused_on_ray(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_import_ray", lambda: None)  # refused before Ray would be used
    with pytest.raises(UserError, match="vectorise"):
        run_suite(_suite(tmp_path), tmp_path / "out", backend="ray")
