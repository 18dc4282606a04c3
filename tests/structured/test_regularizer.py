import pytest
import torch
from torch import nn

from sparserl.structured import group_norms, group_sparse_penalty, importance_coefficients


def _chain():
    torch.manual_seed(0)
    l0, l1, l2 = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 1)
    return [l0, l1, l2]


def _hand_penalty(chain, lam, coeffs, alive):
    total = 0.0
    for l in range(len(chain) - 1):
        W, b, Wn = chain[l].weight, chain[l].bias, chain[l + 1].weight
        for j in range(W.shape[0]):
            if not alive[l][j]:
                continue
            g = torch.cat([W[j, :], b[j:j + 1], Wn[:, j]])
            total = total + coeffs[l][j] * torch.sqrt((g * g).sum())
    return lam * total


def test_penalty_value_and_gradient_match_hand_computation():
    chain = _chain()
    imp = [torch.tensor([1.0, 0.1, 2.0, 0.9]), torch.tensor([0.5, 1.5])]
    alive = [torch.tensor([True, True, False, True]), torch.tensor([True, True])]
    coeffs = [importance_coefficients(i, a, eps=0.1) for i, a in zip(imp, alive)]
    # c_j = 1 / (I_j / mean_alive(I) + eps); mean over alive of layer 0 = (1 + 0.1 + 0.9) / 3
    m0 = (1.0 + 0.1 + 0.9) / 3
    expected0 = torch.tensor([1 / (1.0 / m0 + 0.1), 1 / (0.1 / m0 + 0.1),
                              1 / (2.0 / m0 + 0.1), 1 / (0.9 / m0 + 0.1)])
    assert torch.allclose(coeffs[0], expected0)
    lam = 0.3
    value = group_sparse_penalty(chain, lam, coeffs, alive)
    params = [p for layer in chain for p in layer.parameters()][:-1]  # output bias unused
    grads = torch.autograd.grad(value, params)
    hand = _hand_penalty(chain, lam, coeffs, alive)
    hand_grads = torch.autograd.grad(hand, params)
    assert torch.allclose(value, hand, atol=1e-6)
    for g, h in zip(grads, hand_grads):
        assert torch.allclose(g, h, atol=1e-6)
    # gradient of the pruned neuron's own row is zero; of a kept group it is lam*c*w/||g||
    assert torch.all(grads[0][2] == 0)
    j = 1
    g_vec = torch.cat([chain[0].weight[j], chain[0].bias[j:j + 1], chain[1].weight[:, j]]).detach()
    assert torch.allclose(grads[0][j], lam * coeffs[0][j] * g_vec[:3] / g_vec.norm(), atol=1e-6)


def test_unimportant_groups_get_larger_coefficient():
    imp = torch.tensor([0.01, 0.5, 1.0, 3.0])
    c = importance_coefficients(imp)
    assert torch.all(c[:-1] > c[1:])  # strictly decreasing in importance
    assert c.max() <= 1 / 0.1 + 1e-6
    assert not c.requires_grad


def test_group_lasso_and_norms():
    chain = _chain()
    norms = group_norms(chain, 0)
    expected = torch.sqrt(chain[0].weight.pow(2).sum(1) + chain[0].bias.pow(2)
                          + chain[1].weight.pow(2).sum(0))
    assert torch.allclose(norms, expected)
    value = group_sparse_penalty(chain, 2.0)
    assert torch.allclose(value, 2.0 * (group_norms(chain, 0).sum() + group_norms(chain, 1).sum()))
    assert group_sparse_penalty(chain, 0.0).item() == 0.0


def test_zero_group_has_finite_gradient():
    chain = _chain()
    with torch.no_grad():
        chain[0].weight[0] = 0
        chain[0].bias[0] = 0
        chain[1].weight[:, 0] = 0
    value = group_sparse_penalty(chain, 1.0)
    value.backward()
    assert torch.isfinite(chain[0].weight.grad).all()
    assert torch.all(chain[0].weight.grad[0] == 0)


def test_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        importance_coefficients(torch.ones(3), eps=0.0)
