"""Fault checks: non-finite observations, rewards, losses and parameters, and exceptions inside the
environment, each one line naming what and when; a poisoned state is never checkpointed."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from sparserl import checkpoint
from sparserl.errors import UserError
from sparserl.faults import (EnvStepError, NonFiniteError, RunFault, assert_finite_state, check_finite_losses,
                             check_finite_module, check_finite_transition, checked_env_reset, checked_env_step,
                             env_step)


def _one_line(info):
    message = str(info.value)
    assert "\n" not in message
    return message


# --- transitions -----------------------------------------------------------------------------

OBS = np.array([0.1, -0.2, 0.3], dtype=np.float32)


@pytest.mark.parametrize("obs, reward, next_obs, named", [
    (OBS, float("nan"), OBS, r"non-finite reward \(nan\) at env step 7"),
    (OBS, np.float32("inf"), OBS, r"non-finite reward \(inf\) at env step 7"),
    (np.array([0.0, np.nan, 1.0]), 1.0, OBS, r"non-finite observation \(nan at index 1\) at env step 7"),
    (OBS, 1.0, np.array([[0.0, 1.0], [-np.inf, 2.0]]), r"non-finite next observation \(-inf at index \(1, 0\)\)"),
])
def test_non_finite_transition_is_named_with_its_step(obs, reward, next_obs, named):
    with pytest.raises(NonFiniteError, match=named) as info:
        check_finite_transition(obs, reward, next_obs, step=7)
    assert "last checkpoint is intact" in _one_line(info)
    assert isinstance(info.value, UserError)  # the CLI prints it as one line, exit 2


def test_finite_and_integer_transitions_pass():
    check_finite_transition(OBS, 1.5, OBS * 2, step=0)
    check_finite_transition(np.array([3, 4], dtype=np.int64), np.int64(1), np.array([4, 5]), step=1)
    check_finite_transition(np.float64(0.5), 0, np.float64(-0.5), step=2)  # scalar observations


def test_non_finite_losses_are_named_and_other_logs_ignored():
    check_finite_losses({"losses/critic": 0.5, "charts/alpha": 0.2, "note": "text"}, update=3)
    with pytest.raises(NonFiniteError, match=r"non-finite losses/actor \(nan\) at gradient step 12") as info:
        check_finite_losses({"losses/critic": 0.5, "losses/actor": float("nan")}, update=12)
    _one_line(info)


# --- parameters before a checkpoint ----------------------------------------------------------

def _nets():
    torch.manual_seed(0)
    return {"actor": nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)),
            "critic": nn.Sequential(nn.Linear(5, 1))}


def test_check_finite_module_names_bad_parameters_and_buffers():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert check_finite_module(net, "actor") == []
    with torch.no_grad():
        net[0].bias[2] = float("inf")
        net[1].running_mean[0] = float("nan")
    assert check_finite_module(net, "actor") == ["actor.0.bias", "actor.1.running_mean"]


def test_assert_finite_state_covers_networks_and_optimizer_moments():
    nets = _nets()
    optimizers = {name: torch.optim.Adam(net.parameters()) for name, net in nets.items()}
    for name, net in nets.items():
        net(torch.ones(1, net[0].in_features)).sum().backward()
        optimizers[name].step()
    assert_finite_state(nets, step=10, optimizers=optimizers)  # all finite: no error
    optimizers["critic"].state[next(iter(optimizers["critic"].state))]["exp_avg_sq"].fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"critic optimizer state\[0\]\.exp_avg_sq at env step 10"):
        assert_finite_state(nets, step=10, optimizers=optimizers)


def test_a_poisoned_state_never_replaces_the_last_good_checkpoint(tmp_path):
    """The usage the trainer follows: assert_finite_state, then write."""
    nets = _nets()
    path = tmp_path / "resume.pt"

    def save_checkpoint(step):
        assert_finite_state(nets, step)
        checkpoint.save({"step": step, "networks": {k: v.state_dict() for k, v in nets.items()}}, path)

    save_checkpoint(100)
    good = path.read_bytes()
    with torch.no_grad():
        for p in nets["actor"].parameters():
            p.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"actor\.0\.weight, actor\.0\.bias, actor\.2\.weight and 1 more"
                                             r" at env step 200; no checkpoint written") as info:
        save_checkpoint(200)
    _one_line(info)
    assert path.read_bytes() == good
    assert all(torch.isfinite(t).all() for t in checkpoint.load(path)["networks"]["actor"].values())


# --- exceptions inside the environment -------------------------------------------------------

class FaultyEnv(gym.Env):
    """A small discrete-action env that misbehaves from its ``at``-th step on (counted over its
    lifetime): ``fault`` is "nan_reward", "nan_obs", "raise" or "raise_once" (only the first
    instance of a process raises, so a resumed run gets past it)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)
    raised = False

    def __init__(self, fault="nan_reward", at=150):
        self.fault, self.at, self.t = fault, at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        reward = float(action) - 0.5
        if self.t >= self.at:
            if self.fault == "nan_reward":
                reward = float("nan")
            elif self.fault == "nan_obs":
                obs[1] = np.nan
            elif self.fault == "raise" or (self.fault == "raise_once" and not FaultyEnv.raised):
                FaultyEnv.raised = True
                raise RuntimeError("simulator diverged\nlong details")
        return obs, reward, False, False, {}


def test_env_exception_becomes_one_line_with_the_step():
    env = FaultyEnv("raise", at=1)
    env.reset(seed=0)
    with pytest.raises(EnvStepError, match=r"step raised RuntimeError: simulator diverged at env step 41") as info:
        env_step(env, 0, step=41)
    assert isinstance(info.value, RunFault) and isinstance(info.value.__cause__, RuntimeError)
    _one_line(info)


def test_keyboard_interrupt_inside_step_is_not_swallowed():
    class Interrupted(FaultyEnv):
        def step(self, action):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        env_step(Interrupted(), 0, step=0)


def test_checked_step_and_reset():
    env = FaultyEnv("nan_obs", at=3)
    obs, _ = checked_env_reset(env, step=0, seed=1)
    assert np.isfinite(obs).all()
    for step in range(2):
        next_obs, reward, *_ = checked_env_step(env, 1, step)
        assert np.isfinite(next_obs).all() and math.isfinite(reward)
    with pytest.raises(NonFiniteError, match=r"non-finite observation \(nan at index 1\) at env step 2"):
        checked_env_step(env, 1, 2)


# --- the trainer (integration points: see the report; these pass once the trainer calls faults) ---



@pytest.fixture
def faulty_env_id():
    env_id = "SparserlFaulty-v0"
    gym.register(env_id, entry_point=FaultyEnv, max_episode_steps=50)
    FaultyEnv.raised = False
    yield env_id
    gym.registry.pop(env_id, None)


def _cfg(out, env_id, fault):
    from sparserl.config import TrainConfig, resolve
    return resolve(TrainConfig(algo="dqn", env=env_id, steps=200, seed=0, out=str(out), eval_every=0,
                               eval_episodes=1, checkpoint_every=100, progress=False, tensorboard=False,
                               hidden=[16], batch_size=16, learning_starts=20, train_freq=1,
                               target_update_every=50, torch_threads=1))


@pytest.mark.parametrize("fault", ["nan_reward", "nan_obs"])
def test_trainer_stops_on_non_finite_env_output_with_the_last_checkpoint_intact(tmp_path, faulty_env_id,
                                                                                monkeypatch, fault):
    from sparserl.trainer import Trainer

    monkeypatch.setattr(FaultyEnv.__init__, "__defaults__", (fault, 150))
    with pytest.raises(NonFiniteError, match="at env step 149"):
        Trainer(_cfg(tmp_path, faulty_env_id, fault)).train()
    state = checkpoint.load(tmp_path / "resume.pt")
    assert state["step"] == 100
    for net in state["agent"]["networks"].values():
        assert all(torch.isfinite(t).all() for t in net.values() if t.is_floating_point())
    assert not (tmp_path / "summary.json").exists()


def test_trainer_reports_an_env_exception_and_the_run_resumes_from_its_checkpoint(tmp_path, faulty_env_id,
                                                                                  monkeypatch):
    from sparserl.rundir import RunState, finish_state
    from sparserl.trainer import Trainer

    monkeypatch.setattr(FaultyEnv.__init__, "__defaults__", ("raise_once", 150))
    cfg = _cfg(tmp_path, faulty_env_id, "raise_once")
    with pytest.raises(EnvStepError, match="simulator diverged at env step 149"):
        Trainer(cfg).train()
    assert finish_state(tmp_path).state is RunState.IN_PROGRESS
    Trainer(cfg, resume_state=checkpoint.load(tmp_path / "resume.pt")).train()
    assert finish_state(tmp_path).state is RunState.COMPLETE


# --- env faults through `sparserl train`, one line each (issue 27.13, 27.11) -----------------

class MisbehavingEnv(gym.Env):
    """One misbehaviour per ``fault``, chosen with ``--env-kwargs``; ``action`` picks the action
    space (``int-box`` and ``matrix-box`` are refused for TD3 before any step). The evaluation
    env is the one reset with seed 10000 (the trainer's ``seed + 10_000`` for ``--seed 0``)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    ACTIONS = {"discrete": gym.spaces.Discrete(2), "int-box": gym.spaces.Box(-3, 3, (2,), np.int64),
               "matrix-box": gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32)}

    def __init__(self, fault="none", action="discrete"):
        if fault == "init":
            raise RuntimeError("cannot open the simulator\nsecond line")
        self.fault, self.t, self.is_eval = fault, 0, False
        self.action_space = self.ACTIONS[action]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.is_eval = self.is_eval or seed == 10_000
        if self.fault == "eval-reset" and self.is_eval:
            raise OSError("display :0 not found")
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = self.np_random.uniform(-1, 1, 3).astype(np.float32), 1.0
        if self.t >= 5 and not self.is_eval:
            if self.fault == "obs-shape":
                obs = np.zeros(4, np.float32)
            elif self.fault == "none-reward":
                reward = None
            elif self.fault == "array-reward":
                reward = np.array([1.0, 2.0])
            elif self.fault == "four-tuple":
                return obs, reward, False, {}
        if self.fault == "eval-step" and self.is_eval:
            raise ValueError("mesh collision\ndetails")
        return obs, reward, False, self.t % 20 == 0, {}


ENV_FAULTS = [  # (id, algo, env kwargs, needles of the one line)
    ("init-raises", "dqn", "{fault: init}", ["creating the environment raised RuntimeError: cannot open the simulator"]),
    ("eval-env-first-reset-raises", "dqn", "{fault: eval-reset}",
     ["the evaluation env's reset raised OSError: display :0 not found"]),
    ("obs-wrong-shape", "dqn", "{fault: obs-shape}", ["observation of shape (4,)", "observation_space says (3,)",
                                                       "env step 4"]),
    ("reward-none", "dqn", "{fault: none-reward}", ["reward None", "one real number", "env step 4"]),
    ("reward-array", "dqn", "{fault: array-reward}", ["reward array([1., 2.])", "shape (2,)"]),
    ("step-four-tuple", "dqn", "{fault: four-tuple}", ["step raised ValueError: not enough values to unpack", "env step 4"]),
    ("exception-during-evaluation", "dqn", "{fault: eval-step}",
     ["the evaluation env's step raised ValueError: mesh collision", "env step 60"]),
    ("td3-int64-box", "td3", "{action: int-box}", ["continuous actions must be floating point", "int64"]),
    ("td3-matrix-box", "td3", "{action: matrix-box}", ["1-D Box", "(2, 2)", "vector of 4"]),
    ("sac-int64-box", "sac", "{action: int-box}", ["floating point", "int64"]),
]


@pytest.fixture
def misbehaving_env_id():
    env_id = "SparserlMisbehaving-v0"
    gym.register(env_id, entry_point=MisbehavingEnv, max_episode_steps=200)
    yield env_id
    gym.registry.pop(env_id, None)


@pytest.mark.parametrize("algo,kwargs,needles", [c[1:] for c in ENV_FAULTS], ids=[c[0] for c in ENV_FAULTS])
def test_env_fault_is_one_line(algo, kwargs, needles, misbehaving_env_id, tmp_path, capsys):
    from sparserl.cli import main

    rc = main(["train", "--algo", algo, "--env", misbehaving_env_id, "--env-kwargs", kwargs, "--steps", "60",
               "--learning-starts", "10", "--eval-every", "0", "--eval-episodes", "1", "--hidden", "8",
               "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress", "--no-tensorboard"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
