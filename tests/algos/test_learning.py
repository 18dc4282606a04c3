"""Learning sanity: each algorithm clearly beats a random policy within a small, fixed budget.

These runs are seeded and run on CPU with one torch thread, so they are deterministic on a
given platform; the thresholds leave a wide margin to the returns measured when the budgets
were chosen (noted next to each threshold), so BLAS/platform differences that change the
exact trajectory do not make them flaky.  No wall-clock assertions.

Which return is checked:
* Pendulum (TD3, SAC): ``final_eval_return`` -- the policy the run delivers.  Pendulum learning
  is close to monotone once it takes off, so the final policy is a fair, strict test.
* CartPole (DQN): ``best_eval_return`` -- DQN on CartPole is known to oscillate (the greedy
  policy's return swings between ~150 and 500 from one evaluation to the next, even when it
  has clearly learned), so the best evaluation says whether it learned; a weaker bound on the
  final return additionally guards against a collapse at the end.
"""
import csv

import pytest

from sparserl.trainer import Trainer

from algo_helpers import tiny_config

pytestmark = pytest.mark.slow

# Pendulum-v1: a random / untrained policy scores about -1200 to -1600 per episode (the first
# evaluations of every run below), a swung-up and balanced pendulum about -150.
PENDULUM_THRESHOLD = -400.0
# CartPole-v1: a random policy lasts about 22 steps; 195 is the classic "solved" bar of CartPole-v0.
CARTPOLE_BEST_THRESHOLD = 195.0
CARTPOLE_FINAL_THRESHOLD = 100.0   # final greedy policy still far above random (no collapse)


def _curve(out):
    with open(out / "metrics.csv", newline="") as fh:
        return [(int(r["step"]), round(float(r["eval_return"]), 1)) for r in csv.DictReader(fh)]


def _train(algo, out, **kw):
    cfg = tiny_config(algo, out, **kw)
    summary = Trainer(cfg).train()
    return summary, _curve(out)


# Measured when chosen (seed 0, 2-core CPU, torch 2.13): final -75 (evals at 5k..8k: -817/-238/-380/-75);
# -82 with the reference-FLOPs RNG fix applied (-820/-238/-233/-82).
# Seeds 1 and 2 (same settings): final -99 and -123.
def test_td3_learns_pendulum(tmp_path):
    summary, curve = _train("td3", tmp_path, env="Pendulum-v1", steps=8_000, learning_starts=1_000,
                            lr=1e-3, batch_size=256, eval_every=1_000, eval_episodes=5)
    assert curve[0][1] < PENDULUM_THRESHOLD, f"the threshold must be above an untrained policy: {curve}"
    assert summary["final_eval_return"] > PENDULUM_THRESHOLD, f"TD3 did not learn Pendulum: {curve}"


# Measured when chosen (seed 0, 2-core CPU, torch 2.13): final -127 (evals at 4k/5k/6k: -131/-143/-127).
def test_sac_learns_pendulum(tmp_path):
    summary, curve = _train("sac", tmp_path, env="Pendulum-v1", steps=6_000, learning_starts=1_000,
                            lr=1e-3, batch_size=256, eval_every=1_000, eval_episodes=5)
    assert curve[0][1] < PENDULUM_THRESHOLD, f"the threshold must be above an untrained policy: {curve}"
    assert summary["final_eval_return"] > PENDULUM_THRESHOLD, f"SAC did not learn Pendulum: {curve}"


# Measured when chosen (2-core CPU, torch 2.13): seed 0 best 351, final 191 (every evaluation from 4k on
# >= 155); seeds 1 and 2 gave best 242 / 465 and final 135 / 152 with the same settings.
def test_dqn_learns_cartpole(tmp_path):
    summary, curve = _train("dqn", tmp_path, env="CartPole-v1", steps=15_000, learning_starts=1_000,
                            hidden=[128, 128], lr=1e-3, batch_size=64, train_freq=4, target_update_every=250,
                            eps_fraction=0.2, eval_every=1_000, eval_episodes=5)
    assert summary["best_eval_return"] >= CARTPOLE_BEST_THRESHOLD, f"DQN did not learn CartPole: {curve}"
    assert summary["final_eval_return"] >= CARTPOLE_FINAL_THRESHOLD, f"DQN collapsed at the end: {curve}"
