import torch
from torch import nn

from sparserl.sparse import (count_parameters, dense_gradient_extra_flops, format_table, forward_flops,
                             layer_flops, totals, training_flops_per_sample)


def _net():
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1, bias=False))
    net.log_std = nn.Parameter(torch.zeros(4))  # a non-Linear parameter
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight.copy_(torch.tensor([[0.0, 2.0]]))  # one exact zero, no mask given
    return net


def test_hand_count_dense_and_sparse():
    # layer "0": 3 -> 2 with bias; mask keeps 4 of 6 weights
    #   dense  = 2 * 6 + 2 (bias adds) = 14;  sparse = 2 * 4 + 2 = 10
    # layer "2": 2 -> 1, no bias; no mask, weight [[0, 2]] has 1 non-zero
    #   dense  = 2 * 2 = 4;                   sparse = 2 * 1 = 2
    # total: dense 18, sparse 12
    net = _net()
    masks = {"0.weight": torch.tensor([[True, True, False], [False, True, True]])}
    rows = layer_flops(net, masks)
    assert [(r.name, r.n_in, r.n_out, r.weights_total, r.weights_nonzero, r.bias, r.flops_dense, r.flops_sparse)
            for r in rows] == [("0", 3, 2, 6, 4, 2, 14, 10), ("2", 2, 1, 2, 1, 0, 4, 2)]
    assert forward_flops(net, masks) == (18, 12)
    assert forward_flops(net) == (18, 2 * 6 + 2 + 2)  # without masks: weight != 0 counts
    assert layer_flops(net, {"0": masks["0.weight"]})[0].weights_nonzero == 4  # module-name keys
    t = totals(rows)
    assert (t.weights_total, t.weights_nonzero, t.bias) == (8, 5, 2)
    assert training_flops_per_sample(12) == 36
    assert dense_gradient_extra_flops(18, 12, samples=256) == 6 * 256
    assert count_parameters(net, masks) == {"total": 8, "nonzero": 5, "bias": 2, "other": 4}


def test_format_table_lists_layers_and_total():
    net = _net()
    text = format_table(layer_flops(net))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["name", "n_in", "n_out"]
    assert lines[2].split()[0] == "0" and lines[3].split()[0] == "2"
    assert lines[-1].split()[0] == "total" and lines[-1].split()[-2:] == ["18", "16"]
