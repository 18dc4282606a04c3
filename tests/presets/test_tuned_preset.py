"""`--preset tuned` (issue 14): every entry loads and resolves, and the TD3 entries are exactly the
settings of the hopper100k suite's dense cells, so those runs can be shared."""
from pathlib import Path

import pytest
import yaml

from sparserl.cli import build_parser, config_from_args
from sparserl.config import TrainConfig, resolve
from sparserl.errors import UserError
from sparserl.config import load_preset

ROOT = Path(__file__).resolve().parents[2]
TUNED = yaml.safe_load((ROOT / "sparserl" / "presets" / "tuned.yaml").read_text())
ENV_OF = {"CartPole": "CartPole-v1", "LunarLander": "LunarLander-v3", "highway-fast": "highway-fast-v0",
          "Hopper": "Hopper-v5", "Walker2d": "Walker2d-v5"}


def _train_cfg(*argv) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


@pytest.mark.parametrize("key", sorted(TUNED["envs"]))
def test_every_entry_loads_and_resolves(key):
    algo, family = key.split("/")
    settings = load_preset("tuned", algo, ENV_OF[family])
    # the run must be longer than the preset's warm-up (td3: 10k steps), else nothing would train
    cfg = _train_cfg("--algo", algo, "--env", ENV_OF[family], "--preset", "tuned", "--steps", "100000")
    for name, value in settings.items():
        assert getattr(cfg, name) == value, name  # the preset reached the resolved config
    assert cfg.hidden == [256, 256]


def test_dqn_cartpole_maps_the_zoo_entry():
    cfg = _train_cfg("--algo", "dqn", "--env", "CartPole-v1", "--preset", "tuned")
    # rl-zoo: train_freq 256, gradient_steps 128, target_update_interval 10 (env steps), hard copy
    assert (cfg.train_freq, cfg.gradient_steps, cfg.target_update_every, cfg.tau) == (256, 128, 10, 1.0)
    # gradient_steps -1 in the zoo's LunarLander entry means "= train_freq"
    lunar = _train_cfg("--algo", "dqn", "--env", "LunarLander-v3", "--preset", "tuned")
    assert lunar.gradient_steps == lunar.train_freq == 4


def test_command_line_beats_the_preset():
    cfg = _train_cfg("--algo", "dqn", "--env", "CartPole-v1", "--preset", "tuned", "--lr", "0.001")
    assert cfg.lr == 0.001 and cfg.batch_size == 64


@pytest.mark.parametrize("env", ["Hopper-v5", "Walker2d-v5"])
def test_td3_entries_equal_the_hopper100k_dense_settings(env):
    suite = yaml.safe_load((ROOT / "benchmarks" / "suites" / "hopper100k.yaml").read_text())
    (dense,) = [g for g in suite["cells"] if g["method"] == ["dense"]]
    plain = resolve(TrainConfig(algo="td3", env=env, steps=suite["steps"], **suite.get("overrides", {}),
                                **dense.get("overrides", {}))).to_dict()
    tuned = _train_cfg("--algo", "td3", "--env", env, "--preset", "tuned", "--steps", str(suite["steps"])).to_dict()
    plain.pop("preset"), tuned.pop("preset")
    assert tuned == plain


def test_unknown_env_is_a_user_error():
    with pytest.raises(UserError, match="no settings for dqn on Acrobot-v1"):
        load_preset("tuned", "dqn", "Acrobot-v1")
