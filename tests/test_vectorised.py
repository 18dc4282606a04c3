"""Many seeds in one process (sparserl.vectorised): the reproducibility contract of a group.

* K = 1 is the single run bit for bit (summary and weights), dense and with every plugin kind;
* members are independent: changing one member's seed leaves the others bit-identical;
* the stacked update is the single update's math: after a few updates a member of a K = 2 group
  matches its single run within float tolerance (not bit for bit: batched products round
  differently);
* each member follows its own schedules (masks, buffer capacity), faults stop one member only,
  a group resumes exactly, structured members shrink and export, and K = 4 dense DQN learns.
"""
import json
import math

import numpy as np
import pytest
import torch

from sparserl import checkpoint
from sparserl.cli import main
from sparserl.config import TrainConfig, resolve
from sparserl.errors import UserError
from sparserl.faults import NonFiniteError
from sparserl.trainer import Trainer
from sparserl.vectorised import GroupTrainer, StackedMLP, parse_seeds, stack_modules, step_together
from sparserl.networks import MLP

TIMING = {"wall_time_s", "updates_per_s", "sps", "machine"}


def config(out, **kw):
    base = dict(algo="td3", env="Pendulum-v1", steps=400, learning_starts=100, seed=0, out=str(out),
                eval_every=200, eval_episodes=1, checkpoint_every=0, progress=False, tensorboard=False,
                hidden=[32, 32], batch_size=32, torch_threads=1)
    base.update(kw)
    return resolve(TrainConfig(**base))


def group(tmp_path, seeds, name="g", **kw):
    cfgs = [config(tmp_path / name / f"seed{s}", seed=s, **kw) for s in seeds]
    summaries, failures = GroupTrainer(cfgs).train()
    return cfgs, summaries, failures


def single(tmp_path, seed, name="s", **kw):
    cfg = config(tmp_path / name / f"seed{seed}", seed=seed, **kw)
    return cfg, Trainer(cfg).train()


def weights(run_dir):
    state = checkpoint.load(run_dir / "checkpoint.pt")
    out = {}

    def walk(prefix, value):
        if torch.is_tensor(value):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
    walk("", state["agent"]["networks"] if "agent" in state else state)
    assert out, "the checkpoint holds no tensors"
    return out


def same_summary(a, b):
    a = {k: v for k, v in a.items() if k not in TIMING}
    b = {k: v for k, v in b.items() if k not in TIMING}
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def same_weights(dir_a, dir_b):
    wa, wb = weights(dir_a), weights(dir_b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


METHODS_K1 = [
    dict(),
    dict(method="rigl", actor_sparsity=0.8, critic_sparsity=0.8, topology_delta=25),
    dict(method="rlx2", actor_sparsity=0.8, critic_sparsity=0.8, topology_delta=25, buffer_check_every=100,
         buffer_min=150, nstep_delay=50),
    dict(method="structured", prune_every=20),
    dict(algo="dqn", env="CartPole-v1", method="set", q_sparsity=0.8, topology_delta=25),
]


@pytest.mark.parametrize("kw", METHODS_K1, ids=["dense", "rigl", "rlx2", "structured", "dqn-set"])
def test_group_of_one_is_the_single_run(tmp_path, kw):
    cfgs, summaries, failures = group(tmp_path, [3], **kw)
    _, alone = single(tmp_path, 3, **kw)
    assert not failures
    assert same_summary(summaries[0], alone), (summaries[0], alone)
    assert same_weights(tmp_path / "g" / "seed3", tmp_path / "s" / "seed3")


def test_members_are_independent(tmp_path):
    kw = dict(method="rlx2", actor_sparsity=0.8, critic_sparsity=0.8, topology_delta=25, buffer_check_every=100,
              buffer_min=150, nstep_delay=50)
    _, first, _ = group(tmp_path, [1, 2, 3, 4], name="a", **kw)
    _, second, _ = group(tmp_path, [1, 2, 3, 9], name="b", **kw)
    for i, seed in enumerate([1, 2, 3]):
        assert same_summary(first[i], second[i]), f"seed {seed} changed with another member's seed"
        assert same_weights(tmp_path / "a" / f"seed{seed}", tmp_path / "b" / f"seed{seed}")
    assert not same_summary(first[3], second[3])


def test_stacked_update_is_the_single_update_within_float_tolerance(tmp_path):
    # 20 updates of a dense TD3 pair: the batched products change rounding only
    kw = dict(steps=120, eval_every=0)
    group(tmp_path, [5, 6], **kw)
    for seed in (5, 6):
        single(tmp_path, seed, **kw)
        wg, ws = weights(tmp_path / "g" / f"seed{seed}"), weights(tmp_path / "s" / f"seed{seed}")
        assert wg.keys() == ws.keys()
        for k in wg:
            assert torch.allclose(wg[k], ws[k], rtol=1e-4, atol=1e-6), (k, (wg[k] - ws[k]).abs().max())


def test_stacked_mlp_batches_plain_layers_and_falls_back_otherwise():
    torch.manual_seed(0)
    mlps = [MLP(5, 3, [8, 8]) for _ in range(3)]
    stacked = StackedMLP(mlps)
    x = torch.randn(3, 4, 5)
    assert stacked.batchable()
    expected = torch.stack([m(x[k]) for k, m in enumerate(mlps)])
    assert torch.allclose(stacked(x), expected, atol=1e-6)
    stacked(x).sum().backward()  # gradients reach each member's own weights
    assert all(m.layers[0].weight.grad is not None for m in mlps)
    mlps[1].layers[0].register_forward_hook(lambda *a: None)  # a hook (structured pruning's kind): one by one
    assert not stacked.batchable()
    assert torch.allclose(stacked(x), expected, atol=1e-6)


def test_one_adam_kernel_equals_each_optimizer_step():
    torch.manual_seed(0)
    nets = [MLP(4, 2, [6]) for _ in range(3)]
    twins = [MLP(4, 2, [6]) for _ in range(3)]
    for a, b in zip(nets, twins):
        b.load_state_dict(a.state_dict())
    opts_a = [torch.optim.Adam(n.parameters(), lr=1e-2, foreach=True) for n in nets]
    opts_b = [torch.optim.Adam(n.parameters(), lr=1e-2, foreach=True) for n in twins]
    for _ in range(3):
        x = torch.randn(7, 4)
        for group_of, opts in ((nets, opts_a), (twins, opts_b)):
            for n in group_of:
                n.zero_grad()
                n(x).pow(2).sum().backward()
        step_together(opts_a)
        for opt in opts_b:
            opt.step()
    for a, b in zip(nets, twins):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb)


def test_members_follow_their_own_schedules(tmp_path):
    kw = dict(method="rlx2", actor_sparsity=0.9, critic_sparsity=0.8, topology_delta=25, buffer_check_every=100,
              buffer_min=150, nstep_delay=50, steps=500)
    cfgs, summaries, failures = group(tmp_path, [1, 2, 3, 4], **kw)
    assert not failures and len(summaries) == 4
    masks = []
    for k, summary in summaries.items():
        assert summary["seed"] == cfgs[k].seed
        assert math.isclose(summary["sparsity"]["actor"], 0.9, abs_tol=0.02), summary["sparsity"]
        assert summary["nstep_final"] == summaries[0]["nstep_final"] > 1  # the same delay rule for all
        w = weights(tmp_path / "g" / f"seed{cfgs[k].seed}")
        masks.append((w[".actor.net.layers.1.weight"] != 0))
    assert any(not torch.equal(masks[0], m) for m in masks[1:]), "every member has the same mask"
    # each member's buffer keeps its own capacity record (the single-run field of its summary)
    assert all("buffer" in json.dumps(s) for s in summaries.values())


def test_a_non_finite_member_stops_alone_and_keeps_its_checkpoint(tmp_path):
    cfgs = [config(tmp_path / "g" / f"seed{s}", seed=s, steps=400, checkpoint_every=200) for s in (1, 2, 3)]
    trainer = GroupTrainer(cfgs)
    victim = trainer.members[1]
    collect = victim.collect_step

    def poisoned():
        if victim.step == 250:  # after the checkpoint at step 200
            with torch.no_grad():
                victim.agent.critic.q1.layers[0].weight.fill_(float("nan"))
        collect()
    victim.collect_step = poisoned
    summaries, failures = trainer.train()
    assert set(summaries) == {0, 2} and set(failures) == {1}
    assert "non-finite" in failures[1]
    stopped = tmp_path / "g" / "seed2"
    assert not (stopped / "summary.json").exists()
    resume = checkpoint.load(stopped / "resume.pt")
    assert resume["step"] == 200
    for k in (0, 2):
        assert (tmp_path / "g" / f"seed{cfgs[k].seed}" / "summary.json").exists()


def test_group_resume_is_exact(tmp_path, monkeypatch):
    flags = ["train", "--algo", "td3", "--env", "Pendulum-v1", "--hidden", "32", "32", "--batch-size", "32",
             "--learning-starts", "100", "--eval-every", "200", "--eval-episodes", "1", "--no-progress",
             "--no-tensorboard", "--torch-threads", "1", "--method", "rigl", "--topology-delta", "25",
             "--actor-sparsity", "0.8", "--critic-sparsity", "0.8", "--seeds", "1,2", "--steps", "600",
             "--checkpoint-every", "350"]  # mid-episode: the resume replays each member's episode
    assert main([*flags, "--out", str(tmp_path / "whole")]) == 0
    real_save_resume = Trainer.save_resume

    def save_then_interrupt(self):  # Ctrl-C while the first member's state is written
        real_save_resume(self)
        if self.step == 350 and self.cfg.seed == 1:
            raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_resume", save_then_interrupt)
        assert main([*flags, "--out", str(tmp_path / "part")]) == 130
    for seed in (1, 2):  # both members were saved at the same step
        assert checkpoint.load(tmp_path / "part" / f"seed{seed}" / "resume.pt")["step"] == 350
        assert not (tmp_path / "part" / f"seed{seed}" / "summary.json").exists()
    assert main(["train", "--resume", str(tmp_path / "part")]) == 0
    for seed in (1, 2):
        a = json.loads((tmp_path / "whole" / f"seed{seed}" / "summary.json").read_text())
        b = json.loads((tmp_path / "part" / f"seed{seed}" / "summary.json").read_text())
        assert same_summary(a, b)
        assert same_weights(tmp_path / "whole" / f"seed{seed}", tmp_path / "part" / f"seed{seed}")


def test_member_runs_are_normal_run_directories(tmp_path, capsys):
    flags = ["train", "--algo", "dqn", "--env", "CartPole-v1", "--hidden", "32", "32", "--steps", "300",
             "--learning-starts", "100", "--eval-every", "0", "--eval-episodes", "1", "--no-progress",
             "--no-tensorboard", "--torch-threads", "1", "--method", "structured", "--prune-every", "10",
             "--seeds", "0-1", "--out", str(tmp_path / "g")]
    assert main(flags) == 0
    out = capsys.readouterr().out
    assert "seed 0:" in out and "seed 1:" in out
    for seed in (0, 1):
        run = tmp_path / "g" / f"seed{seed}"
        for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoint.pt"):
            assert (run / name).exists(), name
        summary = json.loads((run / "summary.json").read_text())
        assert summary["architecture"]["q"][0] < 32, "the structured member did not shrink"
        assert main(["eval", str(run), "--episodes", "1"]) == 0
        assert main(["flops", str(run)]) == 0
        assert main(["export", str(run), "--format", "npz", "--out", str(tmp_path / f"p{seed}.npz")]) == 0


def test_bad_group_input_is_one_line(tmp_path, capsys):
    for seeds in ("3-1", "a", "1,1"):
        assert main(["train", "--seeds", seeds, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--seeds" in err[0], err
    assert main(["train", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "0-1", "--steps", "10",
                 "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sac" in err[0], err
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    with pytest.raises(UserError):
        GroupTrainer([config(tmp_path / "a", seed=0), config(tmp_path / "b", seed=1, lr=1e-3)])


@pytest.mark.slow
def test_four_dense_dqn_agents_learn_cartpole(tmp_path):
    # the dense DQN learning test's budget and thresholds (tests/algos/test_learning.py), 4 seeds at once
    kw = dict(algo="dqn", env="CartPole-v1", steps=15_000, learning_starts=1_000, hidden=[128, 128], lr=1e-3,
              batch_size=64, train_freq=4, target_update_every=250, eps_fraction=0.2, eval_every=1_000,
              eval_episodes=5)
    cfgs, summaries, failures = group(tmp_path, [0, 1, 2, 3], **kw)
    assert not failures
    best = [summaries[k]["best_eval_return"] for k in range(4)]
    final = [summaries[k]["final_eval_return"] for k in range(4)]
    assert min(best) >= 195.0, best
    assert min(final) >= 100.0, final


def test_stacked_csr_layers_run_as_one_block_diagonal_product():
    from sparserl.sparse import SparseTraining
    from sparserl.sparse.csr import SparseLinear
    torch.manual_seed(1)
    mlps = [MLP(6, 3, [16, 16]) for _ in range(3)]
    for mlp in mlps:
        SparseTraining(mlp, None, 0.8, backend="csr", planned_updates=100, delta=10, init="random")
    assert any(isinstance(layer, SparseLinear) for layer in mlps[0].layers)
    stacked = StackedMLP(mlps)
    assert stacked.batchable()
    x = torch.randn(3, 5, 6, requires_grad=True)
    got = stacked(x)
    got.square().sum().backward()
    grads = [[p.grad.clone() for p in m.parameters()] for m in mlps]
    gx = x.grad.clone()
    for m in mlps:
        m.zero_grad()
    x.grad = None
    expected = torch.stack([m(x[k]) for k, m in enumerate(mlps)])
    expected.square().sum().backward()
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(gx, x.grad, atol=1e-5)
    for m, before in zip(mlps, grads):
        for p, g in zip(m.parameters(), before):
            assert torch.allclose(p.grad, g, atol=1e-5)
