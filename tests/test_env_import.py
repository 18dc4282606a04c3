"""No code from data: an env id naming a Python module (``module:Class``) is imported only when the
caller allows it; loading a run or checkpoint that names one never imports it by itself."""
import contextlib
import io
import sys
import uuid

import pytest

from sparserl import checkpoint
from sparserl.cli import load_agent, main
from sparserl.config import TrainConfig
from sparserl.envs import make_env
from sparserl.errors import UserError

MODULE = '''
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("module code ran")

import gymnasium as gym
import numpy as np


class CraftedEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}
'''


@pytest.fixture
def crafted(tmp_path, monkeypatch):
    """A module on sys.path that writes tmp/IMPORTED when imported; yields (name, marker path)."""
    name = f"crafted_env_{uuid.uuid4().hex[:8]}"  # fresh per test: no cached import hides the marker
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / "IMPORTED"
    sys.modules.pop(name, None)


def _main(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


@pytest.mark.parametrize("suffix", [":CraftedEnv", ":Crafted-v0"])  # ours, and Gymnasium's own module:id form
def test_make_env_refuses_to_import_without_permission(crafted, suffix):
    name, marker = crafted
    with pytest.raises(UserError) as info:
        make_env(name + suffix)
    assert str(info.value) == (f"env '{name}{suffix}' names module '{name}'; pass --trust-env-module "
                               f"to import it (importing runs its code)")
    assert not marker.exists() and name not in sys.modules


def test_make_env_imports_when_allowed(crafted):
    name, marker = crafted
    env = make_env(f"{name}:CraftedEnv", seed=0, allow_import=True)
    assert marker.read_text() == "module code ran"
    assert env.observation_space.shape == (3,) and env.reset(seed=0)[0].shape == (3,)
    make_env("CartPole-v1")  # registered ids need no permission


def _run_dir(tmp_path, env_id, filename):
    """A run directory whose checkpoint / resume file names ``env_id`` (a crafted download)."""
    run = tmp_path / "downloaded_run"
    run.mkdir()
    config = TrainConfig(algo="dqn", env="CartPole-v1", steps=100, out=str(run)).to_dict()
    config["env"] = env_id
    state = {"config": config, "architecture": {"q": [16]}, "agent": {}, "step": 0}
    if filename == "resume.pt":  # every key a resume state has, so only the env id can stop it
        from sparserl.trainer import RESUME_KEYS
        state = {**{key: None for key in RESUME_KEYS}, **state}
    checkpoint.save(state, run / filename)
    return run


def test_loading_a_checkpoint_that_names_a_module_does_not_import_it(tmp_path, crafted):
    name, marker = crafted
    run = _run_dir(tmp_path, f"{name}:CraftedEnv", "checkpoint.pt")
    with pytest.raises(UserError, match="--trust-env-module"):
        load_agent(run)
    for command in (["eval", str(run), "--episodes", "1"], ["flops", str(run)]):
        rc, err = _main(command)
        assert rc == 2 and err.count("\n") == 1 and f"names module '{name}'" in err
    assert not marker.exists() and name not in sys.modules




def test_resuming_a_run_that_names_a_module_does_not_import_it(tmp_path, crafted):
    name, marker = crafted
    run = _run_dir(tmp_path, f"{name}:CraftedEnv", "resume.pt")
    rc, err = _main(["train", "--resume", str(run)])
    assert not marker.exists()
    assert rc == 2 and "--trust-env-module" in err


def test_a_config_file_that_names_a_module_does_not_import_it(tmp_path, crafted):
    name, marker = crafted
    config = tmp_path / "config.yaml"
    config.write_text(f"algo: dqn\nenv: '{name}:CraftedEnv'\nsteps: 50\nlearning_starts: 10\n")
    rc, err = _main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress",
                     "--no-tensorboard", "--hidden", "16", "--eval-episodes", "1"])
    assert not marker.exists()
    assert rc == 2 and "--trust-env-module" in err
