"""CUDA: networks, replay minibatches, masks, neuron surgery and FLOP accounting on the GPU,
and checkpoints that load on the CPU. Skipped (with the reason) on machines without CUDA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import sparserl
from sparserl import DQN, TD3

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

TINY = dict(hidden=[32, 32], eval_every=0, eval_episodes=1, batch_size=32, learning_starts=100,
            buffer_min=100, buffer_check_every=100, topology_delta=50, device="cuda")


def test_rlx2_td3_trains_on_cuda_and_loads_on_cpu(tmp_path):
    model = TD3("Pendulum-v1", method="rlx2", seed=0, actor_sparsity=0.8, critic_sparsity=0.8, **TINY)
    model.learn(600)
    agent = model.agent
    assert all(p.device.type == "cuda" for net in agent.networks.values() for p in net.parameters())
    (plugin,) = agent.plugins["actor"]
    assert all(m.device.type == "cuda" for m in plugin.sparse.masks.values())
    assert plugin.sparse.n_topology_updates > 0
    summary = model.trainer.build_summary(1.0)
    assert 0 < summary["flops"]["train_total"] < summary["flops"]["train_dense_total"]
    obs = np.random.default_rng(0).uniform(-1, 1, size=(16, 3)).astype(np.float32)
    on_gpu = model.predict(obs)[0]
    model.save(tmp_path / "m.pt")
    cpu = sparserl.load(tmp_path / "m.pt", device="cpu")
    assert next(cpu.agent.actor.parameters()).device.type == "cpu"
    np.testing.assert_allclose(cpu.predict(obs)[0], on_gpu, atol=1e-5)


def test_structured_dqn_shrinks_on_cuda(tmp_path):
    model = DQN("CartPole-v1", method="structured", seed=0, prune_every=20, prune_start=0.1, prune_end=0.6,
                min_width=2, train_freq=1, log_dir=str(tmp_path / "run"), **TINY)
    model.learn(800)
    arch = model.agent.architecture()["q"]
    assert sum(arch) < 64
    assert all(p.device.type == "cuda" for p in model.agent.q.parameters())
    assert all(p.device.type == "cuda" for p in model.agent.targets["q"].parameters())
    cpu = sparserl.load(tmp_path / "run", device="cpu")
    obs = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    assert np.array_equal(cpu.predict(obs)[0], model.predict(obs)[0])


def test_cli_resume_on_cuda(tmp_path):
    from sparserl.cli import main
    out = tmp_path / "run"
    base = ["train", "--algo", "sac", "--env", "Pendulum-v1", "--method", "rigl", "--hidden", "32", "32",
            "--learning-starts", "100", "--eval-every", "0", "--eval-episodes", "1", "--device", "cuda",
            "--out", str(out), "--no-progress", "--no-tensorboard", "--topology-delta", "50"]
    assert main([*base, "--steps", "300"]) == 0
    assert main(["train", "--resume", str(out), "--steps", "500", "--device", "cpu", "--no-progress"]) == 0
    from sparserl import checkpoint
    assert checkpoint.load(out / "checkpoint.pt")["agent"]["n_updates"]["critic"] > 0  # trained on, on the CPU
