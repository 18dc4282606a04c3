"""Defects found in the second round's code review; each test failed before its fix."""
from __future__ import annotations

import pytest

from sparserl.config import TrainConfig, resolve
from sparserl.errors import UserError


def test_csr_without_adam_reset_is_refused_naming_the_two_options():
    cfg = TrainConfig(algo="td3", env="Pendulum-v1", method="rigl", steps=1000, sparse_backend="csr",
                      reset_adam=False)
    with pytest.raises(UserError) as info:
        resolve(cfg)
    message = str(info.value)
    assert "--sparse-backend csr" in message and "--reset-adam" in message
    assert "--actor-sparsity" not in message


def test_auto_without_adam_reset_keeps_every_layer_masked():
    # --sparse-backend auto --no-reset-adam is accepted (unlike csr) because auto then compresses
    # nothing: the compressed form cannot hold the stale moments --no-reset-adam keeps
    from sparserl.trainer import Trainer

    cfg = resolve(TrainConfig(algo="td3", env="Pendulum-v1", method="rigl", steps=1000, sparse_backend="auto",
                              reset_adam=False, hidden=[64, 64], actor_sparsity=0.95, critic_sparsity=0.95,
                              progress=False, tensorboard=False))
    agent = Trainer(cfg, write_files=False).agent
    for name, (plugin,) in agent.plugins.items():
        assert not plugin.sparse.compressed, name
        assert set(plugin.sparse.layer_backends().values()) == {"masked"}
        assert plugin.sparse.reset_optimizer_state is False


def _small_sparse(**kw):
    import torch
    from torch import nn

    from sparserl.sparse import SparseTraining
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    return net, SparseTraining(net, torch.optim.Adam(net.parameters()), 0.8, **kw)


def test_sb3_early_gradient_mask_turns_an_infinite_masked_gradient_into_zero():
    pytest.importorskip("stable_baselines3")
    import torch

    from sparserl.integrations.sb3 import SparseTrainingCallback
    net, sparse = _small_sparse(updater="static")
    name, mask = next((n, m) for n, m in sparse.masks.items() if not bool(m.all()))
    weight = net.get_parameter(name)
    weight.grad = torch.full_like(weight, float("inf"))
    SparseTrainingCallback._early_mask(sparse, mask)(weight)
    assert not torch.isnan(weight.grad).any()
    assert bool((weight.grad[~mask] == 0).all()) and bool(torch.isinf(weight.grad[mask]).all())


def test_sb3_early_gradient_mask_masks_outside_the_rigl_accumulation_window():
    """With grad_accumulation k > 1 only the k steps before a topology update need the dense
    gradient; the other steps are masked before clipping, as on every step without accumulation."""
    pytest.importorskip("stable_baselines3")
    import torch

    from sparserl.integrations.sb3 import SparseTrainingCallback
    net, sparse = _small_sparse(updater="rigl", delta=10, t_end=100, grad_accumulation=2)
    name, mask = next((n, m) for n, m in sparse.masks.items() if not bool(m.all()))
    weight = net.get_parameter(name)
    hook = SparseTrainingCallback._early_mask(sparse, mask)
    masked_at = []
    for step in range(1, 11):   # sparse.step is step - 1 while step's gradient is formed
        sparse.step = step - 1
        weight.grad = torch.ones_like(weight)
        hook(weight)
        if bool((weight.grad[~mask] == 0).all()):
            masked_at.append(step)
    assert masked_at == list(range(1, 9))   # steps 9 and 10 feed the update at step 10


def test_gmp_refuses_the_csr_backend_it_would_silently_ignore():
    cfg = TrainConfig(algo="td3", env="Pendulum-v1", method="gmp", steps=1000, sparse_backend="csr")
    with pytest.raises(UserError, match="--sparse-backend csr.*--method gmp"):
        resolve(cfg)
    assert resolve(TrainConfig(algo="td3", env="Pendulum-v1", method="gmp", steps=1000)).sparse_backend == "masked"


def test_summary_rate_counts_the_steps_taken_when_a_callback_stops_the_run():
    from sparserl import DQN
    model = DQN("CartPole-v1", seed=0, hidden=[8], batch_size=8, learning_starts=20, eval_every=1000,
                eval_episodes=1)
    model.learn(200, callback=lambda run: run.step < 60)
    trainer = model.trainer
    assert trainer.stopped_by_callback and trainer.step == 60
    summary = trainer.build_summary(wall=2.0)
    assert summary["steps"] == 60 and summary["sps"] == 30.0
