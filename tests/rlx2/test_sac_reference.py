"""The RLx2 reference's SAC options: `--sac-collect mean`, `--init orthogonal`, alpha0 = 1.0 and its
buffer sizes in `--preset paper`, with sparserl's standard SAC two flags away."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from sparserl.algos import make_agent
from sparserl.cli import build_parser, config_from_args
from sparserl.methods import attach_method
from sparserl.networks import init_weights_
from sparserl.trainer import Trainer


def cfg_of(argv: str):
    return config_from_args(build_parser().parse_args(["train", *argv.split()]))


@pytest.mark.parametrize("collect", ["mean", "sample"])
def test_mean_collection_stores_the_executed_action_as_behaviour(tmp_path, collect):
    cfg = cfg_of(f"--algo sac --env Pendulum-v1 --steps 300 --learning-starts 100 --hidden 64 64 --batch-size 32 "
                 f"--eval-every 0 --eval-episodes 1 --checkpoint-every 0 --no-progress --no-tensorboard "
                 f"--sac-collect {collect} --out {tmp_path / collect}")
    trainer = Trainer(cfg)
    trainer.train()
    buf = trainer.buffer
    assert buf.size == 300
    after = buf.physical(np.arange(cfg.learning_starts, buf.size))  # transitions collected by the policy
    executed, behaviour = buf.actions[after], buf.behaviour[after]
    if collect == "mean":
        np.testing.assert_array_equal(executed, behaviour)
    else:  # standard SAC: a sample of the policy is executed, its pre-noise mean is stored apart
        assert np.abs(executed - behaviour).mean() > 1e-3
    warmup = buf.physical(np.arange(cfg.learning_starts))
    np.testing.assert_array_equal(buf.actions[warmup], buf.behaviour[warmup])  # random: behaviour = action


def test_mean_explore_is_the_deterministic_action():
    cfg = cfg_of("--algo sac --env Pendulum-v1 --hidden 16 16 --sac-collect mean")
    env = gym.make(cfg.env)
    agent = make_agent(cfg, env.observation_space, env.action_space)
    obs = np.array([0.3, -0.2, 0.5], np.float32)
    action, behaviour = agent.explore(obs, np.random.default_rng(0), 0.5)
    np.testing.assert_array_equal(action, agent.act(obs))
    np.testing.assert_array_equal(behaviour, action)


def _is_orthogonal(w: torch.Tensor) -> bool:
    w = w.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w  # orthonormal rows or columns
    return torch.allclose(gram, torch.eye(gram.shape[0], dtype=gram.dtype), atol=1e-5)


@pytest.mark.parametrize("argv", ["--algo sac --env Pendulum-v1 --method rlx2",
                                  "--algo td3 --env Pendulum-v1 --method rlx2",
                                  "--algo dqn --env CartPole-v1 --method rigl"])
def test_orthogonal_init_before_masking(argv):
    cfg = cfg_of(f"{argv} --hidden 32 24 --init orthogonal --actor-sparsity 0.8 --critic-sparsity 0.8 "
                 f"--q-sparsity 0.8")
    env = cfg.env
    e = gym.make(env)
    agent = make_agent(cfg, e.observation_space, e.action_space)
    fresh = {}
    for name, net in agent.networks.items():
        for mod_name, m in net.named_modules():
            if isinstance(m, nn.Linear):
                assert _is_orthogonal(m.weight), (name, mod_name)
                assert (m.bias == 0).all()
                fresh[name, mod_name] = m.weight.detach().clone()
        if name in agent.targets:  # targets start as copies of the re-initialised network
            for a, b in zip(net.state_dict().values(), agent.targets[name].state_dict().values()):
                assert torch.equal(a, b)
    attach_method(agent, cfg, 100)
    for (name, mod_name), w0 in fresh.items():
        w = agent.networks[name].get_submodule(mod_name).weight.detach()
        kept = w != 0
        assert torch.equal(w[kept], w0[kept])                   # the mask acts on the orthogonal weights
        if (~kept).any() and kept.any():                         # magnitude mask: largest |w0| kept
            assert w0[kept].abs().min() >= w0[~kept].abs().max()


def test_default_init_is_not_orthogonal_and_bad_scheme_rejected():
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    assert not _is_orthogonal(layer.weight) and not (layer.bias == 0).all()
    assert _is_orthogonal(init_weights_(layer, "orthogonal").weight)
    with pytest.raises(ValueError, match="default, orthogonal"):
        init_weights_(layer, "xavier")


def test_paper_preset_sac_is_the_reference_and_standard_sac_is_two_flags_away():
    # --steps: the run must outlast the preset's 25k-step warm-up, else nothing would train
    for method in ("rlx2", "dense", "rigl"):  # the reference's SAC settings hold for every method
        cfg = cfg_of(f"--algo sac --env Hopper-v5 --method {method} --preset paper --steps 100000")
        assert (cfg.sac_collect, cfg.init, cfg.alpha, cfg.autotune) == ("mean", "orthogonal", 1.0, True)
        assert (cfg.buffer_size, cfg.buffer_min, cfg.buffer_max) == (3_000_000, 200_000, 3_000_000)
    std = cfg_of("--algo sac --env Hopper-v5 --method rlx2 --preset paper --sac-collect sample --init default "
                 "--steps 100000")
    assert (std.sac_collect, std.init) == ("sample", "default")
    td3 = cfg_of("--algo td3 --env Hopper-v5 --method rlx2 --preset paper --steps 100000")
    assert (td3.init, td3.buffer_size, td3.buffer_min) == ("default", 1_000_000, 100_000)
    plain = cfg_of("--algo sac --env Pendulum-v1")                # without the preset: standard SAC
    assert (plain.sac_collect, plain.init, plain.alpha) == ("sample", "default", 0.2)


def test_alpha_flag_is_the_initial_alpha_of_autotuned_sac():
    cfg = cfg_of("--algo sac --env Pendulum-v1 --hidden 16 16 --alpha 1.0")
    e = gym.make(cfg.env)
    agent = make_agent(cfg, e.observation_space, e.action_space)
    assert agent.alpha == pytest.approx(1.0) and agent.log_alpha.requires_grad
    assert agent.alpha_optimizer is not None


def test_bad_choice_in_a_config_file_is_a_user_error(tmp_path):
    from sparserl.errors import UserError
    f = tmp_path / "c.yaml"
    f.write_text("algo: sac\nsac_collect: greedy\n")
    with pytest.raises(UserError, match="--sac-collect 'greedy'.*sample, mean"):
        cfg_of(f"--config {f}")
