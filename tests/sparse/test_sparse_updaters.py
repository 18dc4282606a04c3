import torch
import torch.nn.functional as F
from torch import nn

import pytest

from sparserl.sparse import (RigLUpdater, SETUpdater, SparseTraining, StaticUpdater, make_updater,
                             reset_optimizer_state)

# 3x4 weight, flat indices 0..5 active, 6..11 inactive
W = torch.tensor([0.5, -0.1, 0.9, 0.05, -0.7, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view(3, 4)
MASK = torch.tensor([True] * 6 + [False] * 6).view(3, 4)
# huge gradients on active entries (incl. the ones to drop) must be ignored by the grow step
# when just-dropped connections are excluded (regrow_dropped=False; the default regrows them,
# see tests/rlx2/test_regrow.py)
G = torch.tensor([9.0, 50.0, 9.0, 60.0, 9.0, 9.0, 0.1, -0.8, 0.3, 0.05, -0.6, 0.2]).view(3, 4)


def test_rigl_drops_smallest_magnitude_and_grows_largest_gradient():
    w, mask = W.clone(), MASK.clone()
    change = RigLUpdater(regrow_dropped=False).update(w, mask, 2, G.clone())
    # drop: the 2 smallest |w| among active = idx 3 (0.05) and idx 1 (0.1)
    assert change.dropped.view(-1).nonzero().view(-1).tolist() == [1, 3]
    # grow: the 2 largest |g| among inactive = idx 7 (0.8) and idx 10 (0.6)
    assert change.grown.view(-1).nonzero().view(-1).tolist() == [7, 10]
    assert mask.view(-1).nonzero().view(-1).tolist() == [0, 2, 4, 5, 7, 10]
    assert int(mask.sum()) == 6
    expected = W.clone().view(-1)
    expected[[1, 3, 7, 10]] = 0.0
    assert torch.equal(w.view(-1), expected)  # untouched weights unchanged, changed ones exactly 0


def test_just_dropped_connection_is_not_regrown_when_excluded():
    # the dropped entry (idx 0, |w| smallest) has by far the largest |grad|
    w = torch.tensor([[0.01, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False]])
    g = torch.tensor([[100.0, 0.0, 0.2, 0.1]])
    change = RigLUpdater(regrow_dropped=False).update(w, mask, 1, g)
    assert change.dropped.tolist() == [[True, False, False, False]]
    assert change.grown.tolist() == [[False, False, True, False]]


def test_set_grows_only_among_inactive_and_is_seeded():
    results = []
    for _ in range(2):
        w, mask = W.clone(), MASK.clone()
        change = SETUpdater(torch.Generator().manual_seed(7), regrow_dropped=False).update(w, mask, 3)
        assert not (change.grown & MASK).any()  # grown only where inactive before
        assert int(change.grown.sum()) == int(change.dropped.sum()) == 3
        assert change.dropped.view(-1).nonzero().view(-1).tolist() == [1, 3, 5]
        assert (w[change.grown] == 0).all() and int(mask.sum()) == 6
        results.append(change.grown)
    assert torch.equal(*results)


def test_static_and_caps():
    w, mask = W.clone(), MASK.clone()
    change = StaticUpdater().update(w, mask, 3)
    assert not change.changed.any() and torch.equal(mask, MASK) and torch.equal(w, W)
    dense_mask = torch.ones(3, 4, dtype=torch.bool)
    assert RigLUpdater().update(W.clone(), dense_mask, 5, G).n == 0  # dense layer: nothing to grow
    with pytest.raises(ValueError, match="gradient"):
        RigLUpdater().update(W.clone(), MASK.clone(), 1, None)
    with pytest.raises(ValueError, match="'sgd'"):
        make_updater("sgd")


def _single_layer_setup(reset):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5, bias=False))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    s = SparseTraining(net, opt, 0.6, updater="rigl", delta=5, t_end=100, regrow_dropped=False,
                       reset_optimizer_state=reset, allocation="uniform")
    x, y = torch.randn(32, 6), torch.randn(32, 5)
    return net, opt, s, x, y


@pytest.mark.parametrize("reset", [True, False])
def test_grown_weights_zero_and_adam_moments_reset_switch(reset):
    net, opt, s, x, y = _single_layer_setup(reset)
    p = net[0].weight
    for t in range(1, 6):
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        if t == 5:
            before = {k: v.clone() for k, v in opt.state[p].items()}
            dense_grad = p.grad.clone()
            old_mask = s.masks["0.weight"].clone()
        stepped = s.before_optimizer_step()
        assert stepped == (t != 5)  # reference: skip the optimizer step on update steps
        if stepped:
            opt.step()
        s.after_optimizer_step()
    change = s.last_change["0.weight"]
    n = int(0.5 / 2 * (1 + torch.cos(torch.tensor(torch.pi * 5 / 100))) * 12)  # 12 active of 30
    assert change.n == n == int(change.dropped.sum()) and n > 0
    assert (p[change.grown] == 0).all() and (p[change.dropped] == 0).all()
    # grown = top-|dense grad| among previously inactive
    scores = dense_grad.abs().masked_fill(old_mask, -1).view(-1)
    assert set(change.grown.view(-1).nonzero().view(-1).tolist()) == set(torch.topk(scores, n).indices.tolist())
    for key in ("exp_avg", "exp_avg_sq"):
        state = opt.state[p][key]
        if reset:
            assert (state[change.changed] == 0).all()
            assert (state[~change.changed] != 0).any()
        else:
            assert torch.equal(state, before[key])
        assert torch.equal(state[~change.changed], before[key][~change.changed])


def test_reset_optimizer_state_function():
    p = nn.Parameter(torch.randn(2, 3))
    opt = torch.optim.Adam([p])
    assert reset_optimizer_state(opt, p, torch.ones(2, 3, dtype=torch.bool)) == 0  # no state yet
    p.grad = torch.ones(2, 3)
    opt.step()
    changed = torch.tensor([[True, False, False], [False, False, True]])
    assert reset_optimizer_state(opt, p, changed, reset=False) == 0
    assert reset_optimizer_state(opt, p, changed) == 2
    for key in ("exp_avg", "exp_avg_sq"):
        assert (opt.state[p][key][changed] == 0).all() and (opt.state[p][key][~changed] != 0).all()
    assert float(opt.state[p]["step"]) == 1.0
