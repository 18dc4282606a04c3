"""RigL's topology update as a training loop reaches it: through ``SparseTraining.before_optimizer_step``
after a real ``backward()``, not by calling the updater directly (tests/sparse/test_sparse_updaters.py
covers the updater alone).

What RigL specifies (Evci et al. 2020, Alg. 1), checked on a hand-built 3x4 layer:
* drop the ``n`` active connections with the smallest |w|;
* grow the ``n`` connections with the largest |dense gradient| among the candidates;
* grown weights start at exactly 0, every other weight keeps its value;
* the per-layer count of active connections is unchanged;
* the optimizer step is skipped on the update step and masked gradients are 0 afterwards.

The path matters: a gradient masked *before* the update (e.g. by a hook or clipping placed too early)
would give every inactive connection a grow score of 0, and RigL would silently grow arbitrary ones.
"""
import pytest
import torch
from torch import nn

from sparserl.sparse import SparseTraining

# flat indices 0..5 active, 6..11 inactive
W = torch.tensor([0.5, -0.1, 0.9, 0.05, -0.7, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view(3, 4)
MASK = torch.tensor([True] * 6 + [False] * 6).view(3, 4)
# the two smallest |w| (idx 1: 0.1, idx 3: 0.05) carry the largest gradients of the layer
G = torch.tensor([9.0, 50.0, 9.0, 60.0, 9.0, 9.0, 0.1, -0.8, 0.3, 0.05, -0.6, 0.2]).view(3, 4)


def _one_update(regrow_dropped: bool):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    # delta=1: the first optimizer step is a topology update; zeta 0.4 drops int(0.4 * 6) = 2 of 6
    sparse = SparseTraining(net, opt, sparsity=0.5, allocation="uniform", updater="rigl", delta=1,
                            drop_fraction=0.4, t_end=10 ** 6, layers=["0"], regrow_dropped=regrow_dropped)
    sparse.set_masks({"0.weight": MASK.clone()})
    with torch.no_grad():
        net[0].weight.copy_(W)
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt.zero_grad()
    (net[0].weight * G).sum().backward()          # d loss / d W = G at every position, active or not
    take_step = sparse.before_optimizer_step()
    return net, sparse, take_step, before


def test_rigl_update_drops_smallest_weights_and_grows_largest_dense_gradients():
    net, sparse, take_step, before = _one_update(regrow_dropped=False)
    mask = sparse.masks["0.weight"].view(-1)
    change = sparse.last_change["0.weight"]
    assert change.dropped.view(-1).nonzero().view(-1).tolist() == [1, 3]      # |w| 0.1 and 0.05
    assert change.grown.view(-1).nonzero().view(-1).tolist() == [7, 10]       # |g| 0.8 and 0.6 (inactive)
    assert mask.nonzero().view(-1).tolist() == [0, 2, 4, 5, 7, 10]
    assert int(mask.sum()) == int(MASK.sum())                                 # count per layer unchanged
    expected = W.clone().view(-1)
    expected[[1, 3, 7, 10]] = 0.0                                             # dropped and grown: exactly 0
    assert torch.equal(net[0].weight.detach().view(-1), expected)
    assert not take_step                                                      # reference: skip the step
    grad = net[0].weight.grad.view(-1)
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))            # masked after the update
    assert torch.equal(grad[mask], G.view(-1)[mask])
    # the unmanaged layer and the biases are untouched
    for key in ("0.bias", "2.weight", "2.bias"):
        assert torch.equal(net.state_dict()[key], before[key])


def test_rigl_update_regrowing_dropped_keeps_their_values():
    """With ``regrow_dropped`` (the RigL paper's and the RLx2 reference's candidate set) the two
    just-dropped connections have the largest gradients, win the regrowth and keep their values:
    the update changes nothing."""
    net, sparse, _, _ = _one_update(regrow_dropped=True)
    assert torch.equal(sparse.masks["0.weight"], MASK)
    assert torch.equal(net[0].weight.detach(), W)
    change = sparse.last_change["0.weight"]
    assert change.n == 0 and change.regrown.view(-1).nonzero().view(-1).tolist() == [1, 3]


@pytest.mark.parametrize("regrow_dropped", [False, True])
def test_rigl_update_counts_per_layer_unchanged_on_a_real_network(regrow_dropped):
    """Many updates on a real loss: every managed layer keeps exactly its allocated count, and
    inactive weights stay exactly 0 after optimizer steps."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sparse = SparseTraining(net, opt, sparsity=0.8, updater="rigl", delta=5, t_end=200,
                            regrow_dropped=regrow_dropped)
    allocated = sparse.nonzero_counts()
    x, y = torch.randn(64, 8), torch.randn(64, 2)
    changed = 0
    for _ in range(100):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        if sparse.before_optimizer_step():
            opt.step()
        sparse.after_optimizer_step()
        changed += sum(c.n for c in sparse.last_change.values()) if sparse.step % 5 == 0 else 0
        assert sparse.nonzero_counts() == allocated
        for name, mask in sparse.masks.items():
            weight = net.get_submodule(name[: -len(".weight")]).weight
            assert torch.count_nonzero(weight[~mask]) == 0
    assert sparse.n_topology_updates == 100 // 5 and changed > 0   # steps 5, 10, ..., 100 (< t_end)
