import copy

import pytest
import torch

from sparserl.networks import MLP
from sparserl.structured import apply_neuron_masks, shrink


def _random_keep(width, n_keep, gen):
    keep = torch.zeros(width, dtype=torch.bool)
    keep[torch.randperm(width, generator=gen)[:n_keep]] = True
    return keep


@pytest.mark.parametrize("hidden", [(12, 10), (12, 10, 8)])
def test_shrunk_equals_masked_with_mirror(hidden):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    net = MLP(5, 3, hidden=hidden)
    target = copy.deepcopy(net)
    with torch.no_grad():  # make the target differ from the online net
        for p in target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    keeps = [_random_keep(w, w // 2 + 1, gen) for w in hidden]
    masked, masked_target = copy.deepcopy(net), copy.deepcopy(target)
    apply_neuron_masks(masked.linear_layers(), keeps)
    apply_neuron_masks(masked_target, keeps)
    layer_refs = list(net.layers)
    for i, keep in enumerate(keeps):
        shrink(net, i, keep, mirrors=[target])
    assert net.hidden_sizes == [int(k.sum()) for k in keeps]
    assert target.hidden_sizes == net.hidden_sizes
    for i, layer in enumerate(net.layers):
        assert layer is layer_refs[i]  # modules modified in place
        assert layer.weight.shape == (layer.out_features, layer.in_features)
    x = torch.randn(64, 5)
    assert (net(x) - masked(x)).abs().max() <= 1e-6
    assert (target(x) - masked_target(x)).abs().max() <= 1e-6
    # the masked net really differs from the unpruned one (the test is not vacuous)
    assert not torch.allclose(masked(x), MLP(5, 3, hidden=hidden)(x))


def test_masked_neuron_outputs_exactly_zero():
    torch.manual_seed(0)
    net = MLP(4, 2, hidden=(6, 6))
    keep = torch.tensor([True, False, True, False, True, True])
    apply_neuron_masks(net, [keep, None])
    h = net.activation(net.layers[0](torch.randn(10, 4)))
    assert torch.all(h[:, ~keep] == 0)
    assert torch.all(net.layers[1].weight[:, ~keep] == 0)


def _train_step(net, opt, x, y):
    loss = torch.nn.functional.mse_loss(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("opt_name", ["adam", "adamw", "sgd"])
def test_optimizer_state_follows_shrink(opt_name):
    torch.manual_seed(0)
    net = MLP(4, 2, hidden=(8, 6))
    if opt_name == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    elif opt_name == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
    x, y = torch.randn(32, 4), torch.randn(32, 2)
    for _ in range(3):
        _train_step(net, opt, x, y)
    keep = torch.tensor([0, 2, 3, 7])
    w0, b0, w1 = net.layers[0].weight, net.layers[0].bias, net.layers[1].weight
    old_state = {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in opt.state[p].items()}
                 for k, p in (("w0", w0), ("b0", b0), ("w1", w1))}
    shrink(net, 0, keep, optimizer=opt)

    new_params = list(net.parameters())
    group_params = [p for g in opt.param_groups for p in g["params"]]
    assert len(group_params) == len(new_params)
    assert all(any(p is q for q in group_params) for p in new_params)
    assert not any(p is w0 or p is b0 or p is w1 for p in group_params)
    assert w0 not in opt.state and w1 not in opt.state

    keys = ["exp_avg", "exp_avg_sq"] if opt_name != "sgd" else ["momentum_buffer"]
    new_w0, new_b0, new_w1 = net.layers[0].weight, net.layers[0].bias, net.layers[1].weight
    for key in keys:
        assert torch.equal(opt.state[new_w0][key], old_state["w0"][key][keep])
        assert torch.equal(opt.state[new_b0][key], old_state["b0"][key][keep])
        assert torch.equal(opt.state[new_w1][key], old_state["w1"][key][:, keep])
        assert opt.state[new_w0][key].shape == new_w0.shape
    if opt_name != "sgd":
        assert float(opt.state[new_w0]["step"]) == 3.0  # carried, not reset

    before = [p.detach().clone() for p in net.parameters()]
    _train_step(net, opt, x, y)
    after = list(net.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert net.layers[0].out_features == 4 and net.layers[1].in_features == 4


def test_shrink_rejects_bad_arguments():
    net = MLP(4, 2, hidden=(8,))
    with pytest.raises(ValueError, match="hidden layer"):
        shrink(net, 1, torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="no neuron"):
        shrink(net, 0, torch.zeros(8, dtype=torch.bool))
    with pytest.raises(ValueError, match="out of range"):
        shrink(net, 0, torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="mirror"):
        shrink(net, 0, torch.tensor([0, 1]), mirrors=[MLP(4, 2, hidden=(9,))])
