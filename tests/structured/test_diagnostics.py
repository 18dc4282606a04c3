"""Issue 22 diagnostics of a prune check: the output change is exactly 0 when the removed
neuron contributes nothing (and not otherwise), the removed-norm ratio and the penalty-to-loss
gradient ratio match their definitions, and the metrics.csv columns of a run exist."""
import csv

import pytest
import torch

from sparserl.cli import main
from sparserl.networks import MLP
from sparserl.structured import StructuredPruner, group_norms, group_sparse_penalty
from sparserl.structured.diagnostics import grad_ratio, output_change, removed_norm_ratio


def _mlp_with_silent_neuron(kind):
    """5 -> 8 -> 3 MLP whose hidden neuron 3 contributes nothing to the output. Weights are
    multiples of 1/4 (and the probe small integers), so every sum is exact in float32 whatever
    order the matmul adds in: "nothing" is then exactly 0, not a rounding difference."""
    torch.manual_seed(0)
    mlp = MLP(5, 3, hidden=[8])
    with torch.no_grad():
        for p in mlp.parameters():
            p.copy_(torch.randint(-4, 5, p.shape).float() / 4)
        if kind == "zero-group":      # no weights at all: the smallest group norm
            mlp.layers[0].weight[3].zero_()
            mlp.layers[0].bias[3] = 0.0
            mlp.layers[1].weight[:, 3] = 0.0
        else:                         # a dead ReLU: never active, outgoing weights unchanged
            mlp.layers[0].weight[3].zero_()
            mlp.layers[0].bias[3] = -1.0
    return mlp


def _pruner(mlp, importance, **kw):
    args = dict(total_updates=10, importance=importance, regularizer="none", prune_every=1, prune_start=1,
                prune_end=1, target_fraction=1 / 8 + 1e-3, rule="cubic", min_width=1)
    args.update(kw)
    return StructuredPruner(mlp, None, **args)


@pytest.mark.parametrize("kind,importance", [("zero-group", "magnitude"), ("dead-relu", "activation")])
def test_output_change_is_zero_when_the_pruned_neuron_contributes_nothing(kind, importance):
    mlp = _mlp_with_silent_neuron(kind)
    pruner = _pruner(mlp, importance)
    mlp(torch.randint(-2, 3, (16, 5)).float()).sum().backward()  # a training pass: records the probe
    assert pruner.probe is not None and pruner.probe.shape == (16, 5)
    assert pruner.prune_now(t=1)
    assert pruner.alive[0].tolist() == [True, True, True, False, True, True, True, True]
    assert mlp.hidden_sizes == [7]
    assert pruner.diagnostics["output_change"] == 0.0
    if kind == "zero-group":
        assert pruner.diagnostics["removed_norm_ratio"] == 0.0


def test_output_change_is_positive_when_a_used_neuron_is_removed():
    torch.manual_seed(0)
    mlp = MLP(5, 3, hidden=[8])
    pruner = _pruner(mlp, "magnitude")
    probe = torch.randn(16, 5)
    mlp(probe).sum().backward()
    before = mlp(probe).detach()
    norms = group_norms(pruner.chain, 0).detach()
    victim = int(norms.argmin())
    assert pruner.prune_now(t=1)
    after = mlp(probe).detach()
    assert pruner.diagnostics["output_change"] == pytest.approx(float((after - before).abs().max()))
    assert pruner.diagnostics["output_change"] > 0
    assert pruner.diagnostics["removed_norm_ratio"] == pytest.approx(float(norms[victim] / norms.median()))


def test_removed_norm_ratio_and_output_change_functions():
    torch.manual_seed(1)
    mlp = MLP(2, 1, hidden=[3])
    norms = group_norms(mlp.linear_layers(), 0).detach()
    alive = [torch.tensor([True, True, True])]
    assert removed_norm_ratio(mlp.linear_layers(), alive, alive) == 0.0
    after = [torch.tensor([False, True, False])]
    expected = float(torch.stack([norms[0], norms[2]]).max() / norms.median())
    assert removed_norm_ratio(mlp.linear_layers(), alive, after) == pytest.approx(expected)
    assert output_change(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.5, 0.0]])) == 2.0
    assert grad_ratio([torch.tensor([3.0])], [torch.tensor([0.0, 4.0])]) == pytest.approx(0.75)
    assert grad_ratio([None], [torch.zeros(2)]) == 0.0


@pytest.mark.parametrize("mode", ["loss", "proximal"])
def test_grad_ratio_is_penalty_over_loss_gradient(mode):
    torch.manual_seed(0)
    mlp = MLP(4, 2, hidden=[6, 6])
    opt = torch.optim.SGD(mlp.parameters(), lr=0.01)
    pruner = StructuredPruner(mlp, opt, total_updates=10, importance="magnitude", regularizer="group-lasso",
                              reg_lambda=0.3, reg_mode=mode, prune_every=5, prune_start=1, prune_end=9,
                              target_fraction=0.5)
    x = torch.randn(8, 4)
    params = [p for layer in mlp.linear_layers() for p in (layer.weight, layer.bias)]
    loss = mlp(x).pow(2).mean()
    g_loss = torch.autograd.grad(loss, params, retain_graph=True)
    opt.zero_grad()
    (loss + pruner.penalty()).backward()
    opt.step()
    reference = MLP(4, 2, hidden=[6, 6])
    reference.load_state_dict(mlp.state_dict())  # after the optimizer step, before the proximal step
    if mode == "loss":
        # penalty gradient of this update: the .grad less the loss gradient
        g_reg = [p.grad - g for p, g in zip(params, g_loss)]
    pruner.after_optimizer_step()
    if mode == "proximal":
        ref_params = [p for layer in reference.linear_layers() for p in (layer.weight, layer.bias)]
        value = group_sparse_penalty(reference.linear_layers(), 0.3)
        g_reg = torch.autograd.grad(value, ref_params, allow_unused=True)
    expected = grad_ratio(g_reg, g_loss)
    assert expected > 0
    assert pruner.diagnostics["reg_grad_ratio"] == pytest.approx(expected, rel=1e-4)


def test_metrics_csv_has_the_diagnostic_columns(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--algo", "dqn", "--env", "CartPole-v1", "--method", "structured", "--steps", "600",
                 "--learning-starts", "100", "--train-freq", "1", "--hidden", "16", "16", "--batch-size", "16",
                 "--prune-every", "50", "--prune-start", "0.1", "--prune-end", "0.9", "--eval-every", "300",
                 "--eval-episodes", "1", "--checkpoint-every", "0", "--out", str(out), "--no-progress",
                 "--no-tensorboard", "--seed", "0"]) == 0
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    last = rows[-1]
    for column in ("reg_td_grad_ratio_q", "prune_norm_ratio_q", "prune_output_change_q"):
        assert column in last
        assert float(last[column]) >= 0.0
    assert float(last["reg_td_grad_ratio_q"]) > 0.0  # the regulariser is on by default
