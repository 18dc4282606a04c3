"""Issue 22 options end to end: ``--reg-mode``, ``--prune-networks`` and the per-network
neuron targets reach the pruners, are one-line user errors when wrong, old configs still load,
and short runs prune exactly the chosen networks to their own targets."""
import pytest
import torch
import yaml

from sparserl.cli import main
from sparserl.config import TrainConfig, config_from_options, load_yaml, resolve
from sparserl.errors import UserError
from sparserl.trainer import Trainer

NEW_FIELDS = ("reg_mode", "prune_networks", "critic_target_neuron_fraction")


def _cfg(tmp_path, algo="td3", **kw):
    base = dict(algo=algo, env="Pendulum-v1" if algo != "dqn" else "CartPole-v1", method="structured",
                steps=400, learning_starts=100, hidden=[16, 16], batch_size=16, eval_every=0, eval_episodes=1,
                checkpoint_every=0, progress=False, tensorboard=False, out=str(tmp_path), torch_threads=1)
    base.update(kw)
    return resolve(TrainConfig(**base))


def _pruners(trainer):
    return {path: p for plugins in trainer.agent.plugins.values() for plugin in plugins
            for path, p in plugin.pruners.items()}


def test_defaults_keep_the_old_behaviour(tmp_path):
    cfg = _cfg(tmp_path)
    assert (cfg.reg_mode, cfg.prune_networks) == ("loss", "all")
    assert cfg.critic_target_neuron_fraction == cfg.target_neuron_fraction  # resolved, written to config.yaml
    pruners = _pruners(Trainer(cfg))
    assert sorted(pruners) == ["actor.net", "critic.q1", "critic.q2"]
    assert all(p.reg_mode == "loss" and p.schedule.target_fraction == cfg.target_neuron_fraction
               for p in pruners.values())


def test_reg_mode_and_targets_reach_the_pruners(tmp_path):
    cfg = _cfg(tmp_path, reg_mode="proximal", target_neuron_fraction=0.5, critic_target_neuron_fraction=0.25)
    pruners = _pruners(Trainer(cfg))
    assert all(p.reg_mode == "proximal" for p in pruners.values())
    assert pruners["actor.net"].schedule.target_fraction == 0.5
    assert pruners["critic.q1"].schedule.target_fraction == pruners["critic.q2"].schedule.target_fraction == 0.25
    # the proximal step size is the network's own learning rate
    assert pruners["actor.net"].learning_rate() == cfg.lr


@pytest.mark.parametrize("which,expected", [("actor", ["actor.net"]), ("critic", ["critic.q1", "critic.q2"]),
                                            ("all", ["actor.net", "critic.q1", "critic.q2"])])
def test_prune_networks_selects_the_pruned_networks(tmp_path, which, expected):
    assert sorted(_pruners(Trainer(_cfg(tmp_path, algo="sac", prune_networks=which)))) == expected


@pytest.mark.parametrize("field,value,match", [
    ("reg_mode", "prox", "--reg-mode 'prox': unknown; allowed: one of loss, proximal"),
    ("prune_networks", "q", "--prune-networks 'q': unknown; allowed: one of actor, critic, all"),
    ("critic_target_neuron_fraction", 1.0, "--critic-target-neuron-fraction 1.0: out of range"),
    ("critic_target_neuron_fraction", 0.0, r"--critic-target-neuron-fraction 0.0: out of range; allowed: .*in \(0, 1\)"),
    ("target_neuron_fraction", 0.0, r"--target-neuron-fraction 0.0: out of range; allowed: in \(0, 1\)"),
])
def test_bad_values_are_one_line_user_errors(tmp_path, field, value, match):
    with pytest.raises(UserError, match=match) as exc:
        _cfg(tmp_path, **{field: value})
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("which", ["actor", "critic"])
def test_dqn_has_only_all(tmp_path, which):
    with pytest.raises(UserError) as exc:
        _cfg(tmp_path, algo="dqn", prune_networks=which)
    msg = str(exc.value)
    assert f"--prune-networks {which}" in msg and "allowed with --algo dqn: all" in msg and "\n" not in msg
    assert sorted(_pruners(Trainer(_cfg(tmp_path, algo="dqn")))) == ["q"]


def test_cli_rejects_dqn_actor_with_exit_2(tmp_path, capsys):
    code = main(["train", "--algo", "dqn", "--env", "CartPole-v1", "--method", "structured",
                 "--prune-networks", "actor", "--steps", "300", "--out", str(tmp_path / "r"), "--no-progress",
                 "--no-tensorboard"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "--prune-networks actor" in err


def test_old_config_without_the_new_fields_loads(tmp_path):
    cfg = _cfg(tmp_path / "run", target_neuron_fraction=0.6)
    data = cfg.to_dict()
    for key in NEW_FIELDS:
        data.pop(key)
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = config_from_options(load_yaml(path), source=str(path))
    assert (loaded.reg_mode, loaded.prune_networks, loaded.critic_target_neuron_fraction) == ("loss", "all", 0.6)
    assert {k: v for k, v in loaded.to_dict().items() if k not in NEW_FIELDS} == \
        {k: v for k, v in cfg.to_dict().items() if k not in NEW_FIELDS}


def test_prune_actor_only_leaves_critics_full_width_and_meets_each_target_exactly(tmp_path):
    # cubic rule: exactly floor(target * width) neurons per layer are gone by prune_end
    cfg = _cfg(tmp_path, steps=500, hidden=[32, 32], prune_networks="actor", threshold_rule="cubic",
               prune_every=20, prune_start=0.1, prune_end=0.6, target_neuron_fraction=0.75,
               critic_target_neuron_fraction=0.25, reg_mode="proximal", policy_delay=1)
    trainer = Trainer(cfg)
    trainer.train()
    arch = trainer.agent.architecture()
    assert arch["actor.net"] == [8, 8]  # 32 - floor(0.75 * 32)
    assert arch["critic.q1"] == arch["critic.q2"] == [32, 32]
    # both networks pruned, each to its own target
    cfg = _cfg(tmp_path / "b", steps=500, hidden=[32, 32], threshold_rule="cubic", prune_every=20,
               prune_start=0.1, prune_end=0.6, target_neuron_fraction=0.75, critic_target_neuron_fraction=0.25,
               policy_delay=1)
    trainer = Trainer(cfg)
    trainer.train()
    arch = trainer.agent.architecture()
    assert arch["actor.net"] == [8, 8]
    assert arch["critic.q1"] == arch["critic.q2"] == [24, 24]  # 32 - floor(0.25 * 32)
    for plugins in trainer.agent.plugins.values():
        for p in plugins[0].pruners.values():
            assert all(torch.isfinite(l.weight).all() for l in p.chain)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_threshold_rule_run_ends_at_exactly_the_target(tmp_path, scope):
    # the threshold rule decides the pace (and, globally, the widths); the last event meets the target
    cfg = _cfg(tmp_path, steps=500, hidden=[32, 32], threshold_rule="threshold", threshold_scope=scope,
               prune_every=20, prune_start=0.1, prune_end=0.6, target_neuron_fraction=0.75, policy_delay=1)
    trainer = Trainer(cfg)
    trainer.train()
    arch = trainer.agent.architecture()
    for path in ("actor.net", "critic.q1", "critic.q2"):
        if scope == "layer":
            assert arch[path] == [8, 8], (path, arch)  # 32 - floor(0.75 * 32) per layer
        else:
            assert sum(arch[path]) == 16 and min(arch[path]) >= cfg.min_width, (path, arch)  # 64 - 48 in all
