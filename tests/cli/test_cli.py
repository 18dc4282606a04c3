"""`sparserl` CLI end to end on a tiny budget, and one-line errors (exit 2) for every bad input."""
import contextlib
import io
import json
import math
import subprocess
import sys

import pytest
import torch
import yaml
from torch import nn

from sparserl import checkpoint
from sparserl.cli import load_agent, main
from sparserl.config import TrainConfig

TINY_TD3 = ["--algo", "td3", "--env", "Pendulum-v1", "--steps", "300", "--seed", "2",
            "--learning-starts", "100", "--eval-every", "150", "--eval-episodes", "2",
            "--hidden", "64", "64", "--batch-size", "32", "--no-progress"]
SUMMARY_KEYS = {"algo", "env", "seed", "steps", "final_eval_return", "best_eval_return", "wall_time_s",
                "updates_per_s", "params"}


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run_main(argv):
    """main() with stdout/stderr captured (usable from module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny TD3 run through the CLI, TensorBoard on (shared by the read-only tests)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    rc, stdout, stderr = _run_main(["train", *TINY_TD3, "--out", str(out)])
    assert rc == 0, stderr
    return out, stdout


# --- train: the output contract ------------------------------------------------------------

def test_train_writes_the_documented_outputs(run_dir):
    out, stdout = run_dir
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoint.pt", "learning_curve.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert (summary["algo"], summary["env"], summary["seed"], summary["steps"]) == ("td3", "Pendulum-v1", 2, 300)
    assert math.isfinite(summary["final_eval_return"]) and math.isfinite(summary["best_eval_return"])
    # Pendulum's reward -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) lies in [-16.28, 0] per step, 200 steps
    # an episode: an evaluation summing the wrong thing or cutting episodes short leaves this range
    for key in ("final_eval_return", "best_eval_return"):
        assert -200 * 16.28 <= summary[key] <= 0, (key, summary[key])
    assert summary["wall_time_s"] > 0 and summary["updates_per_s"] > 0
    # params: one block per network, counting the Linear weights of the saved networks (dense run).
    _, agent, _ = load_agent(out)
    assert set(summary["params"]) == set(agent.networks) == {"actor", "critic"}
    for name, net in agent.networks.items():
        weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear))
        assert summary["params"][name]["total"] == weights
        assert summary["params"][name]["nonzero"] == weights

    # metrics.csv: one row per evaluation, and the last one is the final return.
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"step", "eval_return", "sps", "updates_per_s"} <= set(header)
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert [int(r["step"]) for r in rows] == [150, 300]
    assert float(rows[-1]["eval_return"]) == pytest.approx(summary["final_eval_return"])
    assert max(float(r["eval_return"]) for r in rows) == pytest.approx(summary["best_eval_return"])

    # config.yaml is the full resolved config.
    data = yaml.safe_load((out / "config.yaml").read_text())
    cfg = TrainConfig.from_dict(data)
    assert (cfg.algo, cfg.env, cfg.steps, cfg.hidden, cfg.batch_size, cfg.learning_starts) == \
        ("td3", "Pendulum-v1", 300, [64, 64], 32, 100)
    assert None not in (cfg.lr, cfg.tau, cfg.buffer_size, cfg.train_freq, cfg.policy_delay)

    # stdout says where things are and the final return.
    assert f"final eval return: {summary['final_eval_return']:.2f}" in stdout
    assert str(out / "checkpoint.pt") in stdout


def test_config_file_rerun_reproduces_the_run(run_dir, tmp_path):
    out, _ = run_dir
    again = tmp_path / "again"
    rc, _, stderr = _run_main(["train", "--config", str(out / "config.yaml"), "--out", str(again),
                               "--no-tensorboard"])
    assert rc == 0, stderr
    first = json.loads((out / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    for key in ("algo", "env", "seed", "steps", "params", "final_eval_return", "best_eval_return", "updates"):
        assert first[key] == second[key], key
    a, b = checkpoint.load(out / "checkpoint.pt"), checkpoint.load(again / "checkpoint.pt")
    for net, sd in a["agent"]["networks"].items():
        for k, t in sd.items():
            assert torch.equal(t, b["agent"]["networks"][net][k]), f"{net}.{k}"
    # The re-run's own config.yaml equals the original one except for the output directory.
    c1, c2 = (yaml.safe_load((d / "config.yaml").read_text()) for d in (out, again))
    assert c2.pop("out") == str(again) and c1.pop("out") == str(out)
    assert {k: v for k, v in c1.items() if k != "tensorboard"} == {k: v for k, v in c2.items() if k != "tensorboard"}


def test_eval_prints_mean_and_std(run_dir):
    out, _ = run_dir
    rc, stdout, _ = _run_main(["eval", str(out), "--episodes", "2"])
    assert rc == 0
    line = stdout.strip().splitlines()[-1]
    assert "td3" in line and "Pendulum-v1" in line and "over 2 episodes" in line
    mean_txt, std_txt = line.split("return ")[1].split(" over")[0].split(" ± ")
    assert math.isfinite(float(mean_txt)) and float(std_txt) >= 0


def test_flops_prints_a_table(run_dir):
    out, _ = run_dir
    rc, stdout, _ = _run_main(["flops", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "== actor" in stdout and "== critic" in stdout
    assert "weights_total" in stdout and "flops_dense" in stdout
    # The table's total weight rows match summary.json's params.
    totals = [line.split() for line in stdout.splitlines() if line.startswith("total")]
    assert [int(t[3].replace(",", "")) for t in totals] == [summary["params"]["actor"]["total"],
                                                            summary["params"]["critic"]["total"]]
    assert "training FLOPs" in stdout


def test_env_given_as_module_path_and_class(tmp_path):
    out = tmp_path / "run"
    rc, _, stderr = _run_main(["train", "--algo", "dqn", "--env", "gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                               "--steps", "120", "--learning-starts", "60", "--eval-every", "0", "--eval-episodes", "1",
                               "--hidden", "16", "--batch-size", "16", "--no-progress", "--no-tensorboard",
                               "--out", str(out)])
    assert rc == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "gymnasium.envs.classic_control.cartpole:CartPoleEnv" and summary["updates"] > 0
    # the stored checkpoint (its env id a module:Class path) evaluates to the run's final return: the
    # one evaluation (--eval-every 0) ran on the eval env reset with seed + 10000, as here
    from sparserl.evaluation import evaluate
    _, agent, env = load_agent(out, trust_env_module=True)
    env.reset(seed=summary["seed"] + 10_000)
    assert evaluate(agent, env, 1).mean == summary["final_eval_return"]


def test_train_help_works(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--batch-size" in out and "--nstep-delay" in out


# --- bad input: exit 2 and a one-line error naming the value --------------------------------

def _write(path, text):
    path.write_text(text)
    return str(path)


def _bad_inputs(tmp):
    """(argv, substrings the one-line error must contain)."""
    out = ["--out", str(tmp / "out"), "--no-progress", "--no-tensorboard"]
    (tmp / "empty_run").mkdir()
    (tmp / "corrupt").mkdir()
    (tmp / "corrupt" / "checkpoint.pt").write_bytes(b"this is not a torch checkpoint\x00\xff")
    return {
        "unknown-algo": (["train", "--algo", "ppo", *out], ["ppo", "dqn", "td3", "sac"]),
        "unknown-env": (["train", "--algo", "td3", "--env", "NoSuchEnv-v7", *out], ["NoSuchEnv-v7"]),
        "unknown-env-class": (["train", "--algo", "td3", "--env", "no_such_module:Env", *out],
                              ["no_such_module:Env"]),
        "env-not-an-env-class": (["train", "--algo", "dqn", "--env", "collections:OrderedDict", *out],
                                 ["collections:OrderedDict"]),
        "env-not-a-class": (["train", "--algo", "dqn", "--env", "os:path", *out], ["os:path"]),
        "td3-on-discrete": (["train", "--algo", "td3", "--env", "CartPole-v1", *out], ["td3", "CartPole-v1"]),
        "sac-on-discrete": (["train", "--algo", "sac", "--env", "CartPole-v1", *out], ["sac", "CartPole-v1"]),
        "dqn-on-continuous": (["train", "--algo", "dqn", "--env", "Pendulum-v1", *out], ["dqn", "Pendulum-v1"]),
        "zero-steps": (["train", "--steps", "0", *out], ["--steps", "0"]),
        "negative-steps": (["train", "--steps", "-5", *out], ["--steps", "-5"]),
        "non-integer-steps": (["train", "--steps", "many", *out], ["--steps", "many"]),
        "missing-config": (["train", "--config", str(tmp / "nope.yaml"), *out], ["nope.yaml"]),
        "unreadable-config": (["train", "--config", str(tmp), *out], [str(tmp)]),
        "malformed-config": (["train", "--config", _write(tmp / "bad.yaml", "algo: [td3\nsteps: 3\n"), *out],
                             ["bad.yaml"]),
        "non-mapping-config": (["train", "--config", _write(tmp / "list.yaml", "- td3\n- 5\n"), *out],
                               ["list.yaml"]),
        "unknown-config-key": (["train", "--config", _write(tmp / "key.yaml", "algo: td3\nlearning_rat: 0.1\n"),
                                *out], ["learning_rat"]),
        "config-bad-method": (["train", "--config", _write(tmp / "m.yaml", "method: sparsest\n"), *out],
                              ["sparsest"]),
        "eval-missing-dir": (["eval", str(tmp / "no_such_run")], [str(tmp / "no_such_run")]),
        "eval-dir-without-checkpoint": (["eval", str(tmp / "empty_run")], ["checkpoint.pt"]),
        "eval-corrupt-checkpoint": (["eval", str(tmp / "corrupt")], [str(tmp / "corrupt" / "checkpoint.pt")]),
        "flops-corrupt-checkpoint": (["flops", str(tmp / "corrupt")], ["checkpoint"]),
        "eval-zero-episodes": (["eval", str(tmp / "corrupt"), "--episodes", "0"], ["--episodes", "0"]),
        "sparsity-one": (["train", "--actor-sparsity", "1.0", *out], ["--actor-sparsity", "1.0"]),
        "sparsity-negative": (["train", "--algo", "dqn", "--env", "CartPole-v1", "--q-sparsity", "-0.1", *out],
                              ["--q-sparsity", "-0.1"]),
        "sparsity-above-one": (["train", "--critic-sparsity", "1.5", *out], ["--critic-sparsity", "1.5"]),
        "unknown-method": (["train", "--method", "sparsest", *out], ["sparsest", "rigl"]),
        "unknown-allocation": (["train", "--allocation", "random-ish", *out], ["random-ish", "erk"]),
        "unknown-flag": (["train", "--learning-rat", "0.1", *out], ["--learning-rat"]),
    }


BAD_INPUT_IDS = [
    "unknown-algo", "unknown-env", "unknown-env-class", "env-not-an-env-class", "env-not-a-class",
    "td3-on-discrete", "sac-on-discrete",
    "dqn-on-continuous", "zero-steps", "negative-steps", "non-integer-steps", "missing-config",
    "unreadable-config", "malformed-config", "non-mapping-config", "unknown-config-key", "config-bad-method",
    "eval-missing-dir", "eval-dir-without-checkpoint", "eval-corrupt-checkpoint", "flops-corrupt-checkpoint",
    "eval-zero-episodes", "sparsity-one", "sparsity-negative", "sparsity-above-one", "unknown-method",
    "unknown-allocation", "unknown-flag"]


@pytest.mark.parametrize("case", BAD_INPUT_IDS)
def test_bad_input_gives_exit_2_and_one_line_error(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory either
    cases = _bad_inputs(tmp_path)
    assert set(cases) == set(BAD_INPUT_IDS)
    argv, needles = cases[case]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {captured.err!r}"
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in {lines[0]!r}"
    assert not (tmp_path / "out").exists(), "a rejected run must not create its output directory"


def test_corrupt_truncated_checkpoint_is_a_one_line_error(run_dir, tmp_path, capsys):
    out, _ = run_dir
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (out / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # a write cut short
    assert main(["eval", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read checkpoint" in err[0] and str(broken) in err[0]


def test_console_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sparserl", "train", "--algo", "dqn", "--env", "Pendulum-v1",
                           "--out", str(tmp_path / "o"), "--no-progress", "--no-tensorboard"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "Pendulum-v1" in proc.stderr
