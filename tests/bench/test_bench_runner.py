"""The runner on a fake trainer: kill + resume, crashed cells, backend errors, resume.pt."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sparserl.bench import make_report, run_suite
from sparserl.bench.cli import bench_main
from sparserl.bench.runner import execute_cell, is_done
from sparserl import checkpoint
from sparserl.errors import UserError
from sparserl.rundir import RunDirLock

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FAKE_TRAINER = HERE / "fake_trainer.py"
SMOKE = REPO / "benchmarks" / "suites" / "smoke.yaml"
N_SMOKE = 12


def _summaries(out: Path) -> list[Path]:
    return sorted(out.glob("*/*/*/seed*/summary.json"))


def _running(out: Path) -> list[Path]:
    return [p for p in out.glob("*/*/*/seed*") if not (p / "summary.json").exists()]


def test_smoke_grid_killed_midway_then_resumed_counts_every_cell_once(tmp_path, fake_builder):
    out = tmp_path / "run"
    env = dict(os.environ, FAKE_TRAINER_SLEEP="0.6",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "sparserl.bench", "bench", str(SMOKE), "--out", str(out),
           "--workers", "2", "--no-progress",
           "--command-prefix", f"{sys.executable} {FAKE_TRAINER}"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        # wait until some cells are done and others are running (dir without summary.json)
        while time.time() < deadline and proc.poll() is None and not (
                len(_summaries(out)) >= 2 and _running(out)):
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the bench and its running cells
        proc.wait()
    done_before = len(_summaries(out))
    assert 0 < done_before < N_SMOKE
    # the cells that were running when killed left directories without summary.json
    assert _running(out), "expected interrupted cells"

    summary = run_suite(SMOKE, out, workers=2, command_builder=fake_builder, progress=False)
    assert summary["total"] == N_SMOKE
    assert summary["skipped"] == done_before
    assert summary["completed"] == N_SMOKE - done_before
    assert summary["failed"] == 0 and json.loads((out / "failures.json").read_text()) == []
    assert len(_summaries(out)) == N_SMOKE
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2 and len(manifest["cells"]) == N_SMOKE

    paths = make_report(out, n_boot=500, plots=False)
    runs = pd.read_csv(paths["runs_csv"])
    assert len(runs) == N_SMOKE and runs["dir"].is_unique
    table = pd.read_csv(paths["csv"])
    assert table["n_seeds"].sum() == N_SMOKE
    assert set(table["n_seeds"]) == {2}
    assert "12 finished of 12" in paths["md"].read_text()

    # a third run has nothing to do
    again = run_suite(SMOKE, out, workers=2, command_builder=fake_builder, progress=False)
    assert (again["skipped"], again["ran"]) == (N_SMOKE, 0)


def test_failing_cells_are_recorded_and_the_rest_complete(tmp_path, fake_builder, monkeypatch):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: failing\nsteps: 100\nseeds: [0, 1]\neval_every: 50\neval_episodes: 1\n"
        "cells:\n  - {algo: td3, env: EnvA-v0, method: [dense, static, crash]}\n")
    monkeypatch.setenv("FAKE_TRAINER_FAIL", "td3/EnvA-v0/static/1")
    out = tmp_path / "run"
    summary = run_suite(suite, out, workers=2, command_builder=fake_builder, progress=False)
    assert (summary["total"], summary["completed"], summary["failed"]) == (6, 3, 3)
    failures = json.loads((out / "failures.json").read_text())
    assert sorted(f["cell"] for f in failures) == [
        "td3/EnvA-v0/crash/seed0", "td3/EnvA-v0/crash/seed1", "td3/EnvA-v0/static/seed1"]
    for f in failures:
        assert f["returncode"] == 3
        assert "crashed on purpose" in f["stderr_tail"]
        error = (out / f["dir"] / "error.txt").read_text()
        assert "exit code: 3" in error and "crashed on purpose" in error
    for ok in ("dense/seed0", "dense/seed1", "static/seed0"):
        assert is_done(out / "td3" / "EnvA-v0" / ok)
    # the CLI entry point exits 1 when cells failed; the report covers the finished ones
    monkeypatch.delenv("FAKE_TRAINER_FAIL")
    rc = bench_main([str(suite), "--out", str(out), "--workers", "2", "--no-progress",
                     "--command-prefix", f"{sys.executable} {FAKE_TRAINER}"])
    assert rc == 1  # the crash method still fails; static/seed1 now succeeds
    failures = json.loads((out / "failures.json").read_text())
    assert sorted(f["cell"] for f in failures) == ["td3/EnvA-v0/crash/seed0", "td3/EnvA-v0/crash/seed1"]
    table = pd.read_csv(make_report(out, n_boot=200, plots=False)["csv"])
    assert dict(zip(table["label"], table["n_seeds"])) == {"dense": 2, "static": 2}


def _write_resume(cell: Path, step: int, steps: int) -> None:
    checkpoint.save({"step": step, "config": {"steps": steps}}, cell / "resume.pt")


WRITE_SUMMARY = [sys.executable, "-c",
                 "import sys, pathlib; pathlib.Path(sys.argv[1], 'summary.json').write_text('{}')"]


# what `sparserl train --resume` leaves, in the trainer's final-artifact order: the last resume.pt,
# then summary.json (of that step), then checkpoint.pt
FINISH_RUN = [sys.executable, "-c",
              "import json, sys, pathlib; from sparserl import checkpoint; d = pathlib.Path(sys.argv[1]); "
              "checkpoint.save({'step': 10, 'config': {'steps': 10}}, d / 'resume.pt'); "
              "(d / 'summary.json').write_text(json.dumps({'steps': 10})); checkpoint.save({}, d / 'checkpoint.pt')"]


@pytest.mark.parametrize("step", [5, 10], ids=["mid-run", "killed-during-final-writes"])
def test_execute_cell_resumes_a_resumable_cell(tmp_path, step):
    """Both an interrupted run and one killed after its final resume.pt (no summary yet) are
    continued with the resume command, not wiped and not failed."""
    cell = tmp_path / "cell"
    cell.mkdir()
    _write_resume(cell, step, 10)
    res = execute_cell(["false"], str(cell), resume_command=[*FINISH_RUN, str(cell)])
    assert res["ok"] and res["resumed"] and (cell / "resume.pt").exists()


def test_a_resume_that_leaves_the_run_unfinished_is_not_done(tmp_path):
    # one rule of a finished run (rundir.finish_state): a summary.json next to a resume.pt with
    # steps left (e.g. from before a --resume --steps extension) is not a finished cell
    cell = tmp_path / "cell"
    cell.mkdir()
    _write_resume(cell, 5, 10)
    res = execute_cell(["false"], str(cell), resume_command=[*WRITE_SUMMARY, str(cell)])
    assert not res["ok"] and res["resumed"] and not is_done(cell)
    assert "did not finish its run" in (cell / "error.txt").read_text()


def test_execute_cell_restarts_without_resume_command_or_with_a_broken_resume_file(tmp_path):
    cell = tmp_path / "cell"
    cell.mkdir()
    _write_resume(cell, 5, 10)
    res = execute_cell([*WRITE_SUMMARY, str(cell)], str(cell))  # no resume command: start afresh
    assert res["ok"] and not res["resumed"] and not (cell / "resume.pt").exists()
    (cell / "summary.json").unlink()
    (cell / "resume.pt").write_text("not a checkpoint")  # would fail every resume attempt
    res = execute_cell([*WRITE_SUMMARY, str(cell)], str(cell), resume_command=["false"])
    assert res["ok"] and not res["resumed"] and not (cell / "resume.pt").exists()
    (cell / "summary.json").unlink()
    res = execute_cell([sys.executable, "-c", "pass"], str(cell))
    assert not res["ok"] and "no valid summary.json" in (cell / "error.txt").read_text()


def test_a_second_bench_on_the_same_out_is_refused(tmp_path, fake_builder):
    out = tmp_path / "out"
    with RunDirLock(out):  # stands for a bench already running on OUT
        with pytest.raises(UserError, match="is in use by pid"):
            run_suite(SMOKE, out, workers=1, command_builder=fake_builder, progress=False)
    assert not list(out.glob("*/*/*/seed*"))  # nothing ran, nothing was wiped


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "slurm"}, "unknown backend 'slurm'"),
    ({"workers": 0}, "--workers must be >= 1"),
    ({"ray_address": "auto"}, "needs --backend ray"),
])
def test_bad_options_raise_user_errors(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        run_suite(SMOKE, tmp_path / "out", **kwargs)


def test_missing_ray_gives_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(UserError, match=r"pip install 'sparserl\[ray\]'"):
        run_suite(SMOKE, tmp_path / "out", backend="ray")
    assert not (tmp_path / "out").exists()


def test_sparserl_cli_dispatches_bench_and_report(tmp_path, capsys):
    cli = pytest.importorskip("sparserl.cli", reason="sparserl/cli.py not written yet")
    rc = cli.main(["bench", str(SMOKE), "--out", str(tmp_path / "o"), "--dry-run"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == N_SMOKE and lines[0].startswith("todo td3/Pendulum-v1/dense/seed0")
    assert "-m sparserl train --algo td3" in lines[0]
    for argv, message in ([["bench", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)],
                           "suite file not found"],
                          [["bench", str(SMOKE)], "required: --out"],
                          [["bench", str(SMOKE), "--out", str(tmp_path), "--backend", "mpi"],
                           "unknown backend 'mpi'"],
                          [["report", str(tmp_path / "nothing")], "run directory not found"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
