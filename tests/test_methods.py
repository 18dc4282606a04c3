"""Methods wired into the algorithms: sparse masks, topology updates, tiny, GMP, structured.

Tiny budgets: these check invariants inside real agents, not learning.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparserl.config import TrainConfig, resolve
from sparserl.sparse import layer_nonzero_counts
from sparserl.structured import StructuredPruner
from sparserl.trainer import Trainer


def make_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(algo="td3", env="Pendulum-v1", steps=500, learning_starts=100, eval_every=0, eval_episodes=1,
                checkpoint_every=0, out=str(tmp_path), progress=False, tensorboard=False, hidden=[32, 32],
                batch_size=32, topology_delta=50)
    base.update(kw)
    return resolve(TrainConfig(**base))


def linear_weights(module):
    return {f"{n}.weight": m.weight for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}


def _record_grown_connections(agent) -> dict:
    """Per network and layer, every connection any topology update grew (filled in as the run goes)."""
    grown = {}
    for name, plugins in agent.plugins.items():
        sparse = plugins[0].sparse
        grown[name] = {n: torch.zeros_like(m) for n, m in sparse.masks.items()}

        def update_topology(*args, _sparse=sparse, _update=sparse.update_topology, _grown=grown[name], **kwargs):
            changes = _update(*args, **kwargs)
            for n, change in changes.items():
                _grown[n] |= change.grown.to(_grown[n].device)
            return changes
        sparse.update_topology = update_topology
    return grown


@pytest.mark.parametrize("algo,env,method", [("td3", "Pendulum-v1", "rigl"), ("sac", "Pendulum-v1", "set"),
                                             ("dqn", "CartPole-v1", "static"), ("td3", "Pendulum-v1", "rlx2")])
def test_sparse_invariants_inside_agents(tmp_path, algo, env, method):
    cfg = make_cfg(tmp_path, algo=algo, env=env, method=method, actor_sparsity=0.8, critic_sparsity=0.7,
                   q_sparsity=0.75, buffer_min=200, buffer_check_every=100)
    trainer = Trainer(cfg)
    grown = _record_grown_connections(trainer.agent)
    summary = trainer.train()
    agent = trainer.agent
    for name, net in agent.networks.items():
        (plugin,) = agent.plugins[name]
        sparse = plugin.sparse
        shapes = {n: tuple(w.shape) for n, w in linear_weights(net).items()}
        expected = layer_nonzero_counts(shapes, {"actor": 0.8, "critic": 0.7, "q": 0.75}[name], "erk")
        weights = linear_weights(net)
        for layer, count in expected.items():
            # the mask holds exactly the allocation; every weight outside it is exactly zero
            assert int(sparse.masks[layer].sum()) == count
            assert torch.all(weights[layer][~sparse.masks[layer]] == 0)
            # a zero inside the mask can only be a connection grown at a topology update (grown
            # weights start at 0; one into a dead ReLU unit may stay there): every other active
            # weight is a trained non-zero
            zero_inside = sparse.masks[layer] & (weights[layer] == 0)
            assert not (zero_inside & ~grown[name][layer]).any()
        if name in agent.targets:  # the target network has the same zero pattern
            target_weights = linear_weights(agent.targets[name])
            for layer in expected:
                assert torch.equal(target_weights[layer] != 0, weights[layer] != 0)
        if method != "static":
            assert sparse.n_topology_updates >= 1 and any(g.any() for g in grown[name].values())
        else:
            assert not any(g.any() for g in grown[name].values())
    flops = summary["flops"]
    assert flops["train_total"] < flops["train_dense_total"]
    assert flops["infer_per_action"] < flops["infer_dense_per_action"]


def test_tiny_matches_sparse_weight_count(tmp_path):
    sparse = Trainer(make_cfg(tmp_path / "s", method="static", actor_sparsity=0.9, critic_sparsity=0.9, hidden=[256, 256]))
    tiny = Trainer(make_cfg(tmp_path / "t", method="tiny", actor_sparsity=0.9, critic_sparsity=0.9, hidden=[256, 256]))
    for name in ("actor", "critic"):
        n_sparse = sum(int((w != 0).sum()) for w in linear_weights(sparse.agent.networks[name]).values())
        n_tiny = sum(w.numel() for w in linear_weights(tiny.agent.networks[name]).values())
        # one hidden width per MLP is chosen: the counts agree to within one width step (~2h+in+out)
        assert abs(n_tiny - n_sparse) / n_sparse < 0.05
        assert all(w.count(w[0]) == len(w) for w in tiny.agent.architecture().values())


def test_gmp_reaches_final_sparsity(tmp_path):
    cfg = make_cfg(tmp_path, algo="dqn", env="CartPole-v1", method="gmp", gmp_sparsity=0.9, steps=600,
                   learning_starts=100, train_freq=1, prune_every=20, prune_start=0.1, prune_end=0.6)
    trainer = Trainer(cfg)
    summary = trainer.train()
    assert summary["sparsity"]["q"] == pytest.approx(0.9, abs=0.01)
    q_w = linear_weights(trainer.agent.q)
    t_w = linear_weights(trainer.agent.targets["q"])
    for layer in q_w:  # the target follows the online pruning pattern
        assert torch.all(t_w[layer][q_w[layer] == 0] == 0)


@pytest.mark.parametrize("algo,env", [("dqn", "CartPole-v1"), ("td3", "Pendulum-v1")])
def test_structured_end_to_end(tmp_path, algo, env):
    cfg = make_cfg(tmp_path, algo=algo, env=env, method="structured", steps=700, learning_starts=100,
                   train_freq=1, hidden=[64, 64], prune_every=25, prune_start=0.1, prune_end=0.6, min_width=2,
                   target_neuron_fraction=0.9)
    trainer = Trainer(cfg)
    summary = trainer.train()
    agent = trainer.agent
    arch = summary["architecture"]
    assert all(sum(widths) < 128 for widths in arch.values())  # every MLP lost neurons
    for path, block in summary["neurons"].items():
        assert block["neurons_alive"] < block["neurons_total"]
        assert block["architecture"] == arch[path]
    # physically smaller: parameter tensors match the reported widths, targets too
    for path, mlp in agent.mlps().items():
        assert mlp.hidden_sizes == arch[path]
    for name, target in agent.targets.items():
        assert [p.shape for p in target.parameters()] == [p.shape for p in agent.networks[name].parameters()]
    # the optimizer holds exactly the live parameters
    for name, opt in agent.optimizers.items():
        live = {id(p) for p in agent.networks[name].parameters()}
        assert {id(p) for g in opt.param_groups for p in g["params"]} == live
    # the final checkpoint loads without the original architecture and acts identically
    from sparserl.cli import load_agent
    _, loaded, _ = load_agent(tmp_path)
    obs = torch.randn(16, agent.spaces[0].shape[0]).numpy()
    assert np.allclose(loaded.act(obs), agent.act(obs), atol=1e-6)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["flops"]["infer_per_action"] < saved["flops"]["infer_dense_per_action"]


def test_shrunk_agent_networks_equal_masked_originals(tmp_path):
    """Actor, critic and Q-net (with targets): masking neurons then shrinking keeps outputs."""
    torch.manual_seed(0)
    for algo, env in (("td3", "Pendulum-v1"), ("dqn", "CartPole-v1")):
        trainer = Trainer(make_cfg(tmp_path / algo, algo=algo, env=env, hidden=[32, 32]))
        agent = trainer.agent
        for path, mlp in agent.mlps().items():
            name, _, sub = path.partition(".")
            target = agent.targets.get(name)
            mirror = None if target is None else (target.get_submodule(sub) if sub else target)
            pruner = StructuredPruner(mlp, agent.optimizers[name], total_updates=100, shrink=False,
                                      mirrors=[mirror] if mirror is not None else [])
            x = torch.randn(64, mlp.layers[0].in_features)
            alive = [torch.rand(32) > 0.5 for _ in range(2)]
            for layer, a in zip(pruner.alive, alive):
                layer &= a
            pruner._apply_masks()
            before, before_t = mlp(x), (mirror(x) if mirror is not None else None)
            assert pruner.shrink_now()
            assert mlp.hidden_sizes == [int(a.sum()) for a in alive]
            assert torch.allclose(mlp(x), before, atol=1e-6)
            if mirror is not None:
                assert mirror.hidden_sizes == mlp.hidden_sizes
                assert torch.allclose(mirror(x), before_t, atol=1e-6)


def test_prune_guard_pauses_pruning_while_return_is_far_below_best(tmp_path):
    cfg = make_cfg(tmp_path, algo="dqn", env="CartPole-v1", method="structured", prune_guard=0.2)
    trainer = Trainer(cfg)
    (plugin,) = trainer.agent.plugins["q"]
    pruners = list(plugin.pruners.values())
    trainer.method.after_eval(trainer, 70.0, 100.0)   # 30% below the best: more than the 20% guard -> paused
    assert all(p.paused for p in pruners)
    trainer.method.after_eval(trainer, 90.0, 100.0)   # within 20% of the best -> pruning resumes
    assert not any(p.paused for p in pruners)


def test_summary_has_per_layer_table(tmp_path):
    summary = Trainer(make_cfg(tmp_path, method="static", actor_sparsity=0.8, critic_sparsity=0.8)).train()
    for name, rows in summary["layers"].items():
        assert sum(r["weights_nonzero"] for r in rows) == summary["params"][name]["nonzero"]
        assert sum(r["weights_total"] for r in rows) == summary["params"][name]["total"]


def test_critic_importance_ignores_the_actor_loss_pass(tmp_path):
    """Inside the actor's loss the critic is frozen: its neuron statistics must not change there."""
    cfg = make_cfg(tmp_path, method="structured", policy_delay=1)
    trainer = Trainer(cfg)
    agent = trainer.agent
    tracker = agent.plugins["critic"][0].pruners["critic.q1"].importance
    calls = []
    original = tracker._update
    tracker._update = lambda layer, stat, store=None: (calls.append(layer), original(layer, stat, store))
    buffer = trainer.buffer
    rng = np.random.default_rng(0)
    for _ in range(64):
        buffer.add(rng.normal(size=3), rng.uniform(-2, 2, 1), 0.0, rng.normal(size=3), False, False)
    agent.update(buffer.sample(16))  # one critic step and (policy_delay=1) one actor step
    # critic loss: one grad-enabled forward of q1 -> per hidden layer one mean and one fluctuation update
    n_hidden = len(cfg.hidden)
    assert len(calls) == 2 * n_hidden


def test_gmp_reaches_final_sparsity_when_events_miss_the_end(tmp_path):
    # 499 planned updates, start 49, end 399: events every 64 updates miss the end step,
    # so the final (end) event must still bring the sparsity to gmp_sparsity.
    cfg = make_cfg(tmp_path, algo="dqn", env="CartPole-v1", method="gmp", gmp_sparsity=0.9, steps=600,
                   learning_starts=101, train_freq=1, prune_every=64, prune_start=0.1, prune_end=0.8)
    summary = Trainer(cfg).train()
    assert summary["sparsity"]["q"] == pytest.approx(0.9, abs=0.01)
