"""The Python API takes SB3's spellings where they mean the same (issue 24, item 3), and its
errors name keyword arguments, not the CLI flags an API user never typed."""
from __future__ import annotations

import contextlib
import io

import pytest

from sparserl import DQN, SAC, TD3
from sparserl.api import api_words
from sparserl.errors import UserError

TINY = dict(eval_every=0, eval_episodes=1, batch_size=16, learning_starts=20)


def _one_line(exc) -> str:
    text = str(exc.value)
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text
    return text


@pytest.mark.parametrize("sb3,ours", [
    (dict(learning_rate=1e-3), dict(lr=1e-3)),
    (dict(policy_kwargs=dict(net_arch=[32, 16])), dict(hidden=[32, 16])),
    (dict(policy_kwargs=dict(net_arch=dict(pi=[24], qf=[24]))), dict(hidden=[24])),
    (dict(target_policy_noise=0.3, target_noise_clip=0.4), dict(policy_noise=0.3, noise_clip=0.4)),
    (dict(train_freq=(2, "step")), dict(train_freq=2)),
])
def test_sb3_keywords_resolve_like_ours(sb3, ours):
    assert TD3("Pendulum-v1", **sb3).config.to_dict() == TD3("Pendulum-v1", **ours).config.to_dict()


def test_dqn_and_sac_spellings():
    sb3 = DQN("CartPole-v1", target_update_interval=250, exploration_fraction=0.2, exploration_initial_eps=0.9,
              exploration_final_eps=0.1).config
    ours = DQN("CartPole-v1", target_update_every=250, eps_fraction=0.2, eps_start=0.9, eps_end=0.1).config
    assert sb3.to_dict() == ours.to_dict()
    auto = SAC("Pendulum-v1", ent_coef="auto_0.3").config
    assert auto.autotune is True and auto.alpha == 0.3
    fixed = SAC("Pendulum-v1", ent_coef=0.05).config
    assert fixed.autotune is False and fixed.alpha == 0.05


def test_a_leading_mlp_policy_is_accepted():
    sb3 = TD3("MlpPolicy", "Pendulum-v1", method="rigl", seed=3)
    assert sb3.config.to_dict() == TD3("Pendulum-v1", method="rigl", seed=3).config.to_dict()
    assert TD3("MlpPolicy", "Pendulum-v1", "static").config.method == "static"
    keywords = TD3(policy="MlpPolicy", env="Pendulum-v1", seed=3).config  # SB3's keyword spelling
    assert keywords.to_dict() == TD3("Pendulum-v1", seed=3).config.to_dict()


@pytest.mark.parametrize("call,needles", [
    (lambda: TD3("MlpPolicy"), ["TD3('MlpPolicy', 'Pendulum-v1')"]),
    (lambda: TD3("CnnPolicy", "Pendulum-v1"), ["CnnPolicy", "MlpPolicy"]),
    (lambda: TD3(policy="MultiInputPolicy", env="Pendulum-v1"), ["policy='MultiInputPolicy'", "MlpPolicy"]),
    (lambda: TD3("Pendulum-v1", "MlpPolicy"), ["policy name comes first"]),
    (lambda: TD3("Pendulum-v1", "rigl", "set"), ["positional"]),
    (lambda: TD3("Pendulum-v1", learning_rate=-1), ["learning_rate=-1", "> 0"]),
    (lambda: TD3("Pendulum-v1", learning_rate=1e-3, lr=1e-3), ["learning_rate=", "lr="]),
    (lambda: TD3("Pendulum-v1", learning_rate=lambda p: p * 1e-3), ["learning_rate=", "schedules"]),
    (lambda: TD3("Pendulum-v1", policy_kwargs=dict(activation_fn=None)), ["activation_fn", "net_arch"]),
    (lambda: TD3("Pendulum-v1", policy_kwargs=dict(net_arch=dict(pi=[8], qf=[16]))), ["net_arch", "same hidden"]),
    (lambda: TD3("Pendulum-v1", verbose=3), ["verbose=3", "0"]),
    (lambda: SAC("Pendulum-v1", ent_coef="much"), ["ent_coef='much'", "auto"]),
    (lambda: DQN("CartPole-v1", train_freq=(1, "episode")), ["train_freq", "'step'"]),
    (lambda: TD3("Pendulum-v1", learning_rat=0.1), ["learning_rat", "did you mean learning_rate"]),
])
def test_sb3_misuse_is_one_line(call, needles):
    with pytest.raises(UserError) as exc:
        call()
    text = _one_line(exc)
    for needle in needles:
        assert needle in text, (needle, text)


@pytest.mark.parametrize("call,keywords", [
    (lambda: TD3("Pendulum-v1", actor_sparsity=1.0), ["actor_sparsity=1.0"]),
    (lambda: TD3("Pendulum-v1", method="sparsest"), ["method='sparsest'"]),
    (lambda: TD3("Pendulum-v1", batch_size=64, buffer_size=32), ["batch_size=64", "buffer_size=32"]),
    (lambda: DQN("CartPole-v1", method="rlx2"), ["dynamic_buffer", "DQN"]),
    (lambda: TD3("Pendulum-v1", hidden=[8], learning_starts=500).learn(100),
     ["learning_starts=500", "total_timesteps=100"]),
])
def test_api_errors_name_keywords_not_flags(call, keywords):
    with pytest.raises(UserError) as exc:
        call()
    text = _one_line(exc)
    assert "--" not in text, text
    for keyword in keywords:
        assert keyword in text, (keyword, text)


def test_api_words_leaves_other_text_alone():
    assert api_words("--lr -1: out of range") == "lr=-1: out of range"
    assert api_words("--no-dynamic-buffer given") == "dynamic_buffer=False given"
    assert api_words("a --not-an-option here") == "a --not-an-option here"


def test_verbose_prints_one_line_per_evaluation_and_zero_nothing():
    for verbose, expected in ((1, 2), (0, 0)):
        model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), verbose=verbose,
                    **{**TINY, "eval_every": 30})
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            model.learn(60)
        assert sum(line.startswith("step ") for line in out.getvalue().splitlines()) == expected


def test_tensorboard_log_writes_events_in_sb3s_layout(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    for _ in range(2):  # a second model gets the next number, as in SB3
        TD3("Pendulum-v1", hidden=[8], tensorboard_log=tmp_path, **{**TINY, "eval_every": 30}).learn(60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TD3_1", "TD3_2"]
    events = EventAccumulator(str(tmp_path / "TD3_1"))
    events.Reload()
    assert "eval/return" in events.Tags()["scalars"]
    SAC("Pendulum-v1", hidden=[8], tensorboard_log=tmp_path, **{**TINY, "eval_every": 30}).learn(60,
                                                                                                   tb_log_name="mine")
    assert (tmp_path / "mine_1").is_dir()
