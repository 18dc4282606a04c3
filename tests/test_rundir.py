"""Run-directory safety: the lock, --out checks and overwrite rules, orphan temporaries, and the
run state read from the files (including a run killed during its final writes)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sparserl import checkpoint
from sparserl.errors import UserError
from sparserl.rundir import (FINAL_ARTIFACTS, LOCK, RunDirLock, RunState, check_out_dir, clean_orphan_temps,
                             finish_state, open_run_dir)

REPO = Path(__file__).resolve().parents[1]


# --- the lock ------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from sparserl.rundir import RunDirLock
    lock = RunDirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until the parent closes stdin (or kills us)
    lock.release()
""")


@pytest.fixture
def holder():
    """Start a separate process holding the lock on a directory; yields its Popen."""
    procs = []

    def start(path):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_writer_gets_a_one_line_error_naming_dir_and_pid(tmp_path, holder):
    out = tmp_path / "run"
    proc = holder(out)
    with pytest.raises(UserError) as info:
        RunDirLock(out).acquire()
    message = str(info.value)
    assert "\n" not in message and str(out) in message and f"pid {proc.pid}" in message
    proc.stdin.close()  # the holder releases and exits: the directory is free again
    assert proc.wait(timeout=30) == 0
    assert not (out / LOCK).exists()
    with RunDirLock(out) as lock:
        assert lock.stale_owner is None  # released cleanly: nothing stale to report


def test_lock_of_a_killed_process_is_taken_over(tmp_path, holder):
    out = tmp_path / "run"
    proc = holder(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((out / LOCK).read_text())["pid"] == proc.pid  # the dead holder's file is still there
    with RunDirLock(out) as lock:
        assert lock.stale_owner["pid"] == proc.pid
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunDirLock(tmp_path):
        with pytest.raises(UserError, match=f"in use by pid {os.getpid()}"):
            RunDirLock(tmp_path).acquire()


def test_lock_file_symlink_is_refused_and_its_target_untouched(tmp_path):
    """A crafted run directory whose .lock points at another file: locking must not truncate it."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).symlink_to(target)
    with pytest.raises(UserError, match="cannot create the lock file") as info:
        RunDirLock(run).acquire()
    assert "\n" not in str(info.value) and target.read_text() == "keep me"


# --- --out checks --------------------------------------------------------------------------

@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: "", "--out must name a directory, got ''"),
    (lambda tmp: "   ", "--out must name a directory"),
    (lambda tmp: None, "--out must name a directory"),
    (lambda tmp: str(tmp / "a\0b"), "NUL"),
    (lambda tmp: tmp / "file.txt", "is an existing file"),
    # Below a regular file nothing can be created, for root too (chmod would not stop root).
    (lambda tmp: tmp / "file.txt" / "run", "cannot write to --out"),
])
def test_bad_out_paths_are_one_line_errors(tmp_path, make_path, message):
    (tmp_path / "file.txt").write_text("not a directory")
    with pytest.raises(UserError, match=message) as info:
        check_out_dir(make_path(tmp_path))
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=message):
        RunDirLock(make_path(tmp_path)).acquire()
    assert (tmp_path / "file.txt").read_text() == "not a directory"


def _resume(out, step, steps):
    checkpoint.save({"step": step, "config": {"steps": steps}, "buffer": torch.zeros(8)}, out / "resume.pt")


def _summary(out, steps):
    checkpoint.save_json({"steps": steps, "final_eval_return": 1.0}, out / "summary.json")


def _checkpoint(out):
    checkpoint.save({"agent": {}}, out / "checkpoint.pt")


def _run(out, *, resume=None, summary=None, ckpt=False, metrics=False):
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        _resume(out, *resume)
    if summary is not None:
        _summary(out, summary)
    if ckpt:
        _checkpoint(out)
    if metrics:
        (out / "metrics.csv").write_text("step,eval_return\n")
    return out


@pytest.mark.parametrize("files, state", [
    ({}, RunState.EMPTY),
    ({"metrics": True}, RunState.STARTED),
    ({"resume": (5, 10), "metrics": True}, RunState.IN_PROGRESS),
    # --resume --steps 20 of a finished 10-step run, killed at step 15: the old summary is stale.
    ({"resume": (15, 20), "summary": 10, "ckpt": True}, RunState.IN_PROGRESS),
    # Killed after the final resume.pt, before (or between) the final artifacts.
    ({"resume": (10, 10)}, RunState.FINAL_ARTIFACTS_MISSING),
    ({"resume": (10, 10), "ckpt": True}, RunState.FINAL_ARTIFACTS_MISSING),
    ({"resume": (20, 20), "summary": 10, "ckpt": True}, RunState.FINAL_ARTIFACTS_MISSING),
    ({"resume": (10, 10), "summary": 10}, RunState.FINAL_ARTIFACTS_MISSING),
    ({"resume": (10, 10), "summary": 10, "ckpt": True}, RunState.COMPLETE),
    ({"summary": 10, "ckpt": True}, RunState.COMPLETE),  # resume.pt deleted to save space
])
def test_finish_state_from_the_files(tmp_path, files, state):
    status = finish_state(_run(tmp_path / "run", **files))
    assert status.state is state
    assert status.resumable == (state in (RunState.IN_PROGRESS, RunState.FINAL_ARTIFACTS_MISSING))
    if "resume" in files:
        assert (status.step, status.steps) == files["resume"]


def test_finish_state_rejects_unreadable_or_foreign_resume_files(tmp_path):
    (tmp_path / "resume.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        finish_state(tmp_path)
    checkpoint.save({"weights": torch.zeros(2)}, tmp_path / "resume.pt")
    with pytest.raises(UserError, match="not a sparserl resume file"):
        finish_state(tmp_path)


@pytest.mark.parametrize("files, message", [
    ({"resume": (10, 10), "summary": 10, "ckpt": True}, "holds a finished run"),
    ({"resume": (5, 10)}, r"holds an unfinished run \(in progress, resume.pt at step 5 of 10\).*--resume"),
    ({"resume": (10, 10)}, "holds an unfinished run .final artifacts missing"),
])
def test_finished_or_unfinished_runs_are_not_overwritten_without_overwrite(tmp_path, files, message):
    out = _run(tmp_path / "run", metrics=True, **files)
    (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserError, match=message) as info:
        check_out_dir(out)
    assert "\n" not in str(info.value) and "--overwrite" in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == before
    # --overwrite deletes the run's own files only.
    (out / "tb").mkdir()
    (out / "tb" / "events.out.tfevents.1").write_text("x")
    assert check_out_dir(out, overwrite=True).state is not RunState.EMPTY
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("resuming", [False, True])
def test_run_files_that_are_symlinks_are_refused(tmp_path, resuming):
    target = tmp_path / "bashrc"
    target.write_text("keep me")
    out = _run(tmp_path / "run", resume=(5, 10))
    (out / "config.yaml").symlink_to(target)
    with pytest.raises(UserError, match="config.yaml is a symbolic link"):
        check_out_dir(out, overwrite=not resuming, resuming=resuming)
    assert target.read_text() == "keep me" and (out / "resume.pt").exists()


def test_run_killed_before_its_first_checkpoint_is_replaced_without_asking(tmp_path):
    out = _run(tmp_path / "run", metrics=True)
    (out / "config.yaml").write_text("algo: dqn\n")
    assert check_out_dir(out).state is RunState.STARTED
    assert not (out / "metrics.csv").exists() and not (out / "config.yaml").exists()


@pytest.mark.parametrize("setup, kwargs, message", [
    (None, {"resuming": True}, "no such run directory"),
    ({"metrics": True}, {"resuming": True}, "no resume.pt there, nothing to resume"),
    ({"resume": (5, 10)}, {"resuming": True, "overwrite": True}, "cannot be combined"),
])
def test_resume_checks(tmp_path, setup, kwargs, message):
    out = tmp_path / "run"
    if setup is not None:
        _run(out, **setup)
    with pytest.raises(UserError, match=message):
        check_out_dir(out, **kwargs)
    with pytest.raises(UserError, match=message):
        with open_run_dir(out, **kwargs):
            pass
    assert out.exists() == (setup is not None)  # a failed --resume never creates the directory


def test_resume_check_returns_the_state_for_the_caller(tmp_path):
    out = _run(tmp_path / "run", resume=(10, 10), summary=10, ckpt=True)
    status = check_out_dir(out, resuming=True)
    assert status.state is RunState.COMPLETE and status.step == 10  # the CLI compares with --steps


# --- orphan temporaries ----------------------------------------------------------------------

KILLED_WRITER = textwrap.dedent("""
    import os, sys
    from sparserl import checkpoint
    def writer(fh):
        fh.write(b"half a checkpoint")
        fh.flush()
        os._exit(9)  # killed in the middle of an atomic write
    checkpoint.atomic_write_bytes_via(os.path.join(sys.argv[1], "resume.pt"), writer)
""")


def test_orphan_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], env={**os.environ, "PYTHONPATH": str(REPO)},
                   check=False)
    orphans = [p.name for p in tmp_path.iterdir()]
    assert len(orphans) == 1 and orphans[0].startswith(".resume.pt.") and orphans[0].endswith(".tmp")
    (tmp_path / "metrics.csv.tmp").write_text("step\n")  # MetricsLog.rewrite's temporary
    keep = ["notes.tmp", ".notes.tmp", "resume.pt", "data.csv.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    removed = clean_orphan_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([orphans[0], "metrics.csv.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_open_run_dir_locks_checks_and_cleans(tmp_path):
    out = _run(tmp_path / "run", resume=(5, 10))
    (out / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"partial")
    with open_run_dir(out, resuming=True) as status:
        assert status.state is RunState.IN_PROGRESS
        assert not (out / ".checkpoint.pt.abcd1234.tmp").exists()
        with pytest.raises(UserError, match="in use"):
            RunDirLock(out).acquire()
    assert not (out / LOCK).exists()


# --- a real run killed during its final writes -----------------------------------------------

class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise runs (not even `except Exception`)."""


def _tiny_config(out):
    from sparserl.config import TrainConfig, resolve
    return resolve(TrainConfig(algo="dqn", env="CartPole-v1", steps=200, seed=0, out=str(out), eval_every=100,
                               eval_episodes=1, checkpoint_every=0, progress=False, tensorboard=False,
                               hidden=[16], batch_size=16, learning_starts=50, train_freq=1,
                               target_update_every=50, torch_threads=1))


# The trainer method that writes each final artifact.
WRITER = {"checkpoint.pt": "save_checkpoint", "learning_curve.png": "plot", "summary.json": "write_summary"}


@pytest.mark.parametrize("killed_before", [
    "checkpoint.pt",
    "learning_curve.png",
    "summary.json",
])
def test_run_killed_before_a_final_artifact_can_be_finished_from_resume_pt(tmp_path, monkeypatch, killed_before):
    """Kill just before each final write; whatever is left is either complete or finishable by
    resuming (the trainer runs no step at the final step and only writes the final artifacts)."""
    from sparserl.trainer import Trainer

    out = tmp_path / "run"
    cfg = _tiny_config(out)

    def kill(self, *args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, WRITER[killed_before], kill)
        with pytest.raises(Killed):
            Trainer(cfg).train()
    status = finish_state(out)
    assert status.state in (RunState.FINAL_ARTIFACTS_MISSING, RunState.COMPLETE)
    if status.resumable:
        state = checkpoint.load(out / "resume.pt")
        steps_before = state["step"]
        trainer = Trainer(cfg, resume_state=state)
        trainer.train()
        assert trainer.step == steps_before == cfg.steps
    assert finish_state(out).state is RunState.COMPLETE
    for name in FINAL_ARTIFACTS:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == cfg.steps and summary["updates"] > 0


@pytest.mark.parametrize("files, state", [
    ({"resume": (15, 20), "summary": 10, "ckpt": True}, RunState.IN_PROGRESS),   # stale summary
    ({"resume": (10, 10), "summary": 10}, RunState.FINAL_ARTIFACTS_MISSING),
    ({"resume": (10, 10), "summary": 10, "ckpt": True}, RunState.COMPLETE),
    ({"summary": 10, "ckpt": True}, RunState.COMPLETE),
    ({}, RunState.EMPTY),
])
def test_bench_is_done_is_the_finished_run_rule(tmp_path, files, state):
    # one rule of "a finished run": the bench harness asks finish_state, so a summary.json left
    # from before a `--resume --steps` extension no longer counts as done
    from sparserl.bench.runner import is_done

    out = _run(tmp_path / "run", **files)
    assert finish_state(out).state is state
    assert is_done(out) == (state is RunState.COMPLETE)


def test_a_failed_atomic_write_of_any_file_is_one_line_and_keeps_the_old_file(tmp_path):
    """Every file goes through the one atomic writer (metrics.csv, bench manifests, the crossover
    cache, plots, checkpoints), so a full disk is a WriteError line for each of them -- still an
    OSError for callers that catch those -- and the previous file survives without a temporary."""
    import errno

    from sparserl.atomic import WriteError, atomic_write, atomic_write_text

    path = tmp_path / "metrics.csv"
    atomic_write_text(path, "step\n1\n")

    def full_disk(fh):
        fh.write(b"step\n1\n2")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as info:
        atomic_write(path, full_disk)
    assert isinstance(info.value, OSError) and isinstance(info.value, UserError)
    assert str(info.value) == f"cannot write {path}: No space left on device; the previous file (if any) is intact"
    assert path.read_text() == "step\n1\n" and os.listdir(tmp_path) == ["metrics.csv"]
    with pytest.raises(WriteError, match="cannot write .*file.txt/x.csv"):  # a parent that is a file
        (tmp_path / "file.txt").write_text("")
        atomic_write_text(tmp_path / "file.txt" / "x.csv", "")
