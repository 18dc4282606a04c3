"""Exact resume for every method: masks, topology/pruning schedules, optimizer state, buffer,
RNG, metrics and FLOP counters of an interrupted + resumed run equal the uninterrupted run's;
and a run killed with SIGKILL at a random instant (final writes included) can be finished."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparserl import checkpoint
from sparserl.cli import main
from sparserl.methods import METHODS

from test_resume import _metrics, _summary, _train_args, assert_same, run_interrupted

# flags that make each method's schedule act within the short run; every registered method is
# resumed (test_every_method_resumes_exactly runs over the registry, a method missing here runs
# with its defaults)
METHOD_FLAGS = {
    "dense": [],
    "tiny": ["--actor-sparsity", "0.8", "--critic-sparsity", "0.8"],
    "static": ["--actor-sparsity", "0.8", "--critic-sparsity", "0.8"],
    "set": ["--actor-sparsity", "0.8", "--critic-sparsity", "0.8", "--topology-delta", "100"],
    "rigl": ["--actor-sparsity", "0.8", "--critic-sparsity", "0.8", "--topology-delta", "100"],
    "rlx2": ["--actor-sparsity", "0.8", "--critic-sparsity", "0.8", "--topology-delta", "100",
             "--buffer-min", "200", "--buffer-check-every", "150", "--buffer-threshold", "0.0"],
    "structured": ["--prune-every", "50", "--prune-start", "0.1", "--prune-end", "0.9", "--min-width", "4"],
    "neuron-magnitude": ["--prune-every", "50", "--prune-start", "0.1", "--prune-end", "0.9", "--min-width", "4"],
    "gmp": ["--prune-every", "50", "--prune-start", "0.1", "--prune-end", "0.9", "--gmp-sparsity", "0.9"],
}


def args_for(method, out):
    return [*_train_args("td3", out), "--method", method, *METHOD_FLAGS.get(method, [])]


def test_resume_flags_name_only_registered_methods():
    assert set(METHOD_FLAGS) <= set(METHODS)  # a renamed method must not drop out of the resume test


@pytest.mark.parametrize("method", METHODS)
def test_every_method_resumes_exactly(method, tmp_path, monkeypatch, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(args_for(method, full)) == 0
    run_interrupted(monkeypatch, args_for(method, part))
    assert main(["train", "--resume", str(part)]) == 0
    full_ckpt, part_ckpt = checkpoint.load(full / "checkpoint.pt"), checkpoint.load(part / "checkpoint.pt")
    assert_same(full_ckpt["agent"], part_ckpt["agent"], "agent")  # weights, masks, optimizer, FLOP counters
    assert full_ckpt["architecture"] == part_ckpt["architecture"]
    full_res, part_res = checkpoint.load(full / "resume.pt"), checkpoint.load(part / "resume.pt")
    assert_same(full_res["buffer"], part_res["buffer"], "buffer")
    assert_same(full_res["method"], part_res["method"], "method")
    assert _metrics(full) == _metrics(part)
    assert _summary(full) == _summary(part)
    summary = _summary(full)
    if method in ("structured", "neuron-magnitude"):
        assert summary["neurons"]["actor.net"]["neurons_alive"] < 128  # pruning did happen
    elif method == "tiny":
        assert all(sum(w) < 128 for w in summary["architecture"].values())  # the narrowed widths resumed
    elif method not in ("static", "dense"):
        # changed topology or masks before and after the interruption
        assert any(s.get("topology_updates", 0) > 0 or s.get("gmp_target", 0) > 0
                   for s in summary["method_state"].values())


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method", ["dense", "rlx2", "structured"])
def test_sigkill_at_a_random_instant_then_resume_matches(method, tmp_path):
    """A real ``kill -9`` anywhere in the run (possibly during a checkpoint or the final writes):
    what is left is complete, or ``--resume`` finishes it to the uninterrupted result."""
    flags = [] if method == "dense" else METHOD_FLAGS[method]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*_train_args("td3", full), "--method", method, *flags]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "sparserl", *_train_args("td3", part), "--method", method, *flags,
           "--checkpoint-every", "100"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay = random.Random(os.getpid()).uniform(1.0, 6.0)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # whatever the instant: never a temp file that --resume trips on, never a half checkpoint
    if (part / "summary.json").exists():
        pass  # it finished before the kill
    elif (part / "resume.pt").exists():
        code = subprocess.run([sys.executable, "-m", "sparserl", "train", "--resume", str(part), "--no-progress"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert code.returncode == 0, code.stderr
    else:  # killed before its first checkpoint: the same command starts it again
        code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert code.returncode == 0, code.stderr
    assert not list(part.glob(".*.tmp"))
    assert_same(checkpoint.load(full / "checkpoint.pt")["agent"], checkpoint.load(part / "checkpoint.pt")["agent"])
    assert _metrics(full) == _metrics(part)
