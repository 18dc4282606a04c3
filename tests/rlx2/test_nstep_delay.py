"""Delayed multi-step target: n = 1 for exactly ``nstep_delay`` updates, then n = nstep."""
import pytest

from sparserl.cli import build_parser, config_from_args
from sparserl.config import TrainConfig, planned_updates, resolve
from sparserl.trainer import Trainer


def tiny_cfg(tmp_path, **kw):
    base = dict(algo="td3", env="Pendulum-v1", method="dense", steps=60, learning_starts=20, hidden=[16],
                batch_size=8, eval_every=0, eval_episodes=1, checkpoint_every=0, progress=False,
                tensorboard=False, out=str(tmp_path / "run"))
    base.update(kw)
    return resolve(TrainConfig(**base))


def test_training_switches_n_exactly_at_the_delay(tmp_path):
    cfg = tiny_cfg(tmp_path, nstep=3, nstep_delay=7)
    trainer = Trainer(cfg)
    seen = []  # (updates done before this sample, n requested)
    sample = trainer.buffer.sample

    def recording_sample(batch_size, n=1, *args):
        seen.append((trainer.agent.critic_updates, n))
        return sample(batch_size, n, *args)

    trainer.buffer.sample = recording_sample
    summary = trainer.train()
    # updates at env steps 20..59 -> 40 samples; updates 0..6 (7 of them) use n = 1
    assert len(seen) == 40
    assert [u for u, _ in seen] == list(range(40))
    assert [n for _, n in seen] == [1] * 7 + [3] * 33
    assert summary["nstep_final"] == 3


def test_nstep_now_boundary(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, nstep=4, nstep_delay=5))
    trainer.agent.n_updates["critic"] = 4
    assert trainer.nstep_now() == 1     # 4 < 5 updates done: the 5th update still uses n = 1
    trainer.agent.n_updates["critic"] = 5
    assert trainer.nstep_now() == 4     # the 6th update uses n = 4


def test_rlx2_default_delay_is_ten_percent_of_planned_updates():
    # paper: 3M steps, 25k warm-up, 1 update per step -> 2,975,000 updates; 10% = 297,500
    cfg = resolve(TrainConfig(method="rlx2", steps=3_000_000, learning_starts=25_000))
    assert planned_updates(cfg) == 2_975_000 and cfg.nstep_delay == 297_500
    # train_freq 2, gradient_steps 3: (1000 - 100) // 2 * 3 = 1350 updates -> 135
    cfg = resolve(TrainConfig(method="rlx2", steps=1_000, learning_starts=100, train_freq=2, gradient_steps=3))
    assert planned_updates(cfg) == 1_350 and cfg.nstep_delay == 135
    # other methods: no delay; an explicit value wins
    assert resolve(TrainConfig(method="rigl", steps=1_000, learning_starts=100)).nstep_delay == 0
    assert resolve(TrainConfig(method="rlx2", steps=1_000, nstep_delay=5)).nstep_delay == 5


def test_cli_rlx2_defaults():
    ns = build_parser().parse_args("train --algo td3 --method rlx2 --steps 600 --learning-starts 200".split())
    cfg = config_from_args(ns)
    # (600 - 200) updates -> delay 40; rlx2 brings n = 3 and the dynamic buffer
    assert (cfg.nstep, cfg.nstep_delay, cfg.dynamic_buffer) == (3, 40, True)
