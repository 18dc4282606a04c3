"""Agents to export: dense (TD3, SAC), unstructured-sparse (an RLx2 CLI run) and physically
shrunk structured runs (DQN, TD3).  Tiny budgets: the tests check equivalence, not learning."""
from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from sparserl.algos import make_agent
from sparserl.cli import load_agent
from sparserl.config import TrainConfig, resolve
from sparserl.trainer import Trainer

from export_helpers import run_main

RLX2_TD3 = ["train", "--algo", "td3", "--env", "Pendulum-v1", "--method", "rlx2", "--steps", "300",
            "--learning-starts", "100", "--eval-every", "0", "--hidden", "64", "64", "--batch-size", "32",
            "--actor-sparsity", "0.9", "--critic-sparsity", "0.9", "--topology-delta", "50",
            "--buffer-min", "200", "--buffer-check-every", "100", "--no-progress", "--no-tensorboard"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def fresh_agent(algo: str, env_id: str, hidden=(32, 32)):
    cfg = resolve(TrainConfig(algo=algo, env=env_id, hidden=list(hidden)))
    env = gym.make(env_id)
    torch.manual_seed(0)
    return make_agent(cfg, env.observation_space, env.action_space)


def structured_run(out, algo: str, env_id: str):
    """A tiny structured run that prunes early: its networks end physically shrunk."""
    threads = torch.get_num_threads()
    data = dict(algo=algo, env=env_id, method="structured", steps=300, learning_starts=50, train_freq=1,
                hidden=[32, 32], batch_size=32, prune_every=20, prune_start=0.05, prune_end=0.5, min_width=2,
                target_neuron_fraction=0.8, eval_every=0, eval_episodes=1, checkpoint_every=0, out=str(out),
                progress=False, tensorboard=False)
    trainer = Trainer(resolve(TrainConfig(**data)))
    trainer.train()
    torch.set_num_threads(threads)
    return trainer.agent


@pytest.fixture(scope="session")
def dense_td3():
    return fresh_agent("td3", "Pendulum-v1")


@pytest.fixture(scope="session")
def dense_sac():
    return fresh_agent("sac", "Pendulum-v1")


@pytest.fixture(scope="session")
def rlx2_run(tmp_path_factory):
    """An RLx2 TD3 run through the CLI (90% sparse actor): its directory."""
    out = tmp_path_factory.mktemp("export") / "rlx2"
    threads = torch.get_num_threads()
    rc, _, err = run_main([*RLX2_TD3, "--out", str(out)])
    torch.set_num_threads(threads)
    assert rc == 0, err
    return out


@pytest.fixture(scope="session")
def sparse_td3(rlx2_run):
    _, agent, _ = load_agent(rlx2_run)
    return agent


@pytest.fixture(scope="session")
def structured_dqn(tmp_path_factory):
    return structured_run(tmp_path_factory.mktemp("export") / "sdqn", "dqn", "CartPole-v1")


@pytest.fixture(scope="session")
def structured_td3(tmp_path_factory):
    return structured_run(tmp_path_factory.mktemp("export") / "std3", "td3", "Pendulum-v1")
