"""Bad input, table-driven, across every way options reach a run: CLI flags, YAML ``--config``
files, presets, ``--resume`` and the Python API (issue 10).

Each bad case must end with exit status 2 (``UserError`` for the API) and ONE line naming the
option and the value (the needles); a rejected fresh run must not create its output directory
(nor anything in the working directory). Legal edge values must resolve, and resolve to what the
user meant (YAML ``lr: 3e-4`` is 0.0003, ``learning_starts: 1e3`` is 1000). Cases only resolve
configs; a handful run 50-step trainings.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from sparserl import DQN, SAC, TD3, checkpoint
from sparserl.cli import build_parser, config_from_args, main
from sparserl.config import ALGO_DEFAULTS, TrainConfig, resolve, update_rounds
from sparserl.errors import UserError

TINY = ["--hidden", "16", "--batch-size", "8", "--eval-episodes", "1", "--no-progress", "--no-tensorboard"]
DQN_ENV = ["--algo", "dqn", "--env", "CartPole-v1"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_training(monkeypatch):
    """For cases that must be rejected before a run starts: an accepted one fails at once
    instead of training for the default 10k steps."""
    def refuse(*args, **kwargs):
        raise AssertionError("a bad input was accepted: the run was about to start")
    monkeypatch.setattr("sparserl.trainer.Trainer", refuse)


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _assert_one_line(message: str, needles: list[str]) -> str:
    lines = message.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {message!r}"
    assert "Traceback" not in message
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in {lines[0]!r}"
    return lines[0]


def _assert_rejected(argv: list[str], needles: list[str], workdir: Path) -> None:
    """exit 2, one ``error:`` line with the needles, and no directory or file left behind."""
    before = sorted(p.name for p in workdir.iterdir())
    rc, stdout, stderr = _main(argv)
    assert rc == 2, f"rc {rc}, stderr {stderr!r}"
    line = _assert_one_line(stderr, needles)
    assert line.startswith("error: ")
    assert not (workdir / "out").exists(), "a rejected run must not create its output directory"
    assert sorted(p.name for p in workdir.iterdir()) == before, "a rejected run must leave no files"


def _resolve_cli(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


# =========================================================================== CLI flags
# (id, extra argv for `train`, needles). Every option's range, type and choices, and the rules
# between options. A value that argparse sees as text is quoted in the message ('0').
CLI_BAD = [
    # ranges: TD3 / SAC / shared hyper-parameters
    ("tau-zero", ["--tau", "0"], ["--tau", "0", "(0, 1]"]),
    ("tau-negative", ["--tau", "-0.5"], ["--tau", "-0.5", "(0, 1]"]),
    ("tau-above-one", ["--tau", "1.5"], ["--tau", "1.5"]),
    ("tau-nan", ["--tau", "nan"], ["--tau", "nan", "not finite"]),
    ("gamma-above-one", ["--gamma", "1.5"], ["--gamma", "1.5", "[0, 1]"]),
    ("gamma-inf", ["--gamma", "inf"], ["--gamma", "inf", "not finite"]),
    ("gamma-negative", ["--gamma", "-0.1"], ["--gamma", "-0.1"]),
    ("lr-zero", ["--lr", "0"], ["--lr", "0", "> 0"]),
    ("lr-negative", ["--lr", "-1"], ["--lr", "-1"]),
    ("lr-nan", ["--lr", "nan"], ["--lr", "nan"]),
    ("lr-minus-inf", ["--lr=-inf"], ["--lr", "-inf"]),
    ("lr-minus-inf-separate", ["--lr", "-inf"], ["--lr", "expected one argument"]),
    ("lr-text", ["--lr", "fast"], ["--lr", "fast", "not a number"]),
    ("lr-empty", ["--lr", ""], ["--lr", "not a number"]),
    ("noise-clip-negative", ["--noise-clip", "-1"], ["--noise-clip", "-1", ">= 0"]),
    ("policy-noise-negative", ["--policy-noise", "-0.1"], ["--policy-noise", "-0.1"]),
    ("exploration-noise-negative", ["--exploration-noise", "-1"], ["--exploration-noise", "-1"]),
    ("policy-delay-zero", ["--policy-delay", "0"], ["--policy-delay", "0", ">= 1"]),
    ("alpha-negative", ["--algo", "sac", "--alpha", "-1"], ["--alpha", "-1", "> 0"]),
    ("alpha-zero", ["--algo", "sac", "--alpha", "0"], ["--alpha", "0"]),
    ("alpha-inf", ["--algo", "sac", "--alpha", "inf"], ["--alpha", "inf"]),
    ("batch-size-zero", ["--batch-size", "0"], ["--batch-size", "0"]),
    ("batch-size-fraction", ["--batch-size", "32.5"], ["--batch-size", "32.5", "whole number"]),
    ("buffer-size-zero", ["--buffer-size", "0"], ["--buffer-size", "0"]),
    ("learning-starts-negative", ["--learning-starts", "-1"], ["--learning-starts", "-1"]),
    ("train-freq-zero", ["--train-freq", "0"], ["--train-freq", "0"]),
    ("gradient-steps-zero", ["--gradient-steps", "0"], ["--gradient-steps", "0"]),
    # DQN
    ("eps-start-above-one", [*DQN_ENV, "--eps-start", "2"], ["--eps-start", "2", "[0, 1]"]),
    ("eps-end-negative", [*DQN_ENV, "--eps-end", "-1"], ["--eps-end", "-1"]),
    ("eps-fraction-zero", [*DQN_ENV, "--eps-fraction", "0"], ["--eps-fraction", "0", "(0, 1]"]),
    ("eps-fraction-above-one", [*DQN_ENV, "--eps-fraction", "1.5"], ["--eps-fraction", "1.5"]),
    ("target-update-every-zero", [*DQN_ENV, "--target-update-every", "0"], ["--target-update-every", "0"]),
    ("target-update-every-fraction", [*DQN_ENV, "--target-update-every", "0.5"], ["--target-update-every", "0.5"]),
    # run, logging, process
    ("steps-zero", ["--steps", "0"], ["--steps", "0"]),
    ("steps-negative", ["--steps", "-5"], ["--steps", "-5"]),
    ("steps-fraction", ["--steps", "1.5"], ["--steps", "1.5"]),
    ("steps-text", ["--steps", "many"], ["--steps", "many"]),
    ("steps-huge", ["--steps", "1e30"], ["--steps", "1e30", "too large"]),
    ("seed-negative", ["--seed", "-1"], ["--seed", "-1", "[0, 2**32-1]"]),
    ("seed-power-expression", ["--seed", "2**70"], ["--seed", "2**70"]),
    ("seed-2-to-70", ["--seed", str(2 ** 70)], ["--seed", str(2 ** 70), "[0, 2**32-1]"]),
    ("seed-2-to-32", ["--seed", str(2 ** 32)], ["--seed", str(2 ** 32)]),
    ("seed-fraction", ["--seed", "1.5"], ["--seed", "1.5"]),
    ("torch-threads-zero", ["--torch-threads", "0"], ["--torch-threads", "0", "[1, 1024]"]),
    ("torch-threads-huge", ["--torch-threads", "100000"], ["--torch-threads", "100000"]),
    ("eval-episodes-zero", ["--eval-episodes", "0"], ["--eval-episodes", "0"]),
    ("eval-every-negative", ["--eval-every", "-1"], ["--eval-every", "-1"]),
    ("checkpoint-every-negative", ["--checkpoint-every", "-1"], ["--checkpoint-every", "-1"]),
    ("checkpoint-every-fraction", ["--checkpoint-every", "1.5"], ["--checkpoint-every", "1.5"]),
    ("schedule-steps-zero", ["--schedule-steps", "0"], ["--schedule-steps", "0"]),
    ("device-unknown", ["--device", "tpu"], ["--device", "tpu", "cuda:N"]),
    ("device-bad-index", ["--device", "cuda:x"], ["--device", "cuda:x"]),
    ("env-empty", ["--env", ""], ["--env", "''"]),
    ("out-empty", ["--out", ""], ["--out", "''"]),
    ("hidden-fraction", ["--hidden", "64.5"], ["--hidden", "64.5", "whole number"]),
    ("hidden-zero", ["--hidden", "64", "0"], ["--hidden", "0"]),
    ("hidden-negative", ["--hidden", "-3"], ["--hidden", "-3"]),
    ("hidden-text", ["--hidden", "64", "wide"], ["--hidden", "wide"]),
    ("env-kwargs-list", ["--env-kwargs", "[1, 2]"], ["--env-kwargs", "[1, 2]", "mapping"]),
    ("env-kwargs-malformed", ["--env-kwargs", "{a: [1"], ["--env-kwargs", "{a: [1"]),
    ("env-kwargs-number-key", ["--env-kwargs", "{1: 2}"], ["--env-kwargs", "key 1"]),
    ("env-kwargs-scalar", ["--env-kwargs", "3"], ["--env-kwargs", "3"]),
    # choices
    ("algo-unknown", ["--algo", "ppo"], ["--algo", "ppo", "dqn, td3, sac"]),
    ("method-unknown", ["--method", "sparsest"], ["--method", "sparsest", "rigl"]),
    ("allocation-unknown", ["--allocation", "random-ish"], ["--allocation", "random-ish", "erk"]),
    ("init-unknown", ["--init", "xavier"], ["--init", "xavier", "orthogonal"]),
    ("sac-collect-unknown", ["--sac-collect", "mode"], ["--sac-collect", "mode", "sample"]),
    ("importance-unknown", ["--importance", "gain"], ["--importance", "gain", "taylor"]),
    ("regularizer-unknown", ["--regularizer", "l1"], ["--regularizer", "l1", "group-lasso"]),
    ("policy-distance-unknown", ["--policy-distance", "cos"], ["--policy-distance", "cos", "mse"]),
    ("buffer-shrink-unknown", ["--buffer-shrink", "all"], ["--buffer-shrink", "all", "to-threshold"]),
    ("threshold-scope-unknown", ["--threshold-scope", "net"], ["--threshold-scope", "net", "global"]),
    ("threshold-rule-unknown", ["--threshold-rule", "linear"], ["--threshold-rule", "linear", "cubic"]),
    ("mask-init-unknown", ["--mask-init", "zeros"], ["--mask-init", "zeros", "magnitude"]),
    ("grow-unknown", ["--grow", "magnitude"], ["--grow", "magnitude", "gradient"]),
    ("preset-unknown", ["--preset", "best"], ["--preset", "best", "paper"]),
    # sparse training
    ("actor-sparsity-one", ["--actor-sparsity", "1.0"], ["--actor-sparsity", "1.0", "[0, 1)"]),
    ("critic-sparsity-above-one", ["--critic-sparsity", "1.5"], ["--critic-sparsity", "1.5"]),
    ("q-sparsity-negative", [*DQN_ENV, "--q-sparsity", "-0.1"], ["--q-sparsity", "-0.1"]),
    ("gmp-sparsity-one", ["--gmp-sparsity", "1"], ["--gmp-sparsity", "1"]),
    ("topology-delta-zero", ["--topology-delta", "0"], ["--topology-delta", "0"]),
    ("drop-fraction-above-one", ["--drop-fraction", "1.5"], ["--drop-fraction", "1.5"]),
    ("drop-fraction-negative", ["--drop-fraction", "-0.1"], ["--drop-fraction", "-0.1"]),
    ("topology-stop-negative", ["--topology-stop", "-1"], ["--topology-stop", "-1", "(0, 1]"]),
    ("topology-stop-zero", ["--topology-stop", "0"], ["--topology-stop", "0"]),
    ("topology-stop-above-one", ["--topology-stop", "1.5"], ["--topology-stop", "1.5"]),
    ("grad-accumulation-zero", ["--grad-accumulation", "0"], ["--grad-accumulation", "0"]),
    # n-step and the dynamic buffer
    ("nstep-zero", ["--nstep", "0"], ["--nstep", "0", "[1, 100]"]),
    ("nstep-huge", ["--nstep", "100000"], ["--nstep", "100000", "[1, 100]"]),
    ("nstep-101", ["--nstep", "101"], ["--nstep", "101"]),
    ("nstep-delay-negative", ["--nstep-delay", "-1"], ["--nstep-delay", "-1"]),
    ("buffer-min-zero", ["--buffer-min", "0"], ["--buffer-min", "0"]),
    ("buffer-max-zero", ["--buffer-max", "0"], ["--buffer-max", "0"]),
    ("buffer-threshold-negative", ["--buffer-threshold", "-0.1"], ["--buffer-threshold", "-0.1"]),
    ("buffer-threshold-nan", ["--buffer-threshold", "nan"], ["--buffer-threshold", "nan"]),
    ("buffer-check-every-zero", ["--buffer-check-every", "0"], ["--buffer-check-every", "0"]),
    # structured pruning
    ("reg-lambda-negative", ["--reg-lambda", "-1"], ["--reg-lambda", "-1"]),
    ("prune-every-zero", ["--prune-every", "0"], ["--prune-every", "0"]),
    ("prune-start-negative", ["--prune-start", "-0.1"], ["--prune-start", "-0.1"]),
    ("prune-end-zero", ["--prune-end", "0"], ["--prune-end", "0"]),
    ("prune-end-above-one", ["--prune-end", "1.5"], ["--prune-end", "1.5"]),
    ("min-width-zero", ["--min-width", "0"], ["--min-width", "0", ">= 1"]),
    ("target-neuron-fraction-above-one", ["--target-neuron-fraction", "1.5"], ["--target-neuron-fraction", "1.5"]),
    ("target-neuron-fraction-one", ["--target-neuron-fraction", "1"], ["--target-neuron-fraction", "1"]),
    ("target-neuron-fraction-negative", ["--target-neuron-fraction", "-0.1"], ["--target-neuron-fraction", "-0.1"]),
    ("recovery-reg-scale-negative", ["--recovery-reg-scale", "-1"], ["--recovery-reg-scale", "-1"]),
    ("prune-guard-negative", ["--prune-guard", "-1"], ["--prune-guard", "-1", ">= 0"]),
    # rules between options
    ("eps-end-above-eps-start", [*DQN_ENV, "--eps-start", "0.1", "--eps-end", "0.5"],
     ["--eps-end 0.5", "--eps-start 0.1"]),
    ("learning-starts-above-steps", ["--learning-starts", "20000"], ["--learning-starts 20000", "--steps 10000"]),
    ("learning-starts-equals-steps", ["--learning-starts", "300", "--steps", "300"],
     ["--learning-starts 300", "--steps 300", "no gradient update"]),
    ("train-freq-leaves-no-update", ["--train-freq", "500", "--steps", "300", "--learning-starts", "0"],
     ["--train-freq 500", "--steps 300"]),
    ("dqn-three-steps-no-update", [*DQN_ENV, "--steps", "3"], ["--train-freq 4", "--steps 3"]),
    ("nstep-above-steps", ["--nstep", "50", "--steps", "20", "--learning-starts", "0"], ["--nstep 50", "--steps 20"]),
    ("buffer-min-above-buffer-max", ["--buffer-min", "500", "--buffer-max", "100"],
     ["--buffer-min 500", "--buffer-max 100"]),
    ("buffer-min-above-buffer-size", ["--buffer-min", "5000", "--buffer-size", "1000"],
     ["--buffer-min 5000", "--buffer-size 1000"]),
    ("buffer-max-above-buffer-size", ["--buffer-max", "2000", "--buffer-size", "1000"],
     ["--buffer-max 2000", "--buffer-size 1000"]),
    ("batch-size-above-buffer-size", ["--batch-size", "300", "--buffer-size", "100"],
     ["--batch-size 300", "--buffer-size 100"]),
    ("prune-start-after-prune-end", ["--prune-start", "0.9", "--prune-end", "0.5"],
     ["--prune-start 0.9", "--prune-end 0.5"]),
    ("grad-accumulation-above-topology-delta", ["--method", "rigl", "--grad-accumulation", "20",
                                                "--topology-delta", "10"],
     ["--grad-accumulation 20", "--topology-delta 10"]),
    ("dynamic-buffer-with-dqn", [*DQN_ENV, "--dynamic-buffer"], ["--dynamic-buffer", "dqn"]),
    ("rlx2-with-dqn", [*DQN_ENV, "--method", "rlx2"], ["--dynamic-buffer", "dqn"]),
    # argparse itself
    ("unknown-flag", ["--learning-rat", "0.1"], ["--learning-rat"]),
    ("flag-without-value", ["--steps"], ["--steps", "expected one argument"]),
    ("switch-with-value", ["--tensorboard=false"], ["--tensorboard", "false"]),
    ("ambiguous-prefix", ["--buffer", "5"], ["--buffer"]),
]


@pytest.mark.parametrize("argv,needles", [c[1:] for c in CLI_BAD], ids=[c[0] for c in CLI_BAD])
def test_bad_cli_flag(argv, needles, tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory either
    out = [] if "--out" in argv else ["--out", str(tmp_path / "out")]
    _assert_rejected(["train", *argv, *out, "--no-progress", "--no-tensorboard"], needles, tmp_path)


def test_out_is_a_file_or_below_one(tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    for out, needles in ((tmp_path / "afile", ["--out", "afile", "existing file"]),
                         (tmp_path / "afile" / "run", ["--out", "afile"])):
        rc, _, stderr = _main(["train", "--out", str(out), "--steps", "50", *TINY])
        assert rc == 2
        _assert_one_line(stderr, needles)
    assert (tmp_path / "afile").read_text() == "not a directory"


# =========================================================================== YAML files
# (id, file content, needles): values as PyYAML reads them (YAML 1.1: `1e3` is a string).
YAML_BAD = [
    ("lr-text", "lr: fast\n", ["--lr", "'fast'"]),
    ("lr-nan", "lr: .nan\n", ["--lr", "nan", "not finite"]),
    ("lr-negative-exponent-string", "lr: -1e-3\n", ["--lr", "-1e-3", "> 0"]),
    ("lr-list", "lr: [0.1]\n", ["--lr", "[0.1]", "not a number"]),
    ("lr-bool", "lr: true\n", ["--lr", "True", "boolean"]),
    ("tensorboard-maybe", "tensorboard: maybe\n", ["--tensorboard", "'maybe'", "true or false"]),
    ("tensorboard-two", "tensorboard: 2\n", ["--tensorboard", "2"]),
    ("progress-one", "progress: 1\n", ["--progress", "1"]),  # checked although --no-progress overrides it
    ("double-q-text", "algo: dqn\nenv: CartPole-v1\ndouble_q: sure\n", ["--double-q", "'sure'"]),
    ("hidden-fraction", "hidden: [64.5]\n", ["--hidden", "64.5", "whole number"]),
    ("hidden-empty", "hidden: []\n", ["--hidden", "empty"]),
    ("hidden-words", "hidden: 64 64\n", ["--hidden", "'64 64'"]),
    ("hidden-mapping", "hidden: {a: 1}\n", ["--hidden", "not a list"]),
    ("hidden-negative", "hidden: [64, -1]\n", ["--hidden", "-1", "out of range"]),
    ("hidden-bool", "hidden: [true]\n", ["--hidden", "True"]),
    ("checkpoint-every-fraction", "checkpoint_every: 1.5\n", ["--checkpoint-every", "1.5", "whole number"]),
    ("learning-starts-small-exponent", "learning_starts: 1e-3\n", ["--learning-starts", "1e-3"]),
    ("steps-bool", "steps: true\n", ["--steps", "True", "boolean"]),
    ("steps-inf", "steps: .inf\n", ["--steps", "inf"]),
    ("steps-huge", "steps: 1e400\n", ["--steps", "1e400", "too large"]),
    ("steps-null", "steps: null\n", ["--steps", "needs a value"]),
    ("steps-empty", "steps:\n", ["--steps", "needs a value"]),
    ("method-null", "method: null\n", ["--method", "needs a value"]),
    ("seed-negative", "seed: -1\n", ["--seed", "-1"]),
    ("seed-too-large", "seed: 4294967296\n", ["--seed", "4294967296"]),
    ("seed-string-fraction", "seed: '1.5'\n", ["--seed", "'1.5'"]),
    ("env-kwargs-list", "env_kwargs: [1, 2]\n", ["--env-kwargs", "[1, 2]", "mapping"]),
    ("env-kwargs-string", "env_kwargs: a=1\n", ["--env-kwargs", "'a=1'"]),
    ("algo-number", "algo: 5\n", ["--algo", "5"]),
    ("algo-unknown", "algo: ppo\n", ["--algo", "'ppo'", "dqn, td3, sac"]),
    ("env-empty", "env: ''\n", ["--env", "''"]),
    ("env-number", "env: 42\n", ["--env", "42", "not a string"]),
    ("gamma-above-one", "gamma: 1.01\n", ["--gamma", "1.01"]),
    ("tau-zero-string", "tau: '0'\n", ["--tau", "'0'"]),
    ("nstep-huge-exponent", "nstep: 1e5\n", ["--nstep", "'1e5'", "[1, 100]"]),
    ("torch-threads-zero", "torch_threads: 0\n", ["--torch-threads", "0"]),
    ("device-unknown", "device: tpu\n", ["--device", "'tpu'"]),
    ("preset-unknown", "preset: nope\n", ["--preset", "'nope'", "paper"]),
    ("eps-crossed", "algo: dqn\nenv: CartPole-v1\neps_start: 0.1\neps_end: 0.2\n", ["--eps-end 0.2", "--eps-start 0.1"]),
    ("batch-above-buffer", "batch_size: 512\nbuffer_size: 256\n", ["--batch-size 512", "--buffer-size 256"]),
    ("target-update-every-zero", "algo: dqn\nenv: CartPole-v1\ntarget_update_every: 0\n",
     ["--target-update-every", "0"]),
    ("unknown-key", "algo: td3\nlearning_rat: 0.1\n", ["learning_rat"]),
    ("unknown-keys", "lr: 0.1\nfoo: 1\nbar: 2\n", ["bar", "foo"]),
    ("number-key", "1: 2\n", ["unknown key", "1"]),
    ("duplicate-key", "lr: 0.1\nsteps: 100\nlr: 0.2\n", ["duplicate key 'lr'", "line 3"]),
    ("a-list", "- algo\n- td3\n", ["must be a YAML mapping", "list"]),
    ("a-scalar", "42\n", ["must be a YAML mapping", "int"]),
    ("malformed", "algo: [td3\nsteps: 3\n", ["cannot read config"]),
    ("tab-indented", "env_kwargs:\n\tx: 1\n", ["cannot read config"]),
    ("python-tag", "steps: !!python/object/apply:os.system ['echo pwned']\n", ["cannot read config"]),
]


@pytest.mark.parametrize("text,needles", [c[1:] for c in YAML_BAD], ids=[c[0] for c in YAML_BAD])
def test_bad_yaml_file(text, needles, tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    _assert_rejected(["train", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"],
                     needles, tmp_path)


# (id, how to make the file, needles): files that are not a readable YAML mapping at all
def _non_utf8(tmp: Path) -> Path:
    (tmp / "latin1.yaml").write_bytes("lr: 0.001  # réglé\n".encode("latin-1"))
    return tmp / "latin1.yaml"


def _binary(tmp: Path) -> Path:
    (tmp / "image.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    return tmp / "image.yaml"


def _directory(tmp: Path) -> Path:
    (tmp / "adir.yaml").mkdir()
    return tmp / "adir.yaml"


def _missing(tmp: Path) -> Path:
    return tmp / "missing.yaml"


def _utf16(tmp: Path) -> Path:
    (tmp / "utf16.yaml").write_bytes("lr: 0.001\n".encode("utf-16"))
    return tmp / "utf16.yaml"


YAML_FILES_BAD = [
    ("non-utf8", _non_utf8, ["latin1.yaml", "not UTF-8", "0xe9"]),
    ("binary", _binary, ["image.yaml", "not UTF-8"]),
    ("utf16", _utf16, ["utf16.yaml", "not UTF-8"]),
    ("directory", _directory, ["adir.yaml"]),
    ("missing", _missing, ["missing.yaml", "not found"]),
]


@pytest.mark.parametrize("make,needles", [c[1:] for c in YAML_FILES_BAD], ids=[c[0] for c in YAML_FILES_BAD])
def test_unreadable_yaml_file(make, needles, tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    path = make(tmp_path)
    _assert_rejected(["train", "--config", str(path), "--out", str(tmp_path / "out")], needles, tmp_path)


def test_bad_out_in_yaml_creates_nothing(tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    for text, needles in (("out: 42\n", ["--out", "42", "not a string"]), ("out: ''\n", ["--out", "''"])):
        (tmp_path / "o.yaml").write_text(text)
        before = sorted(p.name for p in tmp_path.iterdir())
        rc, _, stderr = _main(["train", "--config", str(tmp_path / "o.yaml"), "--no-progress"])
        assert rc == 2
        _assert_one_line(stderr, needles)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


# =========================================================================== presets
PRESET_BAD = [
    ("unknown", ["--preset", "best"], ["--preset", "best", "paper, tuned"]),
    ("paper-no-entry-for-env", ["--preset", "paper", "--method", "rlx2", "--env", "Pendulum-v1", "--steps", "300"],
     ["no settings for td3 on Pendulum-v1"]),
    ("paper-no-entry-for-dqn", ["--preset", "paper", *DQN_ENV], ["no settings for dqn on CartPole-v1"]),
    ("tuned-no-entry-for-env", ["--preset", "tuned", "--algo", "dqn", "--env", "Acrobot-v1"],
     ["no settings for dqn on Acrobot-v1"]),
    ("tuned-no-entry-for-sac", ["--preset", "tuned", "--algo", "sac", "--env", "Hopper-v5"],
     ["no settings for sac on Hopper-v5"]),
    # a preset's warm-up with the default 10k steps would never update: said, not silently run
    ("paper-warmup-above-default-steps", ["--preset", "paper", "--env", "Hopper-v5"],
     ["--learning-starts 25000", "--steps 10000"]),
    ("tuned-warmup-equals-default-steps", ["--preset", "tuned", "--env", "Hopper-v5"],
     ["--learning-starts 10000", "--steps 10000"]),
    ("tuned-with-bad-override", ["--preset", "tuned", *DQN_ENV, "--lr", "-1"], ["--lr", "-1"]),
    ("tuned-override-breaks-rule", ["--preset", "tuned", *DQN_ENV, "--buffer-size", "32"],
     ["--batch-size 64", "--buffer-size 32"]),
]


@pytest.mark.parametrize("argv,needles", [c[1:] for c in PRESET_BAD], ids=[c[0] for c in PRESET_BAD])
def test_bad_preset(argv, needles, tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    _assert_rejected(["train", *argv, "--out", str(tmp_path / "out"), "--no-progress"], needles, tmp_path)


def test_preset_named_in_yaml_must_exist(tmp_path, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("preset: tuned\nalgo: dqn\nenv: MountainCar-v0\n")
    _assert_rejected(["train", "--config", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out")],
                     ["no settings for dqn on MountainCar-v0"], tmp_path)


# =========================================================================== --resume
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real 50-step TD3 run (its resume.pt is the final state)."""
    out = tmp_path_factory.mktemp("resume") / "run"
    rc, _, stderr = _main(["train", "--steps", "50", "--learning-starts", "10", "--eval-every", "0",
                           "--out", str(out), *TINY])
    assert rc == 0, stderr
    return out


def _copy_run(src: Path, dst: Path, edit=None) -> Path:
    """A copy of a run directory; ``edit(state)`` changes its resume.pt."""
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file():
            (dst / p.name).write_bytes(p.read_bytes())
    if edit is not None:
        state = checkpoint.load(dst / "resume.pt")
        edit(state)
        checkpoint.save(state, dst / "resume.pt")
    return dst


def _set_config(key, value):
    def edit(state):
        state["config"][key] = value
    return edit


def _drop(key):
    def edit(state):
        del state[key]
    return edit


def _scramble_agent(state):
    state["agent"] = {"networks": "not a state dict"}


def _resume_cases(tmp: Path, run: Path) -> dict:
    """(argv, needles) per case; directories are built under ``tmp``."""
    (tmp / "empty").mkdir()
    (tmp / "garbage").mkdir()
    (tmp / "garbage" / "resume.pt").write_bytes(b"this is not a torch file\x00\xff")
    (tmp / "png").mkdir()
    (tmp / "png" / "resume.pt").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (tmp / "a-list").mkdir()
    torch.save([1, 2, 3], tmp / "a-list" / "resume.pt")
    (tmp / "model-file").mkdir()  # checkpoint.pt (a model: config, step, agent; no buffer, no RNG)
    (tmp / "model-file" / "resume.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    (tmp / "afile").write_text("x")
    _copy_run(run, tmp / "bad-lr", _set_config("lr", -1.0))
    _copy_run(run, tmp / "bad-algo", _set_config("algo", 5))
    _copy_run(run, tmp / "unknown-key", _set_config("learning_rat", 0.1))
    _copy_run(run, tmp / "no-buffer", _drop("buffer"))
    _copy_run(run, tmp / "scrambled", _scramble_agent)
    r = str(run)
    return {
        "missing-dir": (["--resume", str(tmp / "nope")], ["--resume", "nope", "no such run directory"]),
        "empty-path": (["--resume", ""], ["--resume", "''"]),
        "a-file": (["--resume", str(tmp / "afile")], ["--resume", "afile"]),
        "dir-without-resume-pt": (["--resume", str(tmp / "empty")], ["--resume", "no resume.pt"]),
        "malformed-resume-pt": (["--resume", str(tmp / "garbage")], ["cannot read checkpoint", "resume.pt"]),
        "png-as-resume-pt": (["--resume", str(tmp / "png")], ["cannot read checkpoint", "resume.pt"]),
        "torch-list-as-resume-pt": (["--resume", str(tmp / "a-list")], ["not a sparserl resume file"]),
        "model-file-as-resume-pt": (["--resume", str(tmp / "model-file")],
                                    ["not a sparserl resume state", "missing buffer"]),
        "resume-pt-without-buffer": (["--resume", str(tmp / "no-buffer")], ["missing buffer"]),
        "resume-pt-scrambled-agent": (["--resume", str(tmp / "scrambled"), "--steps", "60"],
                                      ["cannot resume from", "resume.pt"]),
        "stored-config-bad-lr": (["--resume", str(tmp / "bad-lr"), "--steps", "60"], ["--lr", "-1.0"]),
        "stored-config-bad-algo": (["--resume", str(tmp / "bad-algo"), "--steps", "60"], ["--algo", "5"]),
        "stored-config-unknown-key": (["--resume", str(tmp / "unknown-key")], ["learning_rat"]),
        "with-lr": (["--resume", r, "--lr", "0.1"], ["--resume", "--lr"]),
        "with-algo": (["--resume", r, "--algo", "dqn"], ["--algo"]),
        "with-out": (["--resume", r, "--out", str(tmp / "elsewhere")], ["--out"]),
        "with-seed": (["--resume", r, "--seed", "3"], ["--seed"]),
        "with-method": (["--resume", r, "--method", "rigl"], ["--method"]),
        "with-config": (["--resume", r, "--config", str(tmp / "afile")], ["--config"]),
        "with-overwrite": (["--resume", r, "--overwrite"], ["--overwrite"]),
        "with-several": (["--resume", r, "--hidden", "8", "--tau", "0.5"], ["--hidden", "--tau"]),
        "steps-zero": (["--resume", r, "--steps", "0"], ["--steps", "0"]),
        "steps-below-saved": (["--resume", r, "--steps", "20"], ["--steps 20", "50"]),
        "steps-equal-finished": (["--resume", r, "--steps", "50"], ["already finished", "50"]),
        "steps-fraction": (["--resume", r, "--steps", "60.5"], ["--steps", "60.5"]),
        "device-unknown": (["--resume", r, "--device", "tpu"], ["--device", "tpu"]),
    }


RESUME_IDS = ["missing-dir", "empty-path", "a-file", "dir-without-resume-pt", "malformed-resume-pt",
              "png-as-resume-pt", "torch-list-as-resume-pt", "model-file-as-resume-pt", "resume-pt-without-buffer",
              "resume-pt-scrambled-agent", "stored-config-bad-lr", "stored-config-bad-algo",
              "stored-config-unknown-key", "with-lr", "with-algo", "with-out", "with-seed", "with-method",
              "with-config", "with-overwrite", "with-several", "steps-zero", "steps-below-saved",
              "steps-equal-finished", "steps-fraction", "device-unknown"]


@pytest.mark.parametrize("case", RESUME_IDS)
def test_bad_resume(case, finished_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = _resume_cases(tmp_path, finished_run)
    assert set(cases) == set(RESUME_IDS)
    argv, needles = cases[case]
    before = {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir()}
    rc, _, stderr = _main(["train", *argv, "--no-progress"])
    assert rc == 2, stderr
    _assert_one_line(stderr, needles)
    assert {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir()} == before, "a rejected resume wrote"
    assert not (tmp_path / "nope").exists() and not (tmp_path / "elsewhere").exists()


def test_resume_with_allowed_flags_continues(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path / "run")
    rc, _, stderr = _main(["train", "--resume", str(run), "--steps", "70", "--no-progress", "--no-tensorboard",
                           "--device", "cpu"])
    assert rc == 0, stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 70


# =========================================================================== Python API
API_BAD = [
    ("lr-negative", TD3, dict(lr=-1), ["lr=-1"]),
    ("lr-nan", TD3, dict(lr=float("nan")), ["lr=nan"]),
    ("lr-text", TD3, dict(lr="fast"), ["lr='fast'"]),
    ("tau-zero", TD3, dict(tau=0), ["tau=0"]),
    ("gamma-above-one", TD3, dict(gamma=1.5), ["gamma=1.5"]),
    ("seed-negative", TD3, dict(seed=-1), ["seed=-1"]),
    ("seed-2-to-70", TD3, dict(seed=2 ** 70), [f"seed={2 ** 70}"]),
    ("hidden-fraction", TD3, dict(hidden=[64.5]), ["hidden=[64.5]", "64.5"]),
    ("hidden-empty", TD3, dict(hidden=[]), ["hidden=[]", "empty"]),
    ("batch-size-zero", TD3, dict(batch_size=0), ["batch_size=0"]),
    ("batch-size-bool", TD3, dict(batch_size=True), ["batch_size=True"]),
    ("learning-starts-negative", TD3, dict(learning_starts=-1), ["learning_starts=-1"]),
    ("nstep-huge", TD3, dict(nstep=1000), ["nstep=1000"]),
    ("method-unknown", TD3, dict(method="sparsest"), ["method='sparsest'"]),
    ("preset-unknown", TD3, dict(preset="best"), ["preset='best'"]),
    ("unknown-option", TD3, dict(learning_rat=0.1), ["learning_rat"]),
    ("device-unknown", TD3, dict(device="tpu"), ["device='tpu'"]),
    ("env-kwargs-list", TD3, dict(env_kwargs=[1]), ["env_kwargs=[1]"]),
    ("checkpoint-every-fraction", TD3, dict(checkpoint_every=1.5), ["checkpoint_every=1.5"]),
    ("torch-threads-zero", TD3, dict(torch_threads=0), ["torch_threads=0"]),
    ("topology-stop-above-one", TD3, dict(method="rigl", topology_stop=2.0), ["topology_stop=2.0"]),
    ("autotune-text", SAC, dict(autotune="maybe"), ["autotune='maybe'"]),
    ("alpha-zero", SAC, dict(alpha=0.0), ["alpha=0.0"]),
    ("eps-end-above-one", DQN, dict(eps_end=2.0), ["eps_end=2.0"]),
    ("target-update-every-zero", DQN, dict(target_update_every=0), ["target_update_every=0"]),
    ("dynamic-buffer-dqn", DQN, dict(method="rlx2"), ["dynamic_buffer", "DQN"]),
    ("batch-above-buffer", TD3, dict(batch_size=64, buffer_size=32), ["batch_size=64", "buffer_size=32"]),
]


@pytest.mark.parametrize("cls,kwargs,needles", [c[1:] for c in API_BAD], ids=[c[0] for c in API_BAD])
def test_bad_api_option(cls, kwargs, needles):
    env = "CartPole-v1" if cls is DQN else "Pendulum-v1"
    with pytest.raises(UserError) as exc:
        cls(env, **kwargs)
    _assert_one_line(str(exc.value), needles)


API_LEARN_BAD = [
    ("warmup-above-total", dict(learning_starts=500), 100,
     ["learn(total_timesteps=100)", "learning_starts=500", "total_timesteps=100"]),
    ("nstep-above-total", dict(nstep=20, learning_starts=0), 10, ["nstep=20", "total_timesteps=10"]),
    ("zero-timesteps", {}, 0, ["total_timesteps", "0"]),
    ("fraction-timesteps", {}, 1.5, ["total_timesteps", "1.5"]),
    ("bool-timesteps", {}, True, ["total_timesteps", "True"]),
]


@pytest.mark.parametrize("kwargs,total,needles", [c[1:] for c in API_LEARN_BAD], ids=[c[0] for c in API_LEARN_BAD])
def test_bad_api_learn(kwargs, total, needles):
    model = TD3("Pendulum-v1", hidden=[8], batch_size=8, eval_every=0, eval_episodes=1, **kwargs)
    with pytest.raises(UserError) as exc:
        model.learn(total)
    _assert_one_line(str(exc.value), needles)
    assert model.trainer is None  # nothing was built


# =========================================================================== legal edge values
# (id, argv, expected resolved values): they resolve, to what the user meant.
CLI_LEGAL = [
    ("tau-one", ["--tau", "1.0"], dict(tau=1.0)),
    ("gamma-zero", ["--gamma", "0"], dict(gamma=0.0)),
    ("gamma-one", ["--gamma", "1"], dict(gamma=1.0)),
    ("nstep-one", ["--nstep", "1"], dict(nstep=1)),
    ("nstep-max", ["--nstep", "100", "--steps", "1000"], dict(nstep=100)),
    ("lr-exponent", ["--lr", "3e-4"], dict(lr=3e-4)),
    ("seed-zero", ["--seed", "0"], dict(seed=0)),
    ("seed-max", ["--seed", str(2 ** 32 - 1)], dict(seed=2 ** 32 - 1)),
    ("seed-exponent", ["--seed", "1e3"], dict(seed=1000)),
    ("steps-exponent", ["--steps", "2e3"], dict(steps=2000, learning_starts=200)),
    ("steps-one", ["--steps", "1"], dict(steps=1, learning_starts=0)),
    ("learning-starts-zero", ["--learning-starts", "0"], dict(learning_starts=0)),
    ("learning-starts-just-below-steps", ["--learning-starts", "299", "--steps", "300"], dict(learning_starts=299)),
    ("eps-zero", [*DQN_ENV, "--eps-start", "0", "--eps-end", "0"], dict(eps_start=0.0, eps_end=0.0)),
    ("eps-fraction-one", [*DQN_ENV, "--eps-fraction", "1"], dict(eps_fraction=1.0)),
    ("torch-threads-one", ["--torch-threads", "1"], dict(torch_threads=1)),
    ("checkpoint-and-eval-at-end-only", ["--checkpoint-every", "0", "--eval-every", "0"],
     dict(checkpoint_every=0, eval_every=0)),
    ("sparsity-zero", ["--actor-sparsity", "0"], dict(actor_sparsity=0.0)),
    ("topology-stop-one", ["--method", "rigl", "--topology-stop", "1"], dict(topology_stop=1.0)),
    ("target-neuron-fraction-zero", ["--target-neuron-fraction", "0"], dict(target_neuron_fraction=0.0)),
    ("prune-window-whole-run", ["--prune-start", "0", "--prune-end", "1"], dict(prune_start=0.0, prune_end=1.0)),
    ("zero-regulariser", ["--reg-lambda", "0", "--recovery-reg-scale", "0"], dict(reg_lambda=0.0)),
    ("prune-guard-zero", ["--method", "structured", "--prune-guard", "0"], dict(prune_guard=0.0)),
    ("smallest-buffer", ["--buffer-size", "1", "--batch-size", "1", "--buffer-min", "1", "--buffer-max", "1"],
     dict(buffer_size=1, batch_size=1, buffer_min=1, buffer_max=1)),
    ("buffer-min-follows-a-small-buffer", ["--method", "rlx2", "--buffer-size", "5000"],
     dict(buffer_min=5000, dynamic_buffer=True)),
    ("hidden-one", ["--hidden", "1"], dict(hidden=[1])),
    ("hidden-exponent", ["--hidden", "2.56e2", "64"], dict(hidden=[256, 64])),
    ("grad-accumulation-equals-delta", ["--method", "rigl", "--grad-accumulation", "10", "--topology-delta", "10"],
     dict(grad_accumulation=10)),
    ("alpha-tiny", ["--algo", "sac", "--alpha", "1e-8"], dict(alpha=1e-8)),
    ("device-cuda-index", ["--device", "cuda:1"], dict(device="cuda:1")),
    ("lr-underscore", ["--lr", "0.000_3"], dict(lr=3e-4)),
]


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CLI_LEGAL], ids=[c[0] for c in CLI_LEGAL])
def test_legal_edge_value_resolves(argv, expected):
    cfg = _resolve_cli(argv)
    for key, value in expected.items():
        got = getattr(cfg, key)
        assert got == value and type(got) is type(value), (key, got)


YAML_LEGAL = [
    ("lr-exponent-string", "lr: 3e-4\n", dict(lr=3e-4)),
    ("learning-starts-exponent", "learning_starts: 1e3\n", dict(learning_starts=1000)),
    ("steps-exponent", "steps: 1e4\n", dict(steps=10_000)),
    ("checkpoint-every-integral-float", "checkpoint_every: 2000.0\n", dict(checkpoint_every=2000)),
    ("tensorboard-quoted-false", "tensorboard: 'false'\n", dict(tensorboard=False)),
    ("tensorboard-off", "tensorboard: off\n", dict(tensorboard=False)),
    ("progress-quoted-yes", "progress: 'YES'\n", dict(progress=True)),
    ("hidden-integral-floats", "hidden: [64, 32.0]\n", dict(hidden=[64, 32])),
    ("hidden-scalar", "hidden: 32\n", dict(hidden=[32])),
    ("seed-quoted", "seed: '7'\n", dict(seed=7)),
    ("lr-null-is-the-default", "lr:\n", dict(lr=ALGO_DEFAULTS["td3"]["lr"])),
    ("empty-env-kwargs", "env_kwargs: {}\n", dict(env_kwargs={})),
    ("empty-file", "", dict(algo="td3")),
    ("comments-only", "# nothing\n", dict(algo="td3")),
    ("gamma-exponent", "gamma: 9.9e-1\n", dict(gamma=0.99)),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in YAML_LEGAL], ids=[c[0] for c in YAML_LEGAL])
def test_legal_yaml_value_resolves(text, expected, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    cfg = _resolve_cli(["--config", str(path)])
    for key, value in expected.items():
        got = getattr(cfg, key)
        assert got == value and type(got) is type(value), (key, got)


def test_legal_values_for_direct_config_users():
    """``resolve`` coerces as well: a ``TrainConfig`` built from YAML by hand behaves the same."""
    cfg = resolve(TrainConfig(lr="3e-4", learning_starts="1e3", tensorboard="false", hidden=["64", 32.0]))
    assert (cfg.lr, cfg.learning_starts, cfg.tensorboard, cfg.hidden) == (3e-4, 1000, False, [64, 32])
    assert resolve(TrainConfig.from_dict(yaml.safe_load("lr: 3e-4\nsteps: 1e3\n"))).steps == 1000


def test_api_checks_the_run_length_only_when_it_is_known():
    model = TD3("Pendulum-v1", learning_starts=20_000, lr="3e-4")  # fine until learn() says how long
    assert model.config.lr == 3e-4 and model.config.learning_starts == 20_000


@pytest.mark.parametrize("algo,env", [("td3", "Pendulum-v1"), ("sac", "Pendulum-v1"), ("dqn", "CartPole-v1")])
@pytest.mark.parametrize("steps", [None, 10, 100, 10_000, 50_000])
def test_default_runs_train(algo, env, steps):
    """The default warm-up never swallows a run: every default config has gradient updates."""
    cfg = resolve(TrainConfig(algo=algo, env=env, **({} if steps is None else {"steps": steps})))
    assert cfg.learning_starts < cfg.steps and update_rounds(cfg, cfg.steps) > 0
    if steps is None or steps >= 10 * ALGO_DEFAULTS[algo]["learning_starts"]:
        assert cfg.learning_starts == min(ALGO_DEFAULTS[algo]["learning_starts"], cfg.steps // 10)


def test_help_states_ranges_and_the_warmup_rule(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--steps // 10" in text and "must be below --steps" in text
    assert "in (0, 1]" in text and "in [0, 2**32-1]" in text and "None" not in text


# =========================================================================== a few real runs
def test_yaml_in_readme_style_trains(tmp_path):
    """The README's own YAML style (exponents without a dot) trains, and the stored config holds numbers."""
    path = tmp_path / "cfg.yaml"
    path.write_text("algo: td3\nsteps: 5e1\nlearning_starts: 1e1\nlr: 3e-4\ntensorboard: 'false'\n"
                    "hidden: [16.0]\nbatch_size: 8\neval_every: 0\neval_episodes: 1\n")
    out = tmp_path / "run"
    rc, _, stderr = _main(["train", "--config", str(path), "--out", str(out), "--no-progress"])
    assert rc == 0, stderr
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert (stored["steps"], stored["learning_starts"], stored["lr"], stored["hidden"]) == (50, 10, 3e-4, [16])
    assert stored["tensorboard"] is False and not (out / "tb").exists()


def test_edge_values_train(tmp_path):
    out = tmp_path / "run"
    rc, _, stderr = _main(["train", "--tau", "1.0", "--gamma", "0", "--nstep", "1", "--steps", "50",
                           "--learning-starts", "10", "--eval-every", "0", "--out", str(out), *TINY])
    assert rc == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] > 0 and math.isfinite(summary["final_eval_return"])


def test_case_count():
    """The reliability section reports these counts; keep the table at least 150 cases."""
    n_bad = len(CLI_BAD) + len(YAML_BAD) + len(YAML_FILES_BAD) + 2 + len(PRESET_BAD) + 1 + len(RESUME_IDS) \
        + len(API_BAD) + len(API_LEARN_BAD) + 2
    n_legal = len(CLI_LEGAL) + len(YAML_LEGAL)
    assert n_bad >= 150 and n_legal >= 30
