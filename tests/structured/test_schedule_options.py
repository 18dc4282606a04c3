"""Global threshold scope and recovery phase of the pruning schedule (issue 14), with
expectations worked out by hand in the comments."""
import pytest
import torch
from torch import nn

from sparserl.structured import PruneSchedule, StructuredPruner, neurons_to_prune_pooled


def _b(*bits):
    return torch.tensor([bool(b) for b in bits])


def test_pooled_prunes_least_important_over_layers_within_cap():
    imp = [torch.tensor([0.2, 1.5, 0.9, 1.4]), torch.tensor([0.1, 0.5, 2.4])]
    alive = [torch.ones(4, dtype=torch.bool), torch.ones(3, dtype=torch.bool)]
    # below 1.0, sorted: L1[0]=0.1, L0[0]=0.2, L1[1]=0.5, L0[2]=0.9; a cap of 3 takes the first three
    new = neurons_to_prune_pooled(imp, alive, threshold=1.0, min_width=1, max_pruned=3)
    assert new[0].tolist() == [False, True, True, True]
    assert new[1].tolist() == [False, False, True]
    # min_width 2: layer 1 may lose only one, so L1[1] is skipped and L0[2] is taken instead
    new = neurons_to_prune_pooled(imp, alive, threshold=1.0, min_width=2, max_pruned=3)
    assert new[0].tolist() == [False, True, False, True]
    assert new[1].tolist() == [False, True, True]
    # no cap: all four candidates (min_width 1)
    new = neurons_to_prune_pooled(imp, alive, threshold=1.0, min_width=1)
    assert new[0].tolist() == [False, True, False, True] and new[1].tolist() == [False, False, True]


def test_pooled_ties_dead_neurons_and_zero_cap():
    imp = [torch.tensor([0.3, 0.3]), torch.tensor([0.3, 0.0])]
    alive = [_b(1, 1), _b(1, 0)]  # L1[1] is already pruned: never counted, never revived
    new = neurons_to_prune_pooled(imp, alive, threshold=1.0, min_width=1, max_pruned=1)
    assert new[0].tolist() == [False, True] and new[1].tolist() == [True, False]  # tie: lower layer first
    same = neurons_to_prune_pooled(imp, alive, threshold=1.0, min_width=1, max_pruned=0)
    assert [a.tolist() for a in same] == [a.tolist() for a in alive]
    with pytest.raises(ValueError, match="alive"):
        neurons_to_prune_pooled([torch.ones(3)], [torch.ones(2, dtype=torch.bool)], 1.0, 1)


def _two_layer_case():
    # layer A raw [1, 1, 1, 5] (mean 2 -> normalised [.5, .5, .5, 2.5]); layer B [3, 3, 3, 3] (-> 1s)
    return [torch.tensor([1.0, 1.0, 1.0, 5.0]), torch.tensor([3.0, 3.0, 3.0, 3.0])], \
        [torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]


def test_global_scope_shares_the_cubic_budget_across_layers():
    imp, alive = _two_layer_case()
    kw = dict(prune_start=0, prune_end=100, prune_every=10, target_fraction=0.5)
    # t = 100: p = 1, ramp = 1, cubic target 0.5.
    # layer scope: layer A threshold 1 * 2 = 2 -> candidates A0..A2, cap floor(0.5 * 4) = 2 -> A0, A1;
    # layer B threshold 3, no I < 3 -> untouched.
    per_layer = PruneSchedule(100, **kw).step(100, imp, alive, [4, 4], min_width=1)
    assert per_layer[0].tolist() == [False, False, True, True] and bool(per_layer[1].all())
    # global: threshold 1 on the normalised values -> candidates A0..A2 (0.5), B none (1 is not < 1);
    # pooled cap floor(0.5 * 8) = 4 >= 3 -> all three go.
    pooled = PruneSchedule(100, scope="global", **kw).step(100, imp, alive, [4, 4], min_width=1)
    assert pooled[0].tolist() == [False, False, False, True] and bool(pooled[1].all())
    # half-way, t = 50, with A0 already pruned: ramp 0.5, so threshold 0.5 * pooled mean (= 1);
    # A renormalised over its alive [1, 1, 5] (mean 7/3) -> A1 = A2 = 3/7 < 0.5 are candidates;
    # target 0.5 * (1 - 0.5^3) = 0.4375 -> pooled cap floor(3.5) = 3 minus the 1 already gone = 2
    alive_a = _b(0, 1, 1, 1)
    got = PruneSchedule(100, scope="global", **kw).step(50, imp, [alive_a, alive[1]], [4, 4], min_width=1)
    assert got[0].tolist() == [False, False, False, True] and bool(got[1].all())


def test_global_cubic_rule_takes_the_pooled_least_important():
    imp, alive = _two_layer_case()
    kw = dict(prune_start=0, prune_end=100, prune_every=10, target_fraction=0.5, rule="cubic",
              scope="global")
    # cap 4 at p = 1: A0, A1, A2 (0.5) then B0 (1.0; B ties broken by index)
    got = PruneSchedule(100, **kw).step(100, imp, alive, [4, 4], min_width=1)
    assert got[0].tolist() == [False, False, False, True]
    assert got[1].tolist() == [False, True, True, True]
    # min_width 2: A keeps 2 (A2 skipped), B gives B0 and B1 -> still 4 removed in total
    got = PruneSchedule(100, **kw).step(100, imp, alive, [4, 4], min_width=2)
    assert got[0].tolist() == [False, False, True, True]
    assert got[1].tolist() == [False, False, True, True]


def test_global_without_cap_equals_layer_scope():
    """Documented equivalence: with the ramp rule and no target, only the budget sharing differs."""
    g = torch.Generator().manual_seed(3)
    imp = [torch.rand(16, generator=g) * 5, torch.rand(8, generator=g)]
    alive = [torch.rand(16, generator=g) > 0.2, torch.ones(8, dtype=torch.bool)]
    kw = dict(prune_start=0, prune_end=100, prune_every=10)
    for t in (30, 70, 100):
        a = PruneSchedule(100, **kw).step(t, imp, alive, [16, 8], min_width=2)
        b = PruneSchedule(100, scope="global", **kw).step(t, imp, alive, [16, 8], min_width=2)
        assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_recovery_phase_and_regulariser_multiplier():
    s = PruneSchedule(100, prune_start=0.1, prune_end=0.6, prune_every=20, recovery_reg_scale=0.25)
    events = [t for t in range(1, 101) if s.is_prune_step(t)]
    assert events == [10, 30, 50, 60]  # the last prune event is at end = 60 ...
    assert not s.in_recovery(60) and all(s.in_recovery(t) for t in range(61, 101))  # ... then 40 updates
    assert s.reg_multiplier(60) == 1.0 and s.reg_multiplier(61) == 0.25 and s.reg_multiplier(1) == 1.0
    assert PruneSchedule(100).reg_multiplier(100) == 1.0  # default: regulariser unchanged
    for kwargs, match in [(dict(scope="model"), "scope"), (dict(recovery_reg_scale=-1.0), "recovery_reg_scale")]:
        with pytest.raises(ValueError, match=match):
            PruneSchedule(100, **kwargs)


def test_pruner_scales_penalty_after_the_last_prune_event():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    chain = [net[0], net[2]]
    pruner = StructuredPruner(chain, total_updates=10, regularizer="group-lasso", reg_lambda=0.1,
                              prune_start=0, prune_end=5, prune_every=100, recovery_reg_scale=0.5,
                              importance="magnitude", target_fraction=0.01)
    for _ in range(4):
        pruner.after_optimizer_step()  # target floor(0.01 * 5) = 0: nothing is pruned
    before = pruner.penalty().item()  # for update 5 (= end): full strength
    pruner.after_optimizer_step()
    after = pruner.penalty().item()  # for update 6: recovery
    assert pruner.architecture() == [5]
    assert before > 0 and after == pytest.approx(0.5 * before)


@torch.no_grad()
def _hand_set_mlp():
    """Magnitude importance by hand: W1 = 0 decouples the layers, so neuron j of hidden layer 0
    scores |W0[j, 0]| = [1, 1, 1, 5] and neuron k of hidden layer 1 scores |W2[0, k]| = [3, 3, 3, 3]."""
    chain = [nn.Linear(2, 4), nn.Linear(4, 4), nn.Linear(4, 1)]
    for layer in chain:
        layer.weight.zero_()
        layer.bias.zero_()
    chain[0].weight[:, 0] = torch.tensor([1.0, 1.0, 1.0, 5.0])
    chain[2].weight[0] = torch.tensor([3.0, 3.0, 3.0, 3.0])
    return chain


@pytest.mark.parametrize("scope,widths", [("layer", [2, 4]), ("global", [1, 4])])
def test_pruner_prune_now_follows_scope(scope, widths):
    pruner = StructuredPruner(_hand_set_mlp(), total_updates=100, importance="magnitude",
                              prune_start=0, prune_end=100, min_width=1, target_fraction=0.5,
                              scope=scope)
    assert pruner.prune_now(100)
    assert pruner.architecture() == widths  # same numbers as test_global_scope_shares_the_cubic_budget
