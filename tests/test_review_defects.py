"""Defects found in the first round's code review; each test failed before its fix."""
from __future__ import annotations

import copy
import gc

import numpy as np
import pytest
import torch
from torch import nn

from sparserl.config import TrainConfig, planned_updates, resolve
from sparserl.errors import UserError
from sparserl.sparse import SparseTraining


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_sync_masks_a_target_rebuilt_with_deepcopy():
    net = small_net()
    sparse = SparseTraining(net, torch.optim.Adam(net.parameters()), 0.8, updater="static")
    dense_twin = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))  # all weights non-zero
    for _ in range(30):  # CPython reuses freed ids: an id()-keyed cache hands a new target stale tensors
        target = copy.deepcopy(dense_twin)
        sparse.sync(target)
        for name, mask in sparse.masks.items():
            weight = target.get_parameter(name)
            assert torch.all(weight[~mask] == 0), "rebuilt target left unmasked"
        del target
        gc.collect()


def test_masking_an_infinite_gradient_gives_zero_not_nan():
    net = small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sparse = SparseTraining(net, opt, 0.8, updater="static")
    net(torch.randn(4, 8)).sum().backward()
    mask = sparse.masks["0.weight"]
    net[0].weight.grad[~mask] = float("inf")
    assert sparse.before_optimizer_step()
    grad = net[0].weight.grad
    assert torch.all(grad[~mask] == 0) and not torch.isnan(grad).any()


def test_trainer_and_buffer_draw_different_streams(tmp_path):
    from sparserl.trainer import Trainer
    cfg = resolve(TrainConfig(algo="dqn", env="CartPole-v1", steps=100, out=str(tmp_path), progress=False,
                              tensorboard=False, hidden=[8]))
    trainer = Trainer(cfg, write_files=False)
    explore = copy.deepcopy(trainer.rng).integers(0, 2**31, 8)
    sample = copy.deepcopy(trainer.buffer.rng).integers(0, 2**31, 8)
    assert not np.array_equal(explore, sample)


def test_sac_exploration_uses_the_given_generator():
    from sparserl.algos import make_agent
    import gymnasium as gym
    cfg = resolve(TrainConfig(algo="sac", env="Pendulum-v1", hidden=[8]))
    env = gym.make("Pendulum-v1")
    agent = make_agent(cfg, env.observation_space, env.action_space)
    obs = np.ones(3, np.float32)
    torch.manual_seed(1)
    a1, m1 = agent.explore(obs, np.random.default_rng(5), 0.0)
    torch.manual_seed(2)  # a different global torch stream must not matter
    a2, m2 = agent.explore(obs, np.random.default_rng(5), 0.0)
    a3, _ = agent.explore(obs, np.random.default_rng(6), 0.0)
    assert np.array_equal(a1, a2) and np.array_equal(m1, m2)
    assert not np.array_equal(a1, a3)


@pytest.mark.parametrize("steps,starts,freq,grad", [(100, 0, 1, 1), (100, 10, 4, 1), (1000, 25, 4, 2),
                                                    (103, 7, 5, 3), (10, 3, 4, 1)])
def test_planned_updates_counts_the_loop_exactly(steps, starts, freq, grad):
    # the plan every schedule is built on equals the updates a real run makes (counted by the agent)
    from sparserl.trainer import Trainer
    cfg = resolve(TrainConfig(algo="dqn", env="CartPole-v1", steps=steps, learning_starts=starts, train_freq=freq,
                              gradient_steps=grad, hidden=[8], batch_size=4, eval_every=0, eval_episodes=1,
                              checkpoint_every=0, progress=False, tensorboard=False))
    summary = Trainer(cfg, write_files=False).train()
    assert summary["updates"] == planned_updates(cfg) > 0


def test_a_run_that_would_never_update_is_refused():
    cfg = TrainConfig(algo="dqn", steps=50, learning_starts=50, train_freq=1, gradient_steps=1)
    with pytest.raises(UserError, match="--learning-starts 50 must be below --steps 50"):
        resolve(cfg)


def test_gmp_uses_the_sparse_core_and_honours_the_prune_guard(tmp_path):
    from sparserl.trainer import Trainer
    cfg = resolve(TrainConfig(algo="dqn", env="CartPole-v1", method="gmp", steps=400, learning_starts=50,
                              train_freq=1, prune_every=10, prune_start=0.1, prune_end=0.9, hidden=[16],
                              gmp_sparsity=0.9, prune_guard=0.1, out=str(tmp_path), progress=False,
                              tensorboard=False, eval_every=0))
    trainer = Trainer(cfg, write_files=False)
    (plugin,) = trainer.agent.plugins["q"]
    assert isinstance(plugin.sparse, SparseTraining)
    trainer.method.after_eval(trainer, mean_return=10.0, best_return=100.0)  # far below the best: pause
    trainer.train()
    assert plugin.current == 0.0 and plugin.sparse.sparsity() == 0.0
    trainer.method.after_eval(trainer, mean_return=100.0, best_return=100.0)
    assert plugin.paused is False


def test_extending_a_run_keeps_its_schedules(tmp_path):
    """The rule: schedules are planned over ``schedule_steps`` (default: the first --steps);
    resuming with a larger --steps continues past that plan — epsilon stays at its end value,
    topology and pruning schedules keep their planned end."""
    from sparserl.cli import main
    from sparserl import checkpoint
    out = tmp_path / "run"
    base = ["train", "--algo", "dqn", "--env", "CartPole-v1", "--method", "rigl", "--learning-starts", "20",
            "--hidden", "16", "--eval-every", "0", "--eval-episodes", "1", "--out", str(out), "--no-progress",
            "--no-tensorboard", "--topology-delta", "10", "--eps-fraction", "0.5"]
    assert main([*base, "--steps", "200"]) == 0
    before = checkpoint.load(out / "resume.pt")
    assert main(["train", "--resume", str(out), "--steps", "400", "--no-progress"]) == 0
    after = checkpoint.load(out / "resume.pt")
    assert after["config"]["schedule_steps"] == before["config"]["schedule_steps"] == 200
    sched_before = before["agent"]["plugins"]["q"][0]["schedule"]
    sched_after = after["agent"]["plugins"]["q"][0]["schedule"]
    assert sched_before == sched_after
    from sparserl.trainer import Trainer
    cfg = TrainConfig.from_dict(after["config"])
    trainer = Trainer(resolve(cfg), resume_state=after, write_files=False)
    assert trainer.progress() == 1.0
    assert trainer.agent.epsilon(trainer.progress()) == cfg.eps_end
