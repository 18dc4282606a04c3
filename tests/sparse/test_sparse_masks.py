import copy

import torch
import torch.nn.functional as F
from torch import nn

import pytest

from sparse_helpers import Chain, regression_data
from sparserl.sparse import (SparseExecution, SparseTraining, apply_masks, attach_execution,
                             create_masks, detach_execution, linear_weight_names, mask_gradients,
                             sync_masks)


def test_default_masks_every_linear_weight_and_layers_restricts():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 1)))
    assert linear_weight_names(net) == ["0.weight", "2.0.weight", "2.1.weight"]
    assert linear_weight_names(net, ["2.1", "0.weight"]) == ["0.weight", "2.1.weight"]
    with pytest.raises(ValueError, match="'1'"):
        linear_weight_names(net, ["1"])  # the ReLU
    s = SparseTraining(net, None, 0.5, updater="static", layers=["2.0"])
    assert list(s.masks) == ["2.0.weight"] and s.nonzero_counts() == {"2.0.weight": 10}
    assert bool((net[0].weight != 0).all())  # untouched layer stays dense


def test_magnitude_init_keeps_largest_and_random_init_counts():
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, -5.0, 0.2, 0.3], [4.0, 0.0, -0.4, 0.5], [0.6, 0.7, -3.0, 0.8]]))
    m = create_masks(lin, {"weight": 3}, "magnitude")["weight"]
    assert m.dtype == torch.bool and torch.equal(m, torch.tensor(
        [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.bool))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    r1 = create_masks(lin, {"weight": 7}, "random", g1)["weight"]
    r2 = create_masks(lin, {"weight": 7}, "random", g2)["weight"]
    assert int(r1.sum()) == 7 and torch.equal(r1, r2)
    with pytest.raises(ValueError, match="'lottery'"):
        create_masks(lin, {"weight": 7}, "lottery")


def test_apply_and_gradient_masking_are_exact_zeros():
    lin = nn.Linear(5, 5)
    mask = torch.rand(5, 5, generator=torch.Generator().manual_seed(0)) > 0.5
    apply_masks(lin, {"weight": mask})
    assert torch.equal(lin.weight[~mask], torch.zeros(int((~mask).sum())))
    assert not torch.signbit(lin.weight[~mask]).any()  # +0.0, not -0.0
    lin(torch.randn(2, 5)).sum().backward()
    assert (lin.weight.grad[~mask] != 0).any()  # the dense gradient exists before masking
    mask_gradients(lin, {"weight": mask})
    assert (lin.weight.grad[~mask] == 0).all() and (lin.weight.grad[mask] != 0).any()


def test_masked_weights_stay_zero_through_adam_and_target_keeps_zero_pattern():
    torch.manual_seed(0)
    net = Chain()
    target = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    s = SparseTraining(net, opt, 0.8, updater="rigl", delta=25, t_end=200)
    s.sync(target)
    x, y = regression_data()
    tau = 0.05
    for _ in range(200):
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        if s.before_optimizer_step():
            opt.step()
        s.after_optimizer_step()
        for name, p in net.named_parameters():
            mask = s.masks.get(name)
            if mask is not None:
                assert (p[~mask] == 0).all()
        assert s.nonzero_counts() == s.allocated
        with torch.no_grad():  # soft (Polyak) target update, then mask sync
            for pt, p in zip(target.parameters(), net.parameters()):
                pt.mul_(1 - tau).add_(tau * p)
        s.sync(target)
        for name, pt in target.named_parameters():
            if name in s.masks:
                assert (pt[~s.masks[name]] == 0).all()
                assert torch.equal(pt != 0, dict(net.named_parameters())[name] != 0)
    assert s.n_topology_updates == 7  # t = 25, 50, ..., 175 (< t_end = 200)


def test_sync_rejects_different_layer_names():
    net, other = Chain(), nn.Sequential(nn.Linear(4, 2))
    s = SparseTraining(net, None, 0.5, updater="static")
    with pytest.raises(ValueError, match="layers.0.weight"):
        sync_masks(other, s.masks)


class CountingBackend(SparseExecution):
    def __init__(self):
        self.calls = 0

    def linear(self, x, weight, bias, mask):
        self.calls += 1
        return F.linear(x, weight * mask, bias)  # a backend only sees active entries


def test_execution_seam_is_replaceable_and_survives_deepcopy():
    torch.manual_seed(1)
    net = Chain()
    s = SparseTraining(net, None, 0.7, updater="static")
    x = torch.randn(3, 4)
    expected = net(x)
    backend = CountingBackend()
    attach_execution(net, s.masks, backend)
    assert torch.allclose(net(x), expected) and backend.calls == 3
    target = copy.deepcopy(net)  # the copy runs its own weights through the backend
    with torch.no_grad():
        for p in target.parameters():
            p.mul_(2.0)
    assert not torch.allclose(target(x), expected)
    assert torch.allclose(net(x), expected)
    detach_execution(net)
    calls = backend.calls
    assert torch.allclose(net(x), expected) and backend.calls == calls
