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
