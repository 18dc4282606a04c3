"""The Stable-Baselines3-shaped Python API and its equivalence with the CLI."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import sparserl
from sparserl import DQN, SAC, TD3
from sparserl.callbacks import Callback
from sparserl.cli import build_parser, config_from_args, main
from sparserl.methods import METHODS

TINY = dict(hidden=[16, 16], eval_every=0, eval_episodes=1, batch_size=16, learning_starts=50,
            buffer_min=50, buffer_check_every=50, topology_delta=20, prune_every=20)


def cli_config(args: list[str]):
    return config_from_args(build_parser().parse_args(["train", *args]))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("algo,env", [("td3", "Pendulum-v1"), ("dqn", "CartPole-v1")])
def test_cli_and_api_resolve_to_the_same_config(method, algo, env):
    if algo == "dqn" and method == "rlx2":
        pytest.skip("rlx2's dynamic buffer needs continuous actions (rejected by both paths)")
    cls = {"td3": TD3, "dqn": DQN}[algo]
    api = cls(env, method=method, seed=3, batch_size=64, hidden=[64, 64]).config
    cli = cli_config(["--algo", algo, "--env", env, "--method", method, "--seed", "3", "--batch-size", "64",
                      "--hidden", "64", "64", "--no-progress", "--no-tensorboard", "--device", "auto"])
    assert api.to_dict() == cli.to_dict()


def test_method_defaults_are_applied_without_the_cli():
    from sparserl.config import TrainConfig, resolve
    rlx2 = resolve(TrainConfig(method="rlx2"))
    assert rlx2.nstep == 3 and rlx2.dynamic_buffer is True and rlx2.nstep_delay > 0
    assert resolve(TrainConfig(method="static")).mask_init == "random"
    assert resolve(TrainConfig(method="rigl")).mask_init == "magnitude"
    assert resolve(TrainConfig(method="rlx2", nstep=2)).nstep == 2  # the user's value wins


def test_rlx2_dqn_is_rejected_in_one_line_by_the_cli(capsys):
    assert main(["train", "--algo", "dqn", "--env", "CartPole-v1", "--method", "rlx2", "--steps", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--dynamic-buffer" in err


def test_learn_save_load_predict_round_trip(tmp_path):
    model = TD3("Pendulum-v1", method="rlx2", seed=0, actor_sparsity=0.8, critic_sparsity=0.8, **TINY)
    model.learn(300)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(8, 3)).astype(np.float32)
    actions, state = model.predict(obs)
    assert state is None and actions.shape == (8, 1)
    single, _ = model.predict(obs[0])
    assert single.shape == (1,) and np.allclose(single, actions[0])
    model.save(tmp_path / "model.pt")
    for loaded in (TD3.load(tmp_path / "model.pt"), sparserl.load(tmp_path / "model.pt")):
        assert isinstance(loaded, TD3)
        assert np.array_equal(loaded.predict(obs)[0], actions)
        # the loaded actor keeps the sparse zero pattern
        w = loaded.agent.actor.net.layers[1].weight
        assert float((w == 0).float().mean()) > 0.5
    with pytest.raises(sparserl.api.UserError):
        SAC.load(tmp_path / "model.pt")


# options that make each method change the networks within a 300-step run
METHOD_OPTIONS = {"tiny": dict(actor_sparsity=0.8, critic_sparsity=0.8),
                  "static": dict(actor_sparsity=0.8, critic_sparsity=0.8),
                  "set": dict(actor_sparsity=0.8, critic_sparsity=0.8),
                  "rigl": dict(actor_sparsity=0.8, critic_sparsity=0.8),
                  "rlx2": dict(actor_sparsity=0.8, critic_sparsity=0.8),
                  "gmp": dict(gmp_sparsity=0.8, prune_start=0.1, prune_end=0.5),
                  "structured": dict(prune_start=0.1, prune_end=0.5, min_width=2),
                  "neuron-magnitude": dict(prune_start=0.1, prune_end=0.5, min_width=2)}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_saves_and_loads(method, tmp_path):
    """Save / load for every registered method (the registry, not a hand list): the loaded model
    has the trained architecture, the same zero pattern and acts identically."""
    assert set(METHOD_OPTIONS) <= set(METHODS)
    model = TD3("Pendulum-v1", method=method, seed=0, **{**TINY, "hidden": [32, 32]},
                **METHOD_OPTIONS.get(method, {}))
    model.learn(300)
    model.save(tmp_path / "model.pt")
    loaded = TD3.load(tmp_path / "model.pt")
    assert loaded.config.method == method
    assert loaded.agent.architecture() == model.agent.architecture()
    for name, net in model.agent.networks.items():
        for (key, p), (key2, q) in zip(net.state_dict().items(), loaded.agent.networks[name].state_dict().items()):
            assert key == key2 and torch.equal(p, q), (name, key)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(8, 3)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs)[0], model.predict(obs)[0])
    weights = [w for n, w in model.agent.actor.named_parameters() if n.endswith("weight")]
    if method in ("tiny", "structured", "neuron-magnitude"):  # narrowed or shrunk: fewer neurons
        assert sum(sum(w) for w in loaded.agent.architecture().values()) < 3 * 64
    elif method != "dense":  # sparse: the zero pattern travelled with the weights
        assert float(torch.cat([(w == 0).flatten() for w in weights]).float().mean()) > 0.5


def test_load_a_cli_run_directory(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--algo", "dqn", "--env", "CartPole-v1", "--steps", "200", "--learning-starts", "50",
                 "--hidden", "16", "--eval-every", "0", "--eval-episodes", "1", "--out", str(out),
                 "--no-progress", "--no-tensorboard"]) == 0
    model = sparserl.load(out)
    assert isinstance(model, DQN)
    obs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    expected = model.agent.q(torch.as_tensor(obs)).argmax(-1).numpy()
    assert np.array_equal(model.predict(obs)[0], expected)


def test_a_callback_can_stop_training_and_sees_the_run():
    seen = []

    class StopAt(Callback):
        def on_step(self, run):
            seen.append(run.step)
            return run.step < 77

    model = DQN("CartPole-v1", seed=0, **TINY)
    model.learn(400, callback=StopAt())
    assert model.trainer.step == 77 and seen[-1] == 77
    # a plain function works too, and learn() continues the same run
    model.learn(50, callback=lambda run: run.step < 100)
    assert model.trainer.step == 100


def test_an_env_instance_works_and_is_used():
    env = gym.make("CartPole-v1")
    model = DQN(env, seed=0, **TINY)
    model.learn(120)
    assert model.trainer.env.unwrapped is env.unwrapped
    assert model.config.env == "CartPole-v1"
    mean, _ = model.evaluate(n_episodes=1)
    assert mean > 0


def test_non_deterministic_predict_explores():
    model = TD3("Pendulum-v1", seed=0, exploration_noise=0.5, **TINY)
    model.learn(80)
    obs = np.zeros(3, np.float32)
    noisy = {float(model.predict(obs, deterministic=False)[0][0]) for _ in range(5)}
    assert len(noisy) > 1
    assert len({float(model.predict(obs)[0][0]) for _ in range(3)}) == 1


def test_predict_before_learn_is_one_clear_error():
    with pytest.raises(sparserl.api.UserError, match="learn"):
        TD3("Pendulum-v1").predict(np.zeros(3))


@pytest.mark.parametrize("method", ["dense", "structured"])
def test_a_2d_box_observation_trains(tmp_path, method):
    out = tmp_path / method
    code = main(["train", "--algo", "dqn", "--env", "envs_for_tests:GridObsEnv", "--method", method, "--steps", "300",
                 "--learning-starts", "50", "--hidden", "32", "32", "--batch-size", "16", "--prune-every", "10",
                 "--prune-start", "0.1", "--prune-end", "0.5", "--min-width", "2", "--eval-every", "0",
                 "--eval-episodes", "1", "--out", str(out), "--no-progress", "--no-tensorboard",
                 "--env-kwargs", "{horizon: 15}"])
    assert code == 0
    model = sparserl.load(out)
    obs = np.zeros((5, 7), np.float32)
    assert model.predict(obs)[0].shape == ()
    assert model.predict(np.zeros((3, 5, 7), np.float32))[0].shape == (3,)
    if method == "structured":
        assert sum(model.agent.architecture()["q"]) < 64  # physically shrunk


def test_a_dict_observation_fails_in_one_line(capsys):
    code = main(["train", "--algo", "dqn", "--env", "envs_for_tests:DictObsEnv", "--steps", "10"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "FlattenObservation" in err


def test_env_kwargs_reach_the_env_constructor():
    from envs_for_tests import GridObsEnv  # noqa: F401  (importable: the test dir is on sys.path)
    model = DQN("envs_for_tests:GridObsEnv", seed=0, env_kwargs={"horizon": 7}, **TINY)
    model.learn(60)
    assert model.trainer.env.unwrapped.horizon == 7


def test_importing_sparserl_has_no_side_effects():
    import subprocess
    import sys
    code = ("import matplotlib; before = matplotlib.get_backend(); import sparserl, sparserl.trainer, "
            "sparserl.plots; import sys; assert 'torch' in sys.modules or True; "
            "print(before == matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_model_export_npz_matches_predict(tmp_path):
    from sparserl.runtime import Policy
    model = TD3("Pendulum-v1", method="static", seed=0, actor_sparsity=0.9, critic_sparsity=0.9, **TINY)
    model.learn(120)
    report = model.export(tmp_path / "policy.npz", format="npz")
    assert report is not None
    obs = np.random.default_rng(2).uniform(-1, 1, size=(6, 3)).astype(np.float32)
    np.testing.assert_allclose(Policy.load(tmp_path / "policy.npz").act(obs), model.predict(obs)[0], atol=1e-5)


def test_log_dir_is_locked_and_a_finished_run_is_not_replaced_without_overwrite(tmp_path):
    """log_dir goes through the CLI's lock-and-refuse path: a finished run there is refused in
    one line naming overwrite=True, its files unchanged; a held lock is refused; overwrite=True
    replaces it; a second learn() of the same model continues its own run."""
    from sparserl.rundir import RunDirLock

    log_dir = tmp_path / "run"
    opts = dict(seed=0, learning_starts=50, hidden=[16], eval_every=0, eval_episodes=1, tensorboard=False)
    first = DQN("CartPole-v1", log_dir=log_dir, **opts).learn(100)
    first.learn(50)  # continues its own run in its own directory
    before = {p.name: p.read_bytes() for p in log_dir.iterdir() if p.is_file()}
    with pytest.raises(sparserl.api.UserError) as info:
        DQN("CartPole-v1", log_dir=log_dir, **opts).learn(100)
    assert "\n" not in str(info.value) and "finished run" in str(info.value) and "overwrite=True" in str(info.value)
    assert {p.name: p.read_bytes() for p in log_dir.iterdir() if p.is_file()} == before
    with RunDirLock(log_dir):
        with pytest.raises(sparserl.api.UserError, match="in use"):
            DQN("CartPole-v1", log_dir=log_dir, overwrite=True, **opts).learn(100)
    DQN("CartPole-v1", log_dir=log_dir, overwrite=True, **opts).learn(60)
    assert json.loads((log_dir / "summary.json").read_text())["steps"] == 60
    with pytest.raises(sparserl.api.UserError, match="overwrite='yes'"):
        DQN("CartPole-v1", log_dir=log_dir, overwrite="yes")


def test_a_discrete_space_with_an_offset_is_refused_in_one_line():
    """Discrete(3, start=1): the agent's argmax indexes 0..2, the env expects 1..3; refused
    before anything trains instead of acting with shifted actions."""
    from envs_for_tests import GridObsEnv

    env = GridObsEnv()
    env.action_space = gym.spaces.Discrete(3, start=1)
    model = DQN(env, hidden=[8], eval_every=0, eval_episodes=1, learning_starts=10)
    with pytest.raises(sparserl.api.UserError) as info:
        model.learn(20)
    assert "\n" not in str(info.value) and "start=1" in str(info.value) and "0..2" in str(info.value)
    assert model.trainer is None
