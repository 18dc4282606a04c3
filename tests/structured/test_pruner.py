import copy
import io

import pytest
import torch
import torch.nn.functional as F

from sparserl.networks import MLP
from sparserl.structured import StructuredPruner


def _data(n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 6, generator=g)
    y = torch.sin(2 * X[:, :1]) + X[:, 1:2] * X[:, 2:3]  # needs only 3 of 6 inputs
    return X, y


def _train(net, opt, pruner, X, y, steps, seed=0, target=None):
    g = torch.Generator().manual_seed(seed)
    changes = 0
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (128,), generator=g)
        loss = F.mse_loss(net(X[idx]), y[idx])
        if pruner is not None:
            loss = loss + pruner.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if pruner is not None:
            changes += int(pruner.after_optimizer_step())
        if target is not None:  # Polyak update as in TD3/SAC
            with torch.no_grad():
                for p, tp in zip(net.parameters(), target.parameters()):
                    tp.mul_(0.99).add_(0.01 * p)
    return changes


@pytest.mark.parametrize("importance", ["activation", "taylor"])
def test_end_to_end_prunes_stays_accurate_and_round_trips(importance):
    torch.manual_seed(0)
    X, y = _data()
    net = MLP(6, 1, hidden=(64, 64))
    target = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    n_params = sum(p.numel() for p in net.parameters())
    steps = 1200
    pruner = StructuredPruner(net, opt, total_updates=steps, importance=importance,
                              regularizer="importance", reg_lambda=1e-3, prune_every=100,
                              prune_start=0.1, prune_end=0.7, min_width=4, ema=0.9,
                              max_ratio=0.75, mirrors=[target])
    changes = _train(net, opt, pruner, X, y, steps, target=target)
    with torch.no_grad():
        mse = F.mse_loss(net(X), y).item()
    summary = pruner.summary()
    assert changes >= 2
    assert summary["weights_removed_frac"] > 0.8
    assert summary["neurons_removed_frac"] >= 0.6  # ~0.7-0.8 observed
    assert mse < 0.1 * y.var().item()  # still fits: ~3-4% of the variance (dense ~0.5%)
    assert sum(p.numel() for p in net.parameters()) < 0.2 * n_params  # physically smaller
    assert pruner.architecture() == net.hidden_sizes == target.hidden_sizes
    assert [a for a, _ in pruner.neuron_counts()] == pruner.architecture()
    # every optimizer param is a live network parameter
    live = {id(p) for p in net.parameters()}
    assert all(id(p) in live for g in opt.param_groups for p in g["params"])
    # checkpoint round trip into a freshly built MLP
    sd = copy.deepcopy(net.state_dict())
    buf = io.BytesIO()
    torch.save(pruner.state_dict(), buf)
    buf.seek(0)
    psd = torch.load(buf, weights_only=True)  # checkpoint-safe types only
    rebuilt = MLP(6, 1, hidden=pruner.architecture())
    rebuilt.load_state_dict(sd)
    with torch.no_grad():  # evaluation must not feed the importance EMA
        assert torch.equal(rebuilt(X[:50]), net(X[:50]))
    opt2 = torch.optim.Adam(rebuilt.parameters(), lr=3e-3)
    resumed = StructuredPruner(rebuilt, opt2, total_updates=steps, importance=importance,
                               reg_lambda=1e-3, prune_every=100, prune_start=0.1, prune_end=0.7)
    resumed.load_state_dict(psd)
    assert resumed.step == steps and resumed.neuron_counts() == pruner.neuron_counts()
    assert torch.allclose(resumed.penalty(), pruner.penalty())


def test_magnitude_baseline_without_regularizer():
    torch.manual_seed(1)
    X, y = _data(512)
    net = MLP(6, 1, hidden=(32, 32))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    pruner = StructuredPruner(net, opt, total_updates=300, importance="magnitude",
                              regularizer="none", prune_every=50, prune_start=0.2,
                              prune_end=0.8, target_fraction=0.5, rule="cubic")
    assert pruner.penalty().item() == 0.0
    _train(net, opt, pruner, X, y, 300)
    assert pruner.architecture() == [16, 16]  # exactly the cubic target at the end


def test_masking_mode_equals_shrinking_and_stays_zero():
    torch.manual_seed(2)
    X, y = _data(512)
    net = MLP(6, 1, hidden=(24, 16, 12))
    target = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    pruner = StructuredPruner(net, opt, total_updates=200, shrink=False, reg_lambda=1e-3,
                              prune_every=40, prune_start=0.2, prune_end=0.6, mirrors=[target],
                              ema=0.8)
    _train(net, opt, pruner, X, y, 200, target=target)
    assert net.hidden_sizes == [24, 16, 12]  # nothing removed physically
    assert pruner.num_masked() > 0
    for layer, alive in enumerate(pruner.alive):  # masked rows stay exactly zero after training
        assert torch.all(net.layers[layer].weight[~alive] == 0)
        assert torch.all(net.layers[layer + 1].weight[:, ~alive] == 0)
        assert torch.all(target.layers[layer].weight[~alive] == 0)
    before, before_t = net(X[:64]), target(X[:64])
    assert pruner.shrink_now()
    assert net.hidden_sizes == [int(a.sum()) for a in pruner.alive] == target.hidden_sizes
    assert (net(X[:64]) - before).abs().max() <= 1e-6
    assert (target(X[:64]) - before_t).abs().max() <= 1e-6
    _train(net, opt, pruner, X, y, 5)  # optimizer still works after the late shrink


def test_pause_and_no_recording():
    torch.manual_seed(3)
    X, y = _data(256)
    net = MLP(6, 1, hidden=(16, 16))
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    pruner = StructuredPruner(net, opt, total_updates=100, prune_every=10, prune_start=0.1,
                              prune_end=1.0, min_width=2)
    with pruner.no_recording():
        net(X[:8])
    assert not pruner.importance.ready()
    pruner.set_paused(True)
    assert _train(net, opt, pruner, X, y, 60) == 0
    assert pruner.architecture() == [16, 16] and pruner.step == 60
    pruner.set_paused(False)
    assert _train(net, opt, pruner, X, y, 40) > 0
    assert min(pruner.architecture()) >= 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(importance="random"), "importance='random'; allowed: activation, fluctuation, taylor, magnitude"),
    (dict(regularizer="l1"), "regularizer='l1'; allowed"),
    (dict(reg_lambda=-1.0), "reg_lambda"),
    (dict(min_width=0), "min_width"),
    (dict(prune_every=0), "prune_every"),
    (dict(mirrors=[MLP(6, 1, hidden=(8,))]), "mirror"),
])
def test_argument_validation(kwargs, match):
    net = MLP(6, 1, hidden=(16, 16))
    with pytest.raises(ValueError, match=match):
        StructuredPruner(net, None, total_updates=100, **kwargs)


def test_load_state_dict_requires_matching_architecture():
    net = MLP(6, 1, hidden=(16, 16))
    pruner = StructuredPruner(net, None, total_updates=100)
    other = StructuredPruner(MLP(6, 1, hidden=(8, 16)), None, total_updates=100)
    with pytest.raises(ValueError, match="hidden="):
        other.load_state_dict(pruner.state_dict())


def test_plain_linear_list_and_mirror_with_own_optimizer():
    torch.manual_seed(4)
    layers = [torch.nn.Linear(3, 10), torch.nn.Linear(10, 2)]
    twin = [copy.deepcopy(l) for l in layers]
    opt = torch.optim.Adam([p for l in layers for p in l.parameters()], lr=1e-2)
    twin_opt = torch.optim.Adam([p for l in twin for p in l.parameters()], lr=1e-2)
    for ls, o in ((layers, opt), (twin, twin_opt)):  # create optimizer state
        o.zero_grad()
        ls[1](torch.relu(ls[0](torch.randn(4, 3)))).sum().backward()
        o.step()
    pruner = StructuredPruner(layers, opt, total_updates=10, importance="magnitude",
                              regularizer="group-lasso", prune_every=1, prune_start=1,
                              prune_end=1, target_fraction=0.5, rule="cubic",
                              mirrors=[(twin, twin_opt)])
    assert pruner.after_optimizer_step()
    assert layers[0].out_features == twin[0].out_features == 5 == layers[1].in_features
    assert twin_opt.state[twin[0].weight]["exp_avg"].shape == (5, 3)
    assert opt.state[layers[1].weight]["exp_avg"].shape == (2, 5)
