import copy

import pytest
import torch

from sparserl.networks import MLP
from sparserl.structured import NeuronImportance, shrink


def _net():
    torch.manual_seed(0)
    return MLP(3, 2, hidden=(5, 4))


def test_activation_importance_matches_hand_computation():
    net = _net()
    tracker = NeuronImportance(net, "activation", ema=0.5)
    x1, x2 = torch.randn(7, 3), torch.randn(9, 3)
    net(x1)
    net(x2)
    L0, L1, L2 = net.layers
    with torch.no_grad():
        def stats(x):
            a0 = torch.relu(L0(x))
            a1 = torch.relu(L1(a0))
            return a0.abs().mean(0), a1.abs().mean(0)
        s1, s2 = stats(x1), stats(x2)
        # EMA: first observation sets the value, then ema <- 0.5 * ema + 0.5 * stat
        e0 = 0.5 * s1[0] + 0.5 * s2[0]
        e1 = 0.5 * s1[1] + 0.5 * s2[1]
        expected = [e0 * L1.weight.norm(dim=0), e1 * L2.weight.norm(dim=0)]
    got = tracker.scores()
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-6)
    norm = tracker.normalized()
    assert torch.allclose(norm[0].mean(), torch.tensor(1.0))


def test_taylor_importance_matches_autograd():
    net = _net()
    tracker = NeuronImportance(net, "taylor", ema=0.0)
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    L0, L1, L2 = net.layers
    a0 = torch.relu(L0(x)).detach().requires_grad_(True)
    a1 = torch.relu(L1(a0))
    a1.retain_grad()
    ((L2(a1) - y) ** 2).mean().backward()
    expected0 = (a0 * a0.grad).abs().mean(0)
    expected1 = (a1 * a1.grad).abs().mean(0).detach()
    got = tracker.scores()
    assert torch.allclose(got[0], expected0, atol=1e-6)
    assert torch.allclose(got[1], expected1, atol=1e-6)
    assert got[0].sum() > 0


def test_recording_can_be_turned_off():
    net = _net()
    tracker = NeuronImportance(net, "activation")
    with torch.no_grad():
        net(torch.randn(4, 3))  # eval / target computation: ignored by default
    assert not tracker.ready()
    with tracker.recording(False):
        net(torch.randn(4, 3))
    assert not tracker.ready()
    tracker.enabled = False
    net(torch.randn(4, 3))
    assert not tracker.ready()
    tracker.enabled = True
    net(torch.randn(4, 3))
    assert tracker.ready()
    # a deep copy (target net) carries the hook but must not record into this tracker
    before = [s.clone() for s in tracker.scores()]
    target = copy.deepcopy(net)
    target(torch.randn(4, 3) * 100)
    assert all(torch.equal(a, b) for a, b in zip(before, tracker.scores()))
    tracker.detach()
    net(torch.randn(4, 3) * 100)
    assert all(torch.equal(a, b) for a, b in zip(before, tracker.scores()))


def test_importance_follows_shrink_and_magnitude():
    net = _net()
    tracker = NeuronImportance(net, "activation")
    net(torch.randn(8, 3))
    raw = tracker._stats[0].clone()
    keep = torch.tensor([0, 3, 4])
    idx = shrink(net, 0, keep)
    tracker.slice(0, idx)
    assert torch.equal(tracker._stats[0], raw[keep])
    net(torch.randn(8, 3))  # forward still records with the new width
    assert tracker.scores()[0].shape == (3,)
    mag = NeuronImportance(net, "magnitude")
    L0, L1 = net.layers[0], net.layers[1]
    expected = torch.sqrt(L0.weight.pow(2).sum(1) + L0.bias.pow(2) + L1.weight.pow(2).sum(0))
    assert torch.allclose(mag.scores()[0], expected.detach())


def test_bad_method():
    with pytest.raises(ValueError, match="importance='l1'"):
        NeuronImportance(_net(), "l1")
    with pytest.raises(ValueError, match="ema"):
        NeuronImportance(_net(), "activation", ema=1.0)
