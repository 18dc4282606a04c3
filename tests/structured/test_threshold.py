import pytest
import torch

from sparserl.structured import PruneSchedule, neurons_to_prune


def test_prunes_exactly_below_threshold():
    imp = torch.tensor([0.5, 2.0, 0.1, 1.0, 0.99, 3.0])
    alive = torch.ones(6, dtype=torch.bool)
    new = neurons_to_prune(imp, alive, threshold=1.0, min_width=1)
    assert new.tolist() == [False, True, False, True, False, True]


def test_min_width_keeps_most_important():
    imp = torch.tensor([0.5, 0.2, 0.1, 0.4, 0.3])
    new = neurons_to_prune(imp, torch.ones(5, dtype=torch.bool), threshold=10.0, min_width=2)
    assert new.tolist() == [True, False, False, True, False]
    # a layer already at or below min_width is left alone
    alive = torch.tensor([True, False, False, False, False])
    assert torch.equal(neurons_to_prune(imp, alive, 10.0, min_width=2), alive)


def test_never_revives_and_respects_cap():
    imp = torch.tensor([5.0, 0.1, 4.0, 0.2, 0.3, 6.0])
    alive = torch.tensor([True, True, False, True, True, True])  # neuron 2 already pruned
    new = neurons_to_prune(imp, alive, threshold=1.0, min_width=1)
    assert not new[2]
    assert new.tolist() == [True, False, False, False, False, True]
    capped = neurons_to_prune(imp, alive, threshold=1.0, min_width=1, max_pruned=2)
    assert capped.tolist() == [True, False, False, False, True, True]  # two least important
    assert torch.all(capped <= alive) and torch.all(new <= alive)


def test_schedule_events_and_ramp():
    s = PruneSchedule(1000, prune_start=0.1, prune_end=0.5, prune_every=150)
    events = [t for t in range(1, 1001) if s.is_prune_step(t)]
    assert events == [100, 250, 400, 500]
    assert s.ramp(100) == 0.0 and s.ramp(500) == 1.0 and s.ramp(300) == pytest.approx(0.5)
    si = PruneSchedule(None, prune_start=10, prune_end=30, prune_every=10, max_ratio=0.8)
    assert [t for t in range(40) if si.is_prune_step(t)] == [10, 20, 30]
    assert si.ramp(20) == pytest.approx(0.4)


def test_layer_step_rules():
    imp = torch.arange(1, 11, dtype=torch.float)  # mean 5.5
    alive = torch.ones(10, dtype=torch.bool)
    s = PruneSchedule(100, prune_start=0, prune_end=100, prune_every=10)
    new = s.layer_step(50, imp, alive, original_width=10, min_width=1)  # tau = 0.5 * 5.5
    assert new.tolist() == [False, False] + [True] * 8
    capped = PruneSchedule(100, prune_start=0, prune_end=100, prune_every=10, target_fraction=0.5)
    # cubic target at p=0.5: 0.5 * (1 - 0.125) = 0.4375 -> floor(4.375) = 4 may be removed
    assert int((~capped.layer_step(50, imp, alive, 10, 1)).sum()) == 2
    assert int((~capped.layer_step(100, imp, alive, 10, 1)).sum()) == 5  # tau = 5.5
    cubic = PruneSchedule(100, prune_start=0, prune_end=100, prune_every=10,
                          target_fraction=0.5, rule="cubic")
    assert cubic.layer_step(50, imp, alive, 10, 1).tolist() == [False] * 4 + [True] * 6
    # already 3 removed from an original width of 10: only 1 more at p=0.5
    alive3 = torch.tensor([False] * 3 + [True] * 7)
    assert int((~cubic.layer_step(50, imp, alive3, 10, 1)).sum()) == 4


def test_threshold_rule_is_capped_by_the_final_target_not_the_cubic_ramp():
    imp = torch.tensor([0.1] * 5 + [3.0] * 3)  # mean 1.1875
    alive = torch.ones(8, dtype=torch.bool)
    kw = dict(prune_start=0, prune_end=100, prune_every=10, target_fraction=0.5)
    ramp, threshold = PruneSchedule(100, **kw), PruneSchedule(100, rule="threshold", **kw)
    # p = 0.5: tau = 0.5 * 1.1875 catches the five 0.1s; the cubic cap floor(0.4375 * 8) = 3 lets
    # three go, the final target floor(0.5 * 8) = 4 lets four go
    assert int((~ramp.layer_step(50, imp, alive, 8, 1)).sum()) == 3
    assert threshold.layer_step(50, imp, alive, 8, 1).tolist() == [False] * 4 + [True] * 4
    assert threshold.cap_fraction(10) == 0.5 and ramp.cap_fraction(10) == pytest.approx(0.5 * (1 - 0.9 ** 3))


def test_threshold_rule_waits_for_unimportant_neurons_and_meets_the_target_at_the_end():
    imp = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.01, 1.01, 1.02, 1.02])  # all about the mean: none below tau
    alive = torch.ones(8, dtype=torch.bool)
    s = PruneSchedule(100, prune_start=0, prune_end=100, prune_every=10, target_fraction=0.5, rule="threshold")
    for t in (10, 50, 90):  # tau = p * mean < 1.0: nothing goes (the cubic rule would remove some)
        assert s.layer_step(t, imp, alive, 8, 1).all()
    assert s.threshold_multiple(90) == pytest.approx(0.9) and s.threshold_multiple(100) == float("inf")
    last = s.layer_step(100, imp, alive, 8, 1)  # the last event: the four least important, exactly
    assert last.tolist() == [False] * 4 + [True] * 4
    per_layer = s.step(100, [imp, imp * 10], [alive, alive], [8, 8], 1)  # layer scope: each layer to 4
    assert [int((~a).sum()) for a in per_layer] == [4, 4]


def test_threshold_rule_global_scope_takes_the_budget_where_importance_is_low():
    low = torch.tensor([0.05] * 6 + [2.0] * 2)   # normalised mean 1: six far below it
    flat = torch.ones(8)                         # every neuron at its layer's mean
    alive = torch.ones(8, dtype=torch.bool)
    s = PruneSchedule(100, prune_start=0, prune_end=100, prune_every=10, target_fraction=0.375,
                      rule="threshold", scope="global")
    first, second = s.step(50, [low, flat], [alive, alive], [8, 8], 1)  # cap floor(0.375 * 16) = 6
    assert int((~first).sum()) == 6 and int((~second).sum()) == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(prune_every=0), "prune_every"),
    (dict(prune_start=1.5), "prune_start"),
    (dict(prune_start=0.8, prune_end=0.2), "prune_end"),
    (dict(rule="linear"), "rule"),
    (dict(rule="cubic"), "target_fraction"),
    (dict(rule="threshold"), "target_fraction"),
    (dict(target_fraction=1.0), "target_fraction"),
])
def test_schedule_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruneSchedule(100, **kwargs)


def test_fraction_needs_total_updates():
    with pytest.raises(ValueError, match="total_updates"):
        PruneSchedule(None, prune_start=0.1, prune_end=10)
