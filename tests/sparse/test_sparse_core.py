import io

import torch
import torch.nn.functional as F
from torch import nn

import pytest

from sparse_helpers import Chain, regression_data
from sparserl.sparse import SparseTraining, Updater, layer_nonzero_counts


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + (2.0 * y - 1.0).unsqueeze(1) * 0.8
    return x, y


def test_classifier_without_rl_trains_at_requested_sparsity():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    s = SparseTraining(net, opt, 0.9, updater="rigl", delta=20, t_end=300,
                       generator=torch.Generator().manual_seed(0))
    assert s.nonzero_counts() == s.allocated
    assert s.allocated == layer_nonzero_counts({n: tuple(m.shape) for n, m in s.masks.items()}, 0.9, "erk")
    xtr, ytr = _blobs(512, 1)
    for step in range(300):
        idx = torch.randint(0, 512, (64,))
        opt.zero_grad()
        F.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
        if s.before_optimizer_step():
            opt.step()
        s.after_optimizer_step()
        assert s.nonzero_counts() == s.allocated
    xte, yte = _blobs(1000, 2)
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    assert acc > 0.95  # Bayes accuracy of these blobs is ~0.99
    assert s.n_topology_updates == 14
    total = sum(m.numel() for m in s.masks.values())
    assert s.sparsity() == pytest.approx(1 - round(0.1 * total) / total)
    nonzero = sum(int((p != 0).sum()) for n, p in net.named_parameters() if n in s.masks)
    assert nonzero <= sum(s.allocated.values())


def _train(net, opt, s, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        if s.before_optimizer_step():
            opt.step()
        s.after_optimizer_step()


def test_state_dict_round_trip_restores_masks_counters_and_rng():
    torch.manual_seed(0)
    x, y = regression_data()
    net = Chain()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    s = SparseTraining(net, opt, 0.8, updater="set", delta=5, t_end=100,
                       generator=torch.Generator().manual_seed(1))
    _train(net, opt, s, x, y, 12)
    buf = io.BytesIO()
    torch.save({"sparse": s.state_dict(), "net": net.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    torch.manual_seed(123)  # a different fresh network, different initial masks
    net2 = Chain()
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    s2 = SparseTraining(net2, opt2, 0.8, updater="set", delta=5, t_end=100,
                        generator=torch.Generator().manual_seed(99))
    assert any(not torch.equal(s.masks[n], s2.masks[n]) for n in s.masks)
    net2.load_state_dict(ckpt["net"])
    opt2.load_state_dict(ckpt["opt"])
    s2.load_state_dict(ckpt["sparse"])
    assert all(torch.equal(s.masks[n], s2.masks[n]) for n in s.masks)
    assert (s2.step, s2.n_topology_updates) == (12, 2)
    # continuing both gives the same next (random, SET) topology update
    _train(net, opt, s, x, y, 4)
    _train(net2, opt2, s2, x, y, 4)
    assert s.n_topology_updates == s2.n_topology_updates == 3
    assert all(torch.equal(s.masks[n], s2.masks[n]) for n in s.masks)
    bad = dict(ckpt["sparse"], masks={"x.weight": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="x.weight"):
        s2.load_state_dict(bad)


class RecordingUpdater(Updater):
    name = "recording"
    needs_dense_grad = True

    def __init__(self):
        self.grads = []

    def update(self, weight, mask, n, grad=None):
        self.grads.append(grad.clone())
        return super().update(weight, mask, 0, grad)

    def grow_scores(self, weight, grad):
        return grad.abs()


def test_grad_accumulation_averages_last_k_minibatches():
    net = nn.Sequential(nn.Linear(3, 3, bias=False))
    rec = RecordingUpdater()
    s = SparseTraining(net, None, 0.5, updater=rec, delta=5, t_end=100, grad_accumulation=3)
    for t in range(1, 11):
        net[0].weight.grad = torch.full((3, 3), float(t))
        s.before_optimizer_step()
    assert len(rec.grads) == 2  # t = 5 and t = 10
    assert torch.allclose(rec.grads[0], torch.full((3, 3), 4.0))  # mean of t = 3, 4, 5
    assert torch.allclose(rec.grads[1], torch.full((3, 3), 9.0))  # mean of t = 8, 9, 10


def test_skip_step_switch():
    net = Chain()
    s = SparseTraining(net, None, 0.5, delta=2, t_end=10, skip_step_on_update=False)
    x, y = regression_data(16)
    F.mse_loss(net(x), y).backward()
    assert s.before_optimizer_step() is True
    net.zero_grad()
    F.mse_loss(net(x), y).backward()
    assert s.before_optimizer_step() is True and s.n_topology_updates == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(sparsity=1.0), "sparsity 1.0"),
    (dict(sparsity=-0.5), "sparsity -0.5"),
    (dict(updater="prune"), "updater 'prune'"),
    (dict(allocation="er"), "allocation 'er'"),
    (dict(init="zeros"), "init 'zeros'"),
    (dict(delta=0), "delta 0"),
    (dict(t_end=None), "t_end"),
    (dict(grad_accumulation=0), "grad_accumulation 0"),
    (dict(layers=["layers.9"]), "layers.9"),
])
def test_bad_arguments_raise_one_line_value_error(kwargs, match):
    args = dict(sparsity=0.5, updater="rigl", delta=10, t_end=100)
    args.update(kwargs)
    sparsity = args.pop("sparsity")
    with pytest.raises(ValueError, match=match) as info:
        SparseTraining(Chain(), None, sparsity, **args)
    assert "\n" not in str(info.value)
