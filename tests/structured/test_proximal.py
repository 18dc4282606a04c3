"""Issue 22: the decoupled proximal group-sparse step (``reg_mode="proximal"``).

The soft-threshold is checked against the formula by hand, on networks where the numbers are
easy to follow: the shrink of each group, exact zeros below the threshold, larger shrink for
less important neurons, and masked neurons staying zero."""
import math

import pytest
import torch
from torch import nn

from sparserl.structured import StructuredPruner, importance_coefficients, proximal_group_shrink


def _one_hidden(weights_in, bias, weights_out):
    """A 1-hidden-layer chain (no overlapping groups) with the given weights."""
    l0, l1 = nn.Linear(len(weights_in[0]), len(weights_in)), nn.Linear(len(weights_in), len(weights_out))
    with torch.no_grad():
        l0.weight.copy_(torch.tensor(weights_in))
        l0.bias.copy_(torch.tensor(bias))
        l1.weight.copy_(torch.tensor(weights_out))
        l1.bias.zero_()
    return [l0, l1]


def _group(chain, j):
    return torch.cat([chain[0].weight[j], chain[0].bias[j:j + 1], chain[1].weight[:, j]]).detach()


def test_each_group_shrinks_by_the_formula():
    # group 0 = (3, 0, 0 | 4) has norm 5, group 1 = (0, 1, 0 | 0) norm 1, group 2 = (1, 2, 2 | 0) norm 3
    chain = _one_hidden([[3.0, 0.0], [0.0, 1.0], [1.0, 2.0]], [0.0, 0.0, 2.0], [[4.0, 0.0, 0.0]])
    before = [_group(chain, j).detach().clone() for j in range(3)]
    step, c = 0.5, torch.tensor([2.0, 1.0, 1.0])
    factors = proximal_group_shrink(chain, step, [c])
    # factor_j = max(0, 1 - step * c_j / ||g_j||): 1 - 1/5, 1 - 0.5/1, 1 - 0.5/3
    expected = [1 - 0.5 * 2 / 5, 1 - 0.5 / 1, 1 - 0.5 / 3]
    assert torch.allclose(factors[0], torch.tensor(expected))
    for j in range(3):
        assert torch.allclose(_group(chain, j), before[j] * expected[j])
        # the norm drops by exactly step * c_j
        assert math.isclose(float((before[j].norm() - _group(chain, j).norm()).detach()), step * float(c[j]), rel_tol=1e-6)
    assert torch.equal(chain[1].bias, torch.zeros(1))  # the output bias is in no group


def test_a_group_below_the_threshold_becomes_exactly_zero():
    chain = _one_hidden([[0.3, 0.0], [3.0, 4.0]], [0.4, 0.0], [[0.0, 0.0]])  # norms 0.5 and 5
    factors = proximal_group_shrink(chain, 0.6, None)  # group lasso: c = 1, threshold 0.6 > 0.5
    assert factors[0].tolist()[0] == 0.0
    assert torch.count_nonzero(_group(chain, 0)) == 0
    assert math.isclose(float(_group(chain, 1).norm()), 5.0 - 0.6, rel_tol=1e-6)


def test_more_important_neurons_shrink_less():
    # identical groups (norm 5 each); only the importance differs
    chain = _one_hidden([[3.0], [3.0], [3.0]], [0.0, 0.0, 0.0], [[4.0, 4.0, 4.0]])
    importance = torch.tensor([0.5, 1.0, 1.5])  # mean 1
    c = importance_coefficients(importance, None, eps=0.1)  # 1 / (I + 0.1)
    proximal_group_shrink(chain, 0.2, [c])
    norms = [float(_group(chain, j).norm()) for j in range(3)]
    assert norms[0] < norms[1] < norms[2] < 5.0
    for j, imp in enumerate(importance.tolist()):
        assert math.isclose(5.0 - norms[j], 0.2 / (imp + 0.1), rel_tol=1e-5)


def test_overlapping_groups_scale_shared_weights_by_both_factors():
    torch.manual_seed(0)
    chain = [nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 1)]
    w1 = chain[1].weight.detach().clone()
    factors = proximal_group_shrink(chain, 0.1, None)
    # W_1[k, j] is in group j of hidden layer 0 and group k of hidden layer 1
    assert torch.allclose(chain[1].weight, w1 * factors[1].unsqueeze(1) * factors[0].unsqueeze(0))


def test_dead_groups_are_left_alone_and_step_zero_changes_nothing():
    chain = _one_hidden([[1.0], [2.0]], [0.0, 0.0], [[1.0, 1.0]])
    before = [p.detach().clone() for layer in chain for p in layer.parameters()]
    proximal_group_shrink(chain, 0.0, None)
    assert all(torch.equal(a, p) for a, p in zip(before, [p for layer in chain for p in layer.parameters()]))
    factors = proximal_group_shrink(chain, 0.5, None, alive=[torch.tensor([False, True])])
    assert factors[0][0] == 1.0 and torch.equal(chain[0].weight[0], torch.tensor([1.0]))
    with pytest.raises(ValueError, match="step"):
        proximal_group_shrink(chain, -1.0, None)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))


class _Owner(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        return self.seq(x)

    def linear_layers(self):
        return [m for m in self.seq if isinstance(m, nn.Linear)]


def _train(pruner, owner, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 5, generator=g)
        loss = owner(x).pow(2).mean() + pruner.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.after_optimizer_step()


def test_pruner_applies_the_shrink_after_the_step_with_the_optimizer_lr():
    owner = _Owner(_mlp())
    opt = torch.optim.SGD(owner.parameters(), lr=0.05)
    lam = 0.4
    pruner = StructuredPruner(owner, opt, total_updates=100, importance="magnitude", regularizer="group-lasso",
                              reg_lambda=lam, reg_mode="proximal", prune_start=0.9, prune_end=1.0)
    assert float(pruner.penalty()) == 0.0  # nothing in the loss
    assert pruner.learning_rate() == 0.05
    chain = pruner.chain
    x = torch.randn(8, 5)
    loss = owner(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    after_step = [l.weight.detach().clone() for l in chain] + [l.bias.detach().clone() for l in chain]
    # the expected result: the same shrink applied by hand to the post-step weights
    ref = [nn.Linear(l.in_features, l.out_features) for l in chain]
    with torch.no_grad():
        for r, l in zip(ref, chain):
            r.weight.copy_(l.weight)
            r.bias.copy_(l.bias)
    proximal_group_shrink(ref, 0.05 * lam, None)
    pruner.after_optimizer_step()
    assert pruner.step == 1
    for r, l in zip(ref, chain):
        assert torch.equal(r.weight, l.weight) and torch.equal(r.bias, l.bias)
    assert not all(torch.equal(a, b) for a, b in zip(after_step, [l.weight for l in chain] + [l.bias for l in chain]))


def test_strong_proximal_pull_reaches_exact_zero_groups_and_loss_mode_does_not():
    counts = {}
    for mode in ("proximal", "loss"):
        owner = _Owner(_mlp())
        opt = torch.optim.Adam(owner.parameters(), lr=1e-2)
        pruner = StructuredPruner(owner, opt, total_updates=1000, importance="magnitude",
                                  regularizer="group-lasso", reg_lambda=20.0, reg_mode=mode,
                                  prune_start=0.99, prune_end=1.0)
        _train(pruner, owner, opt, 30)
        counts[mode] = sum(int((pruner.chain[0].weight[j] == 0).all()) for j in range(16))
    assert counts["proximal"] > 0
    assert counts["loss"] == 0


def test_masked_neurons_stay_zero_under_the_proximal_step():
    owner = _Owner(_mlp())
    opt = torch.optim.Adam(owner.parameters(), lr=1e-2)
    pruner = StructuredPruner(owner, opt, total_updates=40, importance="magnitude", regularizer="importance",
                              reg_lambda=0.01, reg_mode="proximal", prune_every=10, prune_start=10,
                              prune_end=20, shrink=False, target_fraction=0.5, rule="cubic")
    _train(pruner, owner, opt, 40)
    assert pruner.num_masked() > 0
    chain = pruner.chain
    for layer, alive in enumerate(pruner._physical_alive()):
        dead = ~alive
        assert torch.count_nonzero(chain[layer].weight[dead]) == 0
        assert torch.count_nonzero(chain[layer].bias[dead]) == 0
        assert torch.count_nonzero(chain[layer + 1].weight[:, dead]) == 0


def test_recovery_scale_zero_turns_the_proximal_step_off():
    owner = _Owner(_mlp())
    opt = torch.optim.SGD(owner.parameters(), lr=0.1)
    pruner = StructuredPruner(owner, opt, total_updates=10, importance="magnitude", regularizer="group-lasso",
                              reg_lambda=1.0, reg_mode="proximal", prune_start=1, prune_end=2,
                              recovery_reg_scale=0.0)
    pruner.step = 5  # in recovery
    before = [l.weight.detach().clone() for l in pruner.chain]
    pruner.proximal_step()
    assert pruner.schedule.in_recovery(pruner.step)
    assert all(torch.equal(a, l.weight) for a, l in zip(before, pruner.chain))


def test_bad_reg_mode_and_missing_lr_are_errors():
    owner = _Owner(_mlp())
    with pytest.raises(ValueError, match="reg_mode='prox'"):
        StructuredPruner(owner, None, total_updates=10, reg_mode="prox")
    with pytest.raises(ValueError, match="learning rate"):
        StructuredPruner(owner, None, total_updates=10, reg_mode="proximal")
    pruner = StructuredPruner(owner, None, total_updates=10, reg_mode="proximal", lr=0.3)
    assert pruner.learning_rate() == 0.3
