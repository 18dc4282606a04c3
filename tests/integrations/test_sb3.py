"""Stable-Baselines3 callbacks: exact sparsity, target zero patterns, save/load, neuron surgery."""
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="Stable-Baselines3 not installed (pip install 'sparserl[sb3]')")

from stable_baselines3 import A2C, DQN, PPO, SAC, TD3  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from sparserl.errors import UserError  # noqa: E402
from sparserl.integrations.sb3 import (ARCHITECTURE_ATTRIBUTE, SparseTrainingCallback,  # noqa: E402
                                       StructuredPruningCallback, load, planned_gradient_steps)
from sparserl.sparse import layer_nonzero_counts  # noqa: E402

STEPS = 200
ARCH = dict(net_arch=[32, 32])
ALGOS = {
    "ppo": (PPO, "CartPole-v1", dict(n_steps=64, batch_size=32, n_epochs=2)),
    "a2c": (A2C, "CartPole-v1", dict(n_steps=8)),
    "dqn": (DQN, "CartPole-v1", dict(learning_starts=50, train_freq=2, target_update_interval=20, buffer_size=500)),
    "sac": (SAC, "Pendulum-v1", dict(learning_starts=50, buffer_size=500)),
    "td3": (TD3, "Pendulum-v1", dict(learning_starts=50, buffer_size=500, policy_delay=2)),
}
NETWORKS = {"ppo": {"actor", "critic"}, "a2c": {"actor", "critic"}, "dqn": {"q"},
            "sac": {"actor", "critic"}, "td3": {"actor", "critic"}}


def make(algo, seed=0, **extra):
    cls, env, kwargs = ALGOS[algo]
    return cls("MlpPolicy", env, seed=seed, policy_kwargs=dict(ARCH),  # SB3 adds keys to this dict
               device="cpu", **{**kwargs, **extra})


def weights(module):
    return dict(module.named_parameters())


def targets_of(model, name):
    policy = model.policy
    if name == "q":
        return [policy.q_net_target]
    if name == "critic" and hasattr(policy, "critic_target"):
        return [policy.critic_target]
    if name == "actor" and hasattr(policy, "actor_target"):
        return [policy.actor_target]
    return []


def assert_masked(module, masks):
    params = weights(module)
    for name, mask in masks.items():
        w = params[name].detach()
        assert torch.count_nonzero(w[~mask]) == 0, f"{name}: masked weights are not exactly zero"


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_sparse_callback_keeps_exact_sparsity_targets_and_save_load(algo, tmp_path):
    model = make(algo)
    cb = SparseTrainingCallback("rigl", sparsity=0.9, delta=10)
    model.learn(STEPS, callback=cb)

    assert set(cb.sparse) == NETWORKS[algo]
    for name, sparse in cb.sparse.items():
        params = weights(sparse.module)
        shapes = {n: tuple(params[n].shape) for n in sparse.masks}
        assert sparse.nonzero_counts() == layer_nonzero_counts(shapes, 0.9, "erk")
        assert sparse.n_topology_updates > 0, f"{name}: RigL never updated the topology"
        assert_masked(sparse.module, sparse.masks)
        for target in targets_of(model, name):
            assert_masked(target, sparse.masks)
        assert "step" not in vars(cb.networks[name].optimizer), "step wrapper left on the optimizer"

    path = tmp_path / "model.zip"
    model.save(path)
    loaded = type(model).load(path, device="cpu")
    for name, sparse in cb.sparse.items():
        online = sparse.module
        # the same sub-module in the loaded model, found by its path inside the policy
        path_in_policy = next(p for p, m in model.policy.named_modules() if m is online)
        loaded_online = loaded.policy.get_submodule(path_in_policy)
        for wname in sparse.masks:
            assert torch.equal(weights(loaded_online)[wname], weights(online)[wname])
        assert_masked(loaded_online, sparse.masks)
        for target in targets_of(loaded, name):
            assert_masked(target, sparse.masks)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_schedules_count_each_networks_gradient_steps(algo):
    model = make(algo)
    cb = SparseTrainingCallback("static", sparsity=0.8)
    model.learn(STEPS, callback=cb)
    planned = planned_gradient_steps(model, STEPS)
    counted = cb.sparse["q" if algo == "dqn" else "critic"].step
    assert counted == planned
    if algo == "td3":
        assert cb.sparse["actor"].step == planned // 2   # policy_delay=2
    elif algo != "dqn":
        assert cb.sparse["actor"].step == planned
    assert cb.sparse["q" if algo == "dqn" else "actor"].schedule.t_end == max(1, planned // (2 if algo == "td3" else 1))


@pytest.mark.parametrize("method", ["set", "static"])
def test_other_methods_and_per_network_sparsity(method):
    model = make("ppo")
    cb = SparseTrainingCallback(method, sparsity={"actor": 0.8, "critic": 0.95}, delta=4)
    model.learn(STEPS, callback=cb)
    for name, target in (("actor", 0.8), ("critic", 0.95)):
        sparse = cb.sparse[name]
        shapes = {n: tuple(weights(sparse.module)[n].shape) for n in sparse.masks}
        assert sparse.nonzero_counts() == layer_nonzero_counts(shapes, target, "erk")
        assert_masked(sparse.module, sparse.masks)
        assert (sparse.n_topology_updates > 0) == (method == "set")
    logged = model.logger.name_to_value
    assert logged["sparse/critic_sparsity"] == pytest.approx(cb.sparse["critic"].sparsity())
    assert logged["sparse/actor_forward_flops"] < logged["sparse/actor_forward_flops_dense"]


@pytest.mark.parametrize("method", ["static", "rigl"])
def test_gradient_clipping_sees_the_sparse_gradient(method, monkeypatch):
    """SB3 clips the gradient norm before optimizer.step(): masked entries must already be zero
    then, except on a RigL topology-update step, which needs the dense gradient."""
    seen = []   # (dense gradient expected?, any masked entry non-zero?)
    clip = torch.nn.utils.clip_grad_norm_

    def checking_clip(params, *args, **kwargs):
        params = list(params)
        for sparse in cb.sparse.values():
            grads = weights(sparse.module)
            leaked = any(bool(grads[n].grad[~m].ne(0).any()) for n, m in sparse.masks.items())
            seen.append((method == "rigl" and sparse.schedule.is_update_step(sparse.step + 1), leaked))
        return clip(params, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", checking_clip)   # SB3 looks it up per call
    model = make("ppo")
    cb = SparseTrainingCallback(method, sparsity=0.9, delta=5)
    model.learn(STEPS, callback=cb)
    assert seen and all(leaked == dense for dense, leaked in seen)
    assert any(dense for dense, _ in seen) == (method == "rigl")


def test_bad_inputs_raise_user_error():
    with pytest.raises(UserError, match="method"):
        SparseTrainingCallback("dense")
    model = make("ppo")
    with pytest.raises(UserError, match="unknown network"):
        model.learn(64, callback=SparseTrainingCallback("static", sparsity={"q": 0.9}))
    with pytest.raises(UserError, match="sparsity"):
        make("ppo").learn(64, callback=SparseTrainingCallback("static", sparsity=1.5))
    episodic = make("dqn", train_freq=(1, "episode"))   # gradient steps unknown in advance
    with pytest.raises(UserError, match="planned_updates"):
        episodic.learn(64, callback=SparseTrainingCallback("rigl"))


# ------------------------------------------------------------------------------ structured
PRUNE = dict(prune_every=2, prune_start=0.1, prune_end=0.8, min_width=2)


def ppo_outputs(model, obs):
    with torch.no_grad():
        obs_t = torch.as_tensor(obs)
        dist = model.policy.get_distribution(obs_t)
        return dist.distribution.logits.clone(), model.policy.predict_values(obs_t).clone()


def chain_params(model):
    return sum(p.numel() for p in model.policy.parameters())


def test_structured_callback_shrinks_ppo_and_load_restores_shape(tmp_path):
    model = make("ppo")
    dense_params = chain_params(model)
    cb = StructuredPruningCallback(**PRUNE)
    model.learn(STEPS, callback=cb)

    arch = getattr(model, ARCHITECTURE_ATTRIBUTE)
    assert arch == {"actor": cb.pruners["actor"].architecture(), "critic": cb.pruners["critic"].architecture()}
    assert sum(map(sum, arch.values())) < 4 * 32, "no neuron was removed"
    assert chain_params(model) < dense_params
    policy_net = model.policy.mlp_extractor.policy_net
    assert [policy_net[0].out_features, policy_net[2].out_features] == arch["actor"]
    assert model.policy.action_net.in_features == arch["actor"][-1]
    # the optimizer steps exactly the (new) parameters, with state of their shapes
    opt = model.policy.optimizer
    stepped = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in stepped} == {id(p) for p in model.policy.parameters()}
    for p in stepped:
        for v in opt.state.get(p, {}).values():
            if torch.is_tensor(v) and v.dim() > 0:
                assert v.shape == p.shape
    assert model.logger.name_to_value["structured/actor_neurons_alive"] == sum(arch["actor"])

    model.learn(64, reset_num_timesteps=False)   # the shrunk model keeps training in plain SB3

    path = tmp_path / "pruned.zip"
    model.save(path)
    loaded = load(path, PPO, env=model.get_env(), device="cpu")
    assert type(loaded) is PPO
    assert getattr(loaded, ARCHITECTURE_ATTRIBUTE) == arch
    saved_state, loaded_state = model.policy.state_dict(), loaded.policy.state_dict()
    assert saved_state.keys() == loaded_state.keys()
    for k in saved_state:
        assert torch.equal(saved_state[k], loaded_state[k]), k
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    for a, b in zip(ppo_outputs(model, obs), ppo_outputs(loaded, obs)):
        assert torch.equal(a, b)
    loaded.learn(64)   # optimizer state was rebuilt at the shrunk shapes


def test_structured_surgery_keeps_the_masked_networks_outputs():
    model = make("ppo")
    cb = StructuredPruningCallback(shrink=False, **PRUNE)
    model.learn(STEPS, callback=cb)
    masked = sum(p.num_masked() for p in cb.pruners.values())
    assert masked > 0, "nothing was pruned"
    before_params = chain_params(model)
    obs = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    before = ppo_outputs(model, obs)

    assert cb.shrink_now()

    assert chain_params(model) < before_params
    assert sum(p.num_masked() for p in cb.pruners.values()) == 0
    for a, b in zip(before, ppo_outputs(model, obs)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


STRUCTURED_CHAINS = {"a2c": {"actor", "critic"}, "dqn": {"q"}, "sac": {"actor", "critic.qf0", "critic.qf1"},
                     "td3": {"actor", "critic.qf0", "critic.qf1"}}
TARGET_PAIRS = {"a2c": (), "dqn": (("q_net", "q_net_target"),), "sac": (("critic", "critic_target"),),
                "td3": (("actor", "actor_target"), ("critic", "critic_target"))}


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("algo", sorted(STRUCTURED_CHAINS))
def test_structured_other_algorithms_shrink_targets_and_reload(algo, tmp_path):
    model = make(algo)
    cb = StructuredPruningCallback(**PRUNE)
    model.learn(STEPS, callback=cb)
    arch = getattr(model, ARCHITECTURE_ATTRIBUTE)
    assert set(arch) == STRUCTURED_CHAINS[algo]
    assert any(w < 32 for widths in arch.values() for w in widths), "no neuron was removed"
    for online, target in TARGET_PAIRS[algo]:
        assert shapes(getattr(model.policy, online)) == shapes(getattr(model.policy, target))
    if algo == "sac":   # log_std reads the last hidden layer too: it must follow its shrinks
        actor = model.policy.actor
        assert actor.mu.in_features == actor.log_std.in_features == arch["actor"][-1]

    path = tmp_path / f"{algo}.zip"
    model.save(path)
    loaded = load(path, type(model), env=model.get_env(), device="cpu")
    loaded_state = loaded.policy.state_dict()
    for k, v in model.policy.state_dict().items():
        assert torch.equal(v, loaded_state[k]), k
    loaded.learn(60)   # resumes with the shrunk networks and their optimizer state


def test_structured_rejects_gsde():
    model = PPO("MlpPolicy", "Pendulum-v1", use_sde=True, n_steps=64, batch_size=32, seed=0, device="cpu")
    with pytest.raises(UserError, match="use_sde"):
        model.learn(64, callback=StructuredPruningCallback())


@pytest.mark.parametrize("algo_name,env_id", [("DQN", "CartPole-v1"), ("TD3", "Pendulum-v1"), ("SAC", "Pendulum-v1"),
                                              ("PPO", "CartPole-v1")])
def test_sparserl_export_accepts_an_sb3_zip(tmp_path, algo_name, env_id, capsys):
    """A sparse SB3 model exports through `sparserl export`; the npz runtime gives SB3's own
    deterministic action."""
    import stable_baselines3 as sb3_pkg

    from sparserl.cli import main
    from sparserl.integrations.sb3 import SparseTrainingCallback
    from sparserl.runtime import Policy

    cls = getattr(sb3_pkg, algo_name)
    kw = dict(policy_kwargs=dict(net_arch=[32, 32], activation_fn=torch.nn.ReLU), seed=0)
    kw.update(dict(n_steps=64, batch_size=32) if algo_name == "PPO" else dict(learning_starts=50, buffer_size=500))
    model = cls("MlpPolicy", env_id, **kw)
    model.learn(150, callback=SparseTrainingCallback("static", sparsity=0.8))
    model.save(tmp_path / "model.zip")
    out = tmp_path / "policy.npz"
    assert main(["export", str(tmp_path / "model.zip"), "--format", "npz", "--out", str(out)]) == 0
    obs = np.stack([model.observation_space.sample() for _ in range(16)]).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    got = Policy.load(out).act(obs)
    if algo_name in ("DQN", "PPO"):
        assert np.array_equal(np.asarray(got).astype(int).ravel(), np.asarray(expected).ravel())
    else:
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_sb3_ppo_with_its_default_tanh_mlp_exports(tmp_path, env_id):
    """SB3 PPO's defaults (Tanh MLPs; a Gaussian mean clipped to the box for Box actions)
    export to npz and C and act as ``predict(deterministic=True)``."""
    import stable_baselines3 as sb3_pkg

    from sparserl.cli import main
    from sparserl.export.c_format import compile_c, find_compiler
    from sparserl.runtime import CPolicy, Policy
    model = sb3_pkg.PPO("MlpPolicy", env_id, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[16, 16]),
                        seed=0, device="cpu")
    assert isinstance(model.policy.mlp_extractor.policy_net[1], torch.nn.Tanh)
    model.learn(64)
    model.save(tmp_path / "ppo.zip")
    obs = np.stack([model.observation_space.sample() for _ in range(64)]).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    policies = []
    assert main(["export", str(tmp_path / "ppo.zip"), "--format", "npz", "--out", str(tmp_path / "p.npz")]) == 0
    policies.append(Policy.load(tmp_path / "p.npz"))
    if find_compiler() is not None:
        assert main(["export", str(tmp_path / "ppo.zip"), "--format", "c", "--out", str(tmp_path / "p.c")]) == 0
        policies.append(CPolicy(compile_c([tmp_path / "p.c"], tmp_path / "p.so")))
    for policy in policies:
        got = policy.act(obs)
        if env_id == "CartPole-v1":
            assert np.array_equal(np.asarray(got).astype(int).ravel(), np.asarray(expected).ravel())
        else:
            np.testing.assert_allclose(got, expected, atol=1e-5)


def test_sparserl_eval_runs_an_sb3_zip_or_says_why_not(tmp_path, capsys):
    import stable_baselines3 as sb3_pkg

    from sparserl.cli import main
    model = sb3_pkg.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[16]),
                        seed=0, device="cpu")
    model.save(tmp_path / "ppo.zip")
    assert main(["eval", str(tmp_path / "ppo.zip"), "--env", "CartPole-v1", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "SB3 PPO" in out and "return" in out and "over 2 episodes" in out
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    for argv, needle in ((["eval", str(tmp_path / "ppo.zip")], "--env"),
                         (["eval", str(tmp_path / "junk.zip"), "--env", "CartPole-v1"], "not a Stable-Baselines3"),
                         (["eval", str(tmp_path / "ppo.zip"), "--env", "Pendulum-v1"], "Pendulum-v1")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and needle in err and "Traceback" not in err, err


class _Payload:
    """Pickles to a call that creates ``marker``: what a crafted zip's pickle could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _craft_zip(src, dst, marker, keys):
    """Copy of the SB3 zip ``src`` whose ``data`` values at ``keys`` carry the payload pickle."""
    import base64
    import json
    import pickle
    import zipfile

    blob = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            content = zin.read(name)
            if name == "data":
                data = json.loads(content)
                for key in keys:
                    item = data.get(key)
                    data[key] = {**item, ":serialized:": blob} if isinstance(item, dict) else {
                        ":type:": "<class 'object'>", ":serialized:": blob}
                content = json.dumps(data).encode()
            zout.writestr(name, content)


@pytest.mark.parametrize("algo_name,env_id", [("DQN", "CartPole-v1"), ("TD3", "Pendulum-v1"),
                                              ("PPO", "CartPole-v1")])
def test_sb3_zip_export_never_unpickles_the_zip(tmp_path, algo_name, env_id, capsys):
    """Every pickled value of the zip's data (policy class, spaces, kwargs, schedules and an
    extra key) carries a payload: the export works from the readable JSON and nothing runs."""
    import stable_baselines3 as sb3_pkg

    from sparserl.cli import main
    from sparserl.runtime import Policy

    cls = getattr(sb3_pkg, algo_name)
    kw = dict(n_steps=64, batch_size=32) if algo_name == "PPO" else dict(learning_starts=50, buffer_size=500)
    model = cls("MlpPolicy", env_id, policy_kwargs=dict(net_arch=[16], activation_fn=torch.nn.ReLU), seed=0,
                device="cpu", **kw)
    model.save(tmp_path / "model.zip")
    marker = tmp_path / "pwned"
    keys = ["policy_class", "policy_kwargs", "observation_space", "action_space", "lr_schedule",
            "extra_payload"]
    _craft_zip(tmp_path / "model.zip", tmp_path / "crafted.zip", marker, keys)
    out = tmp_path / "policy.npz"
    assert main(["export", str(tmp_path / "crafted.zip"), "--format", "npz", "--out", str(out)]) == 0
    assert not marker.exists()
    obs = np.stack([model.observation_space.sample() for _ in range(8)]).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    got = Policy.load(out).act(obs)
    if algo_name == "TD3":
        np.testing.assert_allclose(got, expected, atol=1e-5)
    else:
        assert np.array_equal(np.asarray(got).astype(int).ravel(), np.asarray(expected).ravel())


def test_sb3_zip_with_an_unreadable_kwarg_fails_in_one_line_without_unpickling(tmp_path, capsys):
    from sparserl.cli import main

    model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8], activation_fn=torch.nn.ReLU),
                device="cpu")
    model.save(tmp_path / "model.zip")
    marker = tmp_path / "pwned"
    _craft_zip(tmp_path / "model.zip", tmp_path / "crafted.zip", marker, ["policy_kwargs"])
    import json
    import zipfile
    with zipfile.ZipFile(tmp_path / "crafted.zip") as z:
        parts = {n: z.read(n) for n in z.namelist()}
    data = json.loads(parts["data"])
    data["policy_kwargs"]["features_extractor_class"] = "<class 'evil.Extractor'>"
    parts["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "crafted.zip", "w") as z:
        for n, c in parts.items():
            z.writestr(n, c)
    rc = main(["export", str(tmp_path / "crafted.zip"), "--format", "npz", "--out", str(tmp_path / "p.npz")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "features_extractor_class" in err
    assert not marker.exists()


# --------------------------------------------------------------------------- one source of defaults
#: every method and the SB3 callback that offers it (the others have no SB3 form: dense needs no
#: callback, tiny is a net_arch, rlx2's n-step target and buffer live inside the algorithm, gmp
#: has no callback yet)
SB3_CALLBACKS = {"static": SparseTrainingCallback, "set": SparseTrainingCallback, "rigl": SparseTrainingCallback,
                 "structured": StructuredPruningCallback, "neuron-magnitude": StructuredPruningCallback}
NO_SB3_FORM = {"dense", "tiny", "rlx2", "gmp"}


class _Recorder:
    """Records the keyword arguments a core class (SparseTraining, StructuredPruner) is built with."""

    def __init__(self, cls, calls):
        self.cls, self.calls = cls, calls

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self.cls(*args, **kwargs)


def _native_build_kwargs(monkeypatch, method):
    """What `sparserl train --method <method>` (defaults) builds its core objects with (TD3)."""
    import gymnasium as gym
    from sparserl.algos import make_agent
    from sparserl.config import TrainConfig, resolve
    from sparserl.methods import attach_method
    import sparserl.methods.sparse as sparse_mod
    import sparserl.structured as structured_mod

    calls = []
    monkeypatch.setattr(sparse_mod, "SparseTraining", _Recorder(sparse_mod.SparseTraining, calls))
    monkeypatch.setattr(structured_mod, "StructuredPruner", _Recorder(structured_mod.StructuredPruner, calls))
    cfg = resolve(TrainConfig(method=method, algo="td3", steps=10_000, hidden=[16, 16]))
    env = gym.make("Pendulum-v1")
    attach_method(make_agent(cfg, env.observation_space, env.action_space), cfg, 1000)
    monkeypatch.undo()
    return cfg, calls


@pytest.mark.parametrize("method", sorted(SB3_CALLBACKS))
def test_sb3_callback_defaults_equal_the_cli_defaults(monkeypatch, method):
    """A callback with no options builds its masks / pruners with exactly the keyword arguments
    that `sparserl train --method <method>` uses (both go through the method's builder; the
    structured callback once pruned over 0.1-0.8 while the CLI used 0.05-0.5)."""
    from sparserl.config import TrainConfig, resolve
    import sparserl.methods.sparse as sparse_mod
    import sparserl.structured as structured_mod

    cli_cfg, native = _native_build_kwargs(monkeypatch, method)
    calls = []
    monkeypatch.setattr(sparse_mod, "SparseTraining", _Recorder(sparse_mod.SparseTraining, calls))
    monkeypatch.setattr(structured_mod, "StructuredPruner", _Recorder(structured_mod.StructuredPruner, calls))
    cb = SB3_CALLBACKS[method](method) if SB3_CALLBACKS[method] is StructuredPruningCallback \
        else SparseTrainingCallback(method, sparsity=cli_cfg.actor_sparsity)
    cb.planned_updates = 1000
    make("td3").learn(300, callback=cb)
    assert native and calls
    # per-network values (schedule length, which layers, seeds) differ by construction
    per_network = {"planned_updates", "total_updates", "t_end", "stop_step", "layers", "generator", "mirrors", "backend"}
    ours = [{k: v for k, v in kw.items() if k not in per_network} for kw in native]
    theirs = [{k: v for k, v in kw.items() if k not in per_network} for kw in calls]
    assert all(kw == ours[0] for kw in ours) and all(kw == ours[0] for kw in theirs), (ours[0], theirs[0])
    # and the typed options agree with the resolved CLI config, option by option
    import dataclasses
    derived = {"buffer_min", "nstep_delay", "critic_target_neuron_fraction"}  # from the run's length and sizes
    cli = dataclasses.asdict(resolve(TrainConfig(method=method, steps=10_000)).method_block())
    ours = dataclasses.asdict(cb.method_options.options)
    assert {k: v for k, v in ours.items() if k not in derived} == {k: v for k, v in cli.items() if k not in derived}


def test_every_method_has_an_sb3_form_or_is_listed_without_one():
    from sparserl.methods import METHODS
    assert set(SB3_CALLBACKS) | NO_SB3_FORM == set(METHODS) and not set(SB3_CALLBACKS) & NO_SB3_FORM


def test_sb3_callbacks_take_the_older_keyword_spellings():
    cb = SparseTrainingCallback("rigl", delta=7, init="random", reset_optimizer_state=False)
    opts = cb.method_options.options
    assert (opts.topology_delta, opts.mask_init, opts.reset_adam) == (7, "random", False)
    with pytest.raises(UserError, match="delta=7 and topology_delta=8"):
        SparseTrainingCallback("rigl", delta=7, topology_delta=8)
    with pytest.raises(UserError, match="drop_fraction 2"):
        SparseTrainingCallback("rigl", drop_fraction=2)


def test_structured_callback_builds_pruners_with_the_cli_schedule():
    # the defaults reach the pruners it builds, not only its signature
    from sparserl.config import TrainConfig

    cfg = TrainConfig()
    model = make("dqn")
    cb = StructuredPruningCallback(planned_updates=1000)
    model.learn(60, callback=cb)
    for p in cb.pruners.values():
        assert p.importance.method == cfg.importance
        updates = p.schedule.total_updates
        assert (p.schedule.start, p.schedule.end) == (round(cfg.prune_start * updates), round(cfg.prune_end * updates))


def test_structured_callback_passes_the_cli_only_options_to_its_pruners():
    # issue 22: reg_mode, threshold scope, recovery scale and the threshold rule reach the pruners
    model = make("dqn")
    cb = StructuredPruningCallback(planned_updates=1000, reg_mode="proximal", threshold_scope="global",
                                   recovery_reg_scale=0.5, rule="threshold")
    model.learn(300, callback=cb)
    assert cb.pruners
    for p in cb.pruners.values():
        assert p.reg_mode == "proximal" and float(p.penalty()) == 0.0
        assert (p.schedule.scope, p.schedule.recovery_reg_scale, p.schedule.rule) == ("global", 0.5, "threshold")
    with pytest.raises(UserError, match="reg_mode"):
        make("dqn").learn(60, callback=StructuredPruningCallback(reg_mode="bogus"))


class _RaiseAt(BaseCallback):
    """Another user callback that raises inside learn() (issue 27.16)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.n_calls == self.at:
            raise RuntimeError("user callback failed")
        return True


def _optimizers(model):
    policy = model.policy
    return [m.optimizer for m in (getattr(policy, n, None) for n in ("actor", "critic", "q_net")) if m is not None] \
        or [policy.optimizer]


@pytest.mark.parametrize("algo", ["td3", "ppo"])
@pytest.mark.parametrize("make_cb", [lambda: SparseTrainingCallback("rigl", sparsity=0.5, delta=10),
                                     lambda: StructuredPruningCallback(prune_every=10, min_width=4)],
                         ids=["sparse", "structured"])
def test_callback_uninstalls_when_another_callback_raises(algo, make_cb):
    model = make(algo)
    cb = make_cb()
    with pytest.raises(RuntimeError, match="user callback failed"):
        model.learn(STEPS, callback=[cb, _RaiseAt(60)])
    assert all("step" not in vars(opt) for opt in _optimizers(model)), "the optimizer wrapper stayed installed"
    model.learn(STEPS, callback=cb, reset_num_timesteps=False)  # the same callback continues (was: "already wrapped")
    model.learn(STEPS, callback=make_cb(), reset_num_timesteps=False)  # and so does a new one
    assert all("step" not in vars(opt) for opt in _optimizers(model))


def test_a_wrapper_left_by_an_env_exception_is_removed_by_the_next_learn():
    model = make("td3")
    cb = SparseTrainingCallback("rigl", sparsity=0.5, delta=10)
    original_step = model.env.step

    def broken(*args, **kwargs):
        if model.num_timesteps >= 80:
            raise OSError("simulator lost")
        return original_step(*args, **kwargs)
    model.env.step = broken
    with pytest.raises(OSError, match="simulator lost"):
        model.learn(STEPS, callback=cb)
    model.env.step = original_step
    model.learn(STEPS, callback=SparseTrainingCallback("set", sparsity=0.5, delta=10), reset_num_timesteps=False)
    assert all("step" not in vars(opt) for opt in _optimizers(model))
