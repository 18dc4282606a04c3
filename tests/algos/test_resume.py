"""Checkpoints: an interrupted + resumed run equals the uninterrupted one; eval round trip;
atomic writes; ``weights_only`` loading."""
import csv
import json
import os

import pytest
import torch

from sparserl import checkpoint
from sparserl.cli import load_agent, main
from sparserl.envs import make_env
from sparserl.errors import UserError
from sparserl.trainer import Trainer, evaluate

from algo_helpers import tiny_config

STEPS = 900
EVAL_EVERY = 300
# 350 is not a multiple of Pendulum's 200-step episodes, so the interruption lands
# mid-episode and resuming has to replay the episode's actions (asserted below).
CHECKPOINT_EVERY = 350
TIMING_COLUMNS = {"wall_time_s", "sps", "updates_per_s"}

ALGO_FLAGS = {
    "td3": ["--env", "Pendulum-v1", "--learning-starts", "100"],
    "sac": ["--env", "Pendulum-v1", "--learning-starts", "100"],
    "dqn": ["--env", "CartPole-v1", "--learning-starts", "100", "--train-freq", "1",
            "--target-update-every", "50"],
}


def _train_args(algo, out):
    return ["train", "--algo", algo, *ALGO_FLAGS[algo], "--steps", str(STEPS), "--seed", "1",
            "--out", str(out), "--eval-every", str(EVAL_EVERY), "--eval-episodes", "1",
            "--checkpoint-every", str(CHECKPOINT_EVERY), "--hidden", "64", "64", "--batch-size", "32",
            "--no-progress", "--no-tensorboard", "--preset", "none"]


def assert_same(a, b, where="state"):
    """Exact, recursive equality of checkpoint contents (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def _summary(run_dir):
    data = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING_COLUMNS | {"wall_time_s", "machine"}}


def run_interrupted(monkeypatch, args) -> None:
    """Run ``sparserl train ARGS`` and kill it (Ctrl-C) right after its first resumable checkpoint."""
    real_save_resume = Trainer.save_resume

    def save_then_interrupt(self):
        real_save_resume(self)
        if self.step == CHECKPOINT_EVERY:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_resume", save_then_interrupt)
        assert main(args) == 130


@pytest.mark.parametrize("algo", ["td3", "dqn", "sac"])
def test_interrupted_and_resumed_run_equals_uninterrupted(algo, tmp_path, monkeypatch, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(_train_args(algo, full)) == 0
    run_interrupted(monkeypatch, _train_args(algo, part))
    assert not (part / "checkpoint.pt").exists(), "the interrupted run must not have finished"
    state = checkpoint.load(part / "resume.pt")
    assert state["step"] == CHECKPOINT_EVERY
    assert state["agent"]["n_updates"], "updates must have happened before the interruption"
    assert state["episode_actions"] is not None and len(state["episode_actions"]) > 0, \
        "interruption must be mid-episode so the env replay is exercised"

    capsys.readouterr()
    assert main(["train", "--resume", str(part)]) == 0
    assert "final eval return" in capsys.readouterr().out

    ckpt_full, ckpt_part = checkpoint.load(full / "checkpoint.pt"), checkpoint.load(part / "checkpoint.pt")
    assert ckpt_full["step"] == ckpt_part["step"] == STEPS
    # Parameters, targets, optimizer moments and counters are bit-identical.
    assert_same(ckpt_full["agent"], ckpt_part["agent"], "agent")
    assert_same({k: v for k, v in ckpt_full["config"].items() if k != "out"},
                {k: v for k, v in ckpt_part["config"].items() if k != "out"}, "config")
    # So is the replay buffer (contents and sampling RNG) and every other part of the resume state.
    res_full, res_part = checkpoint.load(full / "resume.pt"), checkpoint.load(part / "resume.pt")
    assert_same(res_full["buffer"], res_part["buffer"], "buffer")
    for key in ("np_rng", "torch_rng", "env_episode_rng", "eval_env_rng", "episode", "recent_returns"):
        assert_same(res_full[key], res_part[key], key)
    # Metrics (one row per evaluation) agree except wall-clock columns.
    rows_full, rows_part = _metrics(full), _metrics(part)
    assert [r["step"] for r in rows_full] == [str(s) for s in range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)]
    assert rows_full == rows_part
    assert _summary(full) == _summary(part)


def test_resume_with_more_steps_extends_a_finished_run(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config("td3", out, steps=300, eval_every=150)
    Trainer(cfg).train()
    first = checkpoint.load(out / "checkpoint.pt")
    capsys.readouterr()
    # Without a larger --steps there is nothing to continue: a one-line error, exit 2.
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "300" in err[0]
    assert main(["train", "--resume", str(out), "--steps", "450"]) == 0
    second = checkpoint.load(out / "checkpoint.pt")
    assert second["step"] == 450 and second["config"]["steps"] == 450
    assert second["agent"]["n_updates"]["critic"] > first["agent"]["n_updates"]["critic"]
    steps_logged = [int(r["step"]) for r in _metrics(out)]
    assert steps_logged == [150, 300, 450]


def test_resume_missing_directory_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["train", "--resume", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]


def test_eval_of_saved_checkpoint_matches_in_process_evaluation(tmp_path, capsys):
    cfg = tiny_config("td3", tmp_path, steps=300)
    trainer = Trainer(cfg)
    trainer.train()
    # The reloaded agent carries exactly the trained weights ...
    _, loaded, _ = load_agent(tmp_path)
    assert_same(trainer.agent.state_dict()["networks"], loaded.state_dict()["networks"], "networks")
    # ... so `sparserl eval` reports exactly the in-process evaluation with the same env seed.
    env = make_env(cfg.env)
    env.reset(seed=7)
    mean, std = evaluate(trainer.agent, env, 3)
    assert std > 0  # different start states: the comparison is not trivially constant
    capsys.readouterr()
    assert main(["eval", str(tmp_path), "--episodes", "3", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert f"return {mean:.2f} ± {std:.2f} over 3 episodes" in out


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_checkpoint_save_is_atomic(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"w": torch.arange(5.0), "step": 1}, path)
    before = path.read_bytes()

    def broken_save(obj, fh, *args, **kwargs):  # dies half-way through writing
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", broken_save)
        with pytest.raises(type(failure)):
            checkpoint.save({"w": torch.zeros(5), "step": 2}, path)
    assert path.read_bytes() == before
    loaded = checkpoint.load(path)
    assert torch.equal(loaded["w"], torch.arange(5.0)) and loaded["step"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"], "no temporary file may be left behind"


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"junk")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save({"w": torch.ones(2)}, tmp_path / "checkpoint.pt")
    assert os.listdir(tmp_path) == []


class NotATensor:
    """An arbitrary pickled object: ``weights_only`` loading must refuse it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_load_is_weights_only(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"x": NotATensor()}, path)
    with pytest.raises(UserError, match="refused to load .*evil.pt: the file asks for a call to print,") as info:
        checkpoint.load(path)
    assert "this must never run" not in capsys.readouterr().out
    assert "weights_only" not in str(info.value)  # torch's advice to turn the protection off is not repeated
