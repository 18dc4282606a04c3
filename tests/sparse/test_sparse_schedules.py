import math

import torch
import torch.nn.functional as F

import pytest

from sparse_helpers import Chain, regression_data
from sparserl.sparse import SparseTraining, TopologySchedule, gmp_sparsity


def test_cosine_fraction():
    s = TopologySchedule(delta=10, drop_fraction=0.3, t_end=1000)
    assert math.isclose(s.fraction(0), 0.3)
    assert math.isclose(s.fraction(500), 0.15)
    assert math.isclose(s.fraction(1000), 0.0, abs_tol=1e-12)
    assert math.isclose(s.fraction(250), 0.15 * (1 + math.cos(math.pi / 4)))
    assert s.drop_count(500, 101) == 15  # int(0.15 * 101)


def test_update_steps_delta_t_end_and_stop_step():
    s = TopologySchedule(delta=10, t_end=55)
    assert [t for t in range(0, 80) if s.is_update_step(t)] == [10, 20, 30, 40, 50]
    s = TopologySchedule(delta=10, t_end=1000, stop_step=30)
    assert [t for t in range(0, 80) if s.is_update_step(t)] == [10, 20]
    with pytest.raises(ValueError, match="delta 0"):
        TopologySchedule(delta=0, t_end=10)
    with pytest.raises(ValueError, match="drop_fraction 1.5"):
        TopologySchedule(delta=1, drop_fraction=1.5, t_end=10)


def test_topology_changes_only_on_update_steps_and_stop_step_respected():
    torch.manual_seed(0)
    net = Chain()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    s = SparseTraining(net, opt, 0.7, updater="set", delta=7, t_end=100, stop_step=30,
                       generator=torch.Generator().manual_seed(0))
    x, y = regression_data()
    changed_at = []
    for t in range(1, 50):
        before = {n: m.clone() for n, m in s.masks.items()}
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        if s.before_optimizer_step():
            opt.step()
        s.after_optimizer_step()
        assert s.step == t and s.nonzero_counts() == s.allocated
        if any(not torch.equal(before[n], s.masks[n]) for n in before):
            changed_at.append(t)
    assert changed_at == [7, 14, 21, 28]
    assert s.n_topology_updates == 4


def test_gmp_cubic_ramp():
    assert gmp_sparsity(0, 10, 110, 0.9) == 0.0
    assert gmp_sparsity(110, 10, 110, 0.9) == 0.9
    assert gmp_sparsity(500, 10, 110, 0.9) == 0.9
    assert math.isclose(gmp_sparsity(60, 10, 110, 0.9), 0.9 - 0.9 * 0.5 ** 3)
    assert math.isclose(gmp_sparsity(60, 10, 110, 0.9, 0.5), 0.9 + (0.5 - 0.9) * 0.125)
    with pytest.raises(ValueError, match="1.2"):
        gmp_sparsity(5, 0, 10, 1.2)


def test_prune_window_events_and_progress():
    from sparserl.sparse import PruneWindow

    w = PruneWindow(10, 35, 10)
    assert [t for t in range(0, 50) if w.is_due(t)] == [10, 20, 30, 35]  # the end is always an event
    assert PruneWindow(0, 5, 2).is_due(0) is False  # t counts updates from 1
    assert (w.progress(5), w.progress(10), w.progress(35), w.progress(99)) == (0.0, 0.0, 1.0, 1.0)
    assert math.isclose(w.progress(20), 0.4)
    assert PruneWindow(7, 7, 3).progress(7) == 1.0


def test_one_cubic_ramp_for_gmp_and_structured_pruning():
    from sparserl.sparse import cubic_ramp
    from sparserl.structured import PruneSchedule

    assert gmp_sparsity(60, 10, 110, 0.9) == cubic_ramp(0.5, 0.9)
    s = PruneSchedule(100, prune_start=0, prune_end=100, prune_every=10, target_fraction=0.9)
    assert s.target(50) == cubic_ramp(0.5, 0.9) == gmp_sparsity(50, 0, 100, 0.9)
    assert (s.start, s.end, s.every) == (s.window.start, s.window.end, s.window.every) == (0, 100, 10)


def test_prune_by_magnitude_keeps_the_largest_active_weights():
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    st = SparseTraining(net, None, 0.0, allocation="uniform", updater="static")
    before = {name: p.detach().abs().clone() for name, p in net.named_parameters() if name.endswith("weight")}
    st.prune_by_magnitude(0.5)
    first = {n: m.clone() for n, m in st.masks.items()}
    for n, m in first.items():
        assert int(m.sum()) == m.numel() // 2
        assert before[n][m].min() >= before[n][~m].max()  # the largest |w| stay
        assert (net.get_parameter(n)[~m] == 0).all()       # the others are exact zeros
    st.prune_by_magnitude(0.75)
    for n, m in st.masks.items():
        assert not (m & ~first[n]).any()  # pruned weights never come back
        assert int(m.sum()) == m.numel() // 4
