"""Fluctuation importance and mean compensation (folding a pruned neuron's mean into the bias)."""
import torch

from sparserl.networks import MLP
from sparserl.structured import StructuredPruner
from sparserl.structured.importance import NeuronImportance


def constant_neuron_net() -> MLP:
    """4 -> 3 -> 2 where hidden neuron 0 is constant (weights 0, bias 2 -> relu = 2)."""
    torch.manual_seed(0)
    net = MLP(4, 2, hidden=[3])
    with torch.no_grad():
        net.layers[0].weight[0].zero_()
        net.layers[0].bias[0] = 2.0
    return net


def test_fluctuation_importance_matches_hand_computation():
    net = MLP(2, 1, hidden=[2])
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        net.layers[0].bias.copy_(torch.tensor([0.0, 3.0]))
        net.layers[1].weight.copy_(torch.tensor([[2.0, 5.0]]))
    tracker = NeuronImportance(net, "fluctuation", ema=0.0)
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]], requires_grad=True)
    net(x)
    # neuron 0: activations 1, 3 -> population std 1, |W_next col| = 2 -> 2
    # neuron 1: activations 3, 3 -> std 0 -> importance 0 although its activation is large
    (scores,) = tracker.scores()
    assert torch.allclose(scores, torch.tensor([2.0, 0.0]))
    assert torch.allclose(tracker.mean_activation(0), torch.tensor([2.0, 3.0]))


def test_pruning_a_constant_neuron_with_compensation_keeps_outputs():
    net = constant_neuron_net()
    x = torch.randn(32, 4)
    before = net(x).detach()
    pruner = StructuredPruner(net, None, total_updates=10, importance="fluctuation", regularizer="none",
                              min_width=1, shrink=True, compensate=True)
    net(x.requires_grad_())  # record statistics (grad enabled)
    # prune exactly the constant neuron (original index 0) through the public event path
    pruner.schedule.layer_step = lambda t, score, alive, width, min_width: alive & (score > 0)
    assert pruner.prune_now(t=5)
    assert net.hidden_sizes == [2]
    assert torch.allclose(net(x), before, atol=1e-5)


def test_without_compensation_the_constant_contribution_is_lost():
    net = constant_neuron_net()
    x = torch.randn(32, 4)
    before = net(x).detach()
    lost = 2.0 * net.layers[1].weight[:, 0].detach().clone()  # constant activation 2 x its column
    pruner = StructuredPruner(net, None, total_updates=10, importance="fluctuation", regularizer="none",
                              min_width=1, shrink=True, compensate=False)
    net(x.requires_grad_())
    pruner.schedule.layer_step = lambda t, score, alive, width, min_width: alive & (score > 0)
    assert pruner.prune_now(t=5)
    assert torch.allclose(before - net(x), lost.expand_as(before), atol=1e-5)
