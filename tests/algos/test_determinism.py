"""Same seed -> bit-identical parameters after N updates (Stable-Baselines3's test style)."""
import pytest
import torch

from sparserl.trainer import Trainer

from algo_helpers import tiny_config


def _train(algo, out, seed):
    trainer = Trainer(tiny_config(algo, out, seed=seed))
    trainer.train()
    assert trainer.agent.critic_updates > 0, "the run must have made gradient updates"
    return trainer.agent


@pytest.mark.parametrize("algo", ["dqn", "td3", "sac"])
def test_same_seed_gives_identical_parameters(algo, tmp_path):
    a = _train(algo, tmp_path / "a", seed=3)
    b = _train(algo, tmp_path / "b", seed=3)
    c = _train(algo, tmp_path / "c", seed=4)
    assert a.critic_updates == b.critic_updates
    nets_a, nets_b, nets_c = (x.state_dict()["networks"] for x in (a, b, c))
    assert nets_a.keys() == nets_b.keys()
    n_tensors = 0
    for name in nets_a:
        assert nets_a[name].keys() == nets_b[name].keys()
        for key, tensor in nets_a[name].items():
            assert torch.equal(tensor, nets_b[name][key]), f"{algo}: {name}.{key} differs between equal seeds"
            n_tensors += 1
    assert n_tensors >= 6  # at least one 2-hidden-layer MLP's weights and biases were compared
    # The target networks follow the same path.
    for name, sd in a.state_dict()["targets"].items():
        for key, tensor in sd.items():
            assert torch.equal(tensor, b.state_dict()["targets"][name][key]), f"{algo}: target {name}.{key}"
    # A different seed gives different parameters (every network differs somewhere).
    for name in nets_a:
        assert any(not torch.equal(t, nets_c[name][k]) for k, t in nets_a[name].items()), \
            f"{algo}: {name} identical across different seeds"
