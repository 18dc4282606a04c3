"""`--regrow-dropped` (an option; off by default since issue 21): the RigL / RLx2 reference code's grow
step, where a connection dropped in this update competes for regrowth and, if it wins, keeps its value.
The default `--no-regrow-dropped` excludes just-dropped connections.  Layer counts stay exact."""
import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from sparserl.algos import make_agent
from sparserl.cli import build_parser, config_from_args
from sparserl.methods import attach_method
from sparserl.sparse import RigLUpdater, SparseTraining

# 3x4 weight, flat 0..5 active, 6..11 inactive.  The two smallest |w| are idx 3 (0.05) and 1 (0.1).
W = torch.tensor([0.5, -0.1, 0.9, 0.05, -0.7, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view(3, 4)
MASK = torch.tensor([True] * 6 + [False] * 6).view(3, 4)
# idx 1 (dropped) has the largest |grad|, then idx 7 and 10 (inactive); idx 3 (dropped) a tiny one
G = torch.tensor([9.0, 50.0, 9.0, 0.01, 9.0, 9.0, 0.1, -0.8, 0.3, 0.05, -0.6, 0.2]).view(3, 4)


def flat(t):
    return t.view(-1).nonzero().view(-1).tolist()


def test_dropped_connection_comes_back_in_the_same_update_with_its_old_value():
    w, mask = W.clone(), MASK.clone()
    change = RigLUpdater(regrow_dropped=True).update(w, mask, 2, G.clone())
    # drop {1, 3}; grow the top-2 |grad| among {1, 3, 6..11}: idx 1 (50) and idx 7 (0.8)
    assert flat(change.regrown) == [1]
    assert flat(change.dropped) == [3] and flat(change.grown) == [7] and change.n == 1
    assert flat(mask) == [0, 1, 2, 4, 5, 7] and int(mask.sum()) == 6
    expected = W.clone().view(-1)
    expected[3] = 0.0                        # really dropped
    assert torch.equal(w.view(-1), expected)  # idx 1 keeps -0.1, idx 7 starts at 0
    # the exclusion rule: idx 1 may not come back, so the next best inactive one (idx 10) grows
    w, mask = W.clone(), MASK.clone()
    change = RigLUpdater(regrow_dropped=False).update(w, mask, 2, G.clone())
    assert flat(change.dropped) == [1, 3] and flat(change.grown) == [7, 10] and not change.regrown.any()
    assert w.view(-1)[1] == 0.0 and int(mask.sum()) == 6


def test_dense_layer_keeps_everything_with_regrowth():
    w, mask = W.clone(), torch.ones(3, 4, dtype=torch.bool)
    change = RigLUpdater(regrow_dropped=True).update(w, mask, 5, G.clone())
    assert change.n == 0 and int(change.regrown.sum()) == 5 and mask.all() and torch.equal(w, W)


def test_sparse_training_regrows_with_old_values_and_exact_layer_counts():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    s = SparseTraining(net, opt, 0.8, updater="rigl", delta=3, t_end=30, regrow_dropped=True)
    x, y = torch.randn(64, 8), torch.randn(64, 2)
    regrown_total = 0
    for t in range(1, 31):
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        weights = {n: p.detach().clone() for n, p in s._weights.items()}
        moments = {n: opt.state[p]["exp_avg"].clone() for n, p in s._weights.items() if p in opt.state}
        if s.schedule.is_update_step(t):
            # make the smallest active weights the best growth candidates: they must come back
            for name, p in s._weights.items():
                score = p.detach().abs().masked_fill(~s.masks[name], float("inf")).view(-1)
                boost = torch.zeros_like(p).view(-1)
                boost[torch.topk(score, 2, largest=False).indices] = 1e6
                p.grad += boost.view_as(p)
        if s.before_optimizer_step():
            opt.step()
        s.after_optimizer_step()
        assert s.nonzero_counts() == s.allocated  # exact at every step, dense layers included
        if s.schedule.is_update_step(t):
            for name, change in s.last_change.items():
                p = s._weights[name]
                assert int(change.dropped.sum()) == int(change.grown.sum())
                assert torch.equal(p[change.regrown], weights[name][change.regrown])  # old values kept
                assert (p[change.grown] == 0).all() and (p[change.dropped] == 0).all()
                if name in moments:  # a regrown entry is unchanged: its Adam state is not reset
                    assert torch.equal(opt.state[p]["exp_avg"][change.regrown], moments[name][change.regrown])
                regrown_total += int(change.regrown.sum())
    assert regrown_total > 0


def _updaters(argv):
    cfg = config_from_args(build_parser().parse_args(
        f"train --algo td3 --env Pendulum-v1 --hidden 16 16 --steps 300 --learning-starts 100 {argv}".split()))
    env = gym.make(cfg.env)
    agent = make_agent(cfg, env.observation_space, env.action_space)
    attach_method(agent, cfg, 200)
    return {name: ps[0].sparse.updater for name, ps in agent.plugins.items()}


def test_exclusion_is_the_default_for_dynamic_methods_and_regrowth_can_be_switched_on():
    for method in ("rlx2", "rigl", "set"):
        assert not any(u.regrow_dropped for u in _updaters(f"--method {method}").values()), method
    assert all(u.regrow_dropped for u in _updaters("--method rlx2 --regrow-dropped").values())
