"""SparseTraining with the csr / auto backends: same training as masked (parameters, masks,
optimizer state, targets), values-only optimizer state, structure rebuilds at topology
updates, dense gradients only where needed, backend-free checkpoints."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F

from sparse_helpers import Chain, regression_data
from sparserl.sparse import AutoExecution, SparseLinear, SparseTraining

TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as training runs use: these tiny matmuls only lose from threading."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _setup(backend, updater="rigl", seed=0, dims=(6, 48, 48, 3), sparsity=0.9, **kw):
    torch.manual_seed(seed)
    net = Chain(dims)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, foreach=True)
    s = SparseTraining(net, opt, sparsity, updater=updater, delta=5, t_end=60,
                       generator=torch.Generator().manual_seed(seed), backend=backend, **kw)
    target.load_state_dict(net.state_dict())
    s.sync(target)
    return net, target, opt, s


def _step(net, target, opt, s, x, y, tau=0.1):
    opt.zero_grad(set_to_none=True)
    loss = F.mse_loss(net(x) + 0.1 * target(x), y)
    loss.backward()
    if s.before_optimizer_step():
        opt.step()
    s.after_optimizer_step()
    with torch.no_grad():  # Polyak update exactly as Agent.update_target does it
        for p, tp in zip(net.parameters(), target.parameters()):
            tp.lerp_(p, tau)
    s.sync(target)
    return loss.item()


def _assert_same_training(a, b):
    (net_a, target_a, opt_a, s_a), (net_b, target_b, opt_b, s_b) = a, b
    for name in s_a.masks:
        assert torch.equal(s_a.masks[name], s_b.masks[name]), name
    torch.testing.assert_close(net_a.state_dict(), net_b.state_dict(), **TOL)
    torch.testing.assert_close(target_a.state_dict(), target_b.state_dict(), **TOL)
    torch.testing.assert_close(opt_a.state_dict(), opt_b.state_dict(), **TOL)
    assert s_a.state_dict().keys() == s_b.state_dict().keys()
    assert s_a.n_topology_updates == s_b.n_topology_updates


@pytest.mark.parametrize("updater", ["static", "set", "rigl"])
@pytest.mark.parametrize("skip_step", [True, False])
def test_csr_trains_like_masked(updater, skip_step):
    x, y = regression_data(n=64, d_in=6, d_out=3)
    runs = {b: _setup(b, updater, skip_step_on_update=skip_step) for b in ("masked", "csr")}
    assert runs["csr"][3].layer_backends() == {n: "csr" for n in runs["csr"][3].masks}
    losses = {b: [_step(*r, x, y) for _ in range(33)] for b, r in runs.items()}
    torch.testing.assert_close(losses["masked"], losses["csr"], **TOL)
    _assert_same_training(runs["masked"], runs["csr"])
    assert runs["csr"][3].n_topology_updates == (0 if updater == "static" else 6)


def test_grad_accumulation_and_topology_updates_without_sync_match_masked():
    """Targets synced only every 7 steps (DQN-like): between a topology update and the next
    sync the target keeps the dropped weights (compressed: in its residual), like masked."""
    x, y = regression_data(n=64, d_in=6, d_out=3)
    runs = {b: _setup(b, "rigl", grad_accumulation=3) for b in ("masked", "csr")}
    for step in range(31):
        for net, target, opt, s in runs.values():
            opt.zero_grad(set_to_none=True)
            F.mse_loss(net(x) + 0.1 * target(x), y).backward()
            if s.before_optimizer_step():
                opt.step()
            s.after_optimizer_step()
            if step % 7 == 6:
                with torch.no_grad():
                    for p, tp in zip(net.parameters(), target.parameters()):
                        tp.copy_(p)
                s.sync(target)
        torch.testing.assert_close(runs["masked"][1].state_dict(), runs["csr"][1].state_dict(), **TOL)
    _assert_same_training(runs["masked"], runs["csr"])


def test_optimizer_holds_values_only_and_adam_moments_are_sized_by_nnz():
    net, target, opt, s = _setup("csr")
    x, y = regression_data(n=64, d_in=6, d_out=3)
    _step(net, target, opt, s, x, y)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 6 and all(p.dim() == 1 for p in params)  # values and biases only
    for name, layer in s.compressed.items():
        assert isinstance(layer, SparseLinear) and any(p is layer.values for p in params)
        assert opt.state[layer.values]["exp_avg"].shape == (s.nonzero_counts()[name],)
    # target layers are compressed alike and pair with the online ones in zip(parameters())
    for p, tp in zip(net.parameters(), target.parameters()):
        assert p.shape == tp.shape


def test_topology_update_rebuilds_structure_carries_surviving_moments_and_zeroes_new_ones():
    net, target, opt, s = _setup("csr", "rigl")
    x, y = regression_data(n=64, d_in=6, d_out=3)
    for _ in range(4):
        _step(net, target, opt, s, x, y)
    before = {}
    for name, layer in s.compressed.items():
        st = opt.state[layer.values]
        before[name] = {k: layer.layout.to_dense(v).clone() for k, v in st.items() if k != "step"}
        before[name]["w"] = layer.weight.clone()
        before[name]["step"] = st["step"].clone()
    opt.zero_grad(set_to_none=True)
    F.mse_loss(net(x), y).backward()
    assert not s.before_optimizer_step()  # step 5: topology update (the optimizer step is skipped)
    assert s.n_topology_updates == 1
    for name, layer in s.compressed.items():
        change = s.last_change[name]
        mask = s.masks[name]
        assert torch.equal(layer.layout.mask(), mask)              # structure equals the mask
        assert layer.values.numel() == int(mask.sum())
        surviving = mask & ~change.grown
        st = opt.state[layer.values]
        for key in ("exp_avg", "exp_avg_sq"):
            now = layer.layout.to_dense(st[key])
            assert torch.equal(now[surviving], before[name][key][surviving])    # carried over
            assert torch.all(now[change.grown] == 0)                            # new: zero moments
        assert torch.equal(st["step"], before[name]["step"])
        w = layer.weight
        assert torch.equal(w[surviving], before[name]["w"][surviving])
        assert torch.all(w[change.grown] == 0) and torch.all(w[~mask] == 0)  # new connections start at 0
    assert any(c.n > 0 for c in s.last_change.values())


def test_dense_gradient_is_computed_only_on_steps_that_need_it():
    captured = []
    for updater, skip, accumulate in (("rigl", True, 1), ("rigl", True, 2), ("set", True, 1), ("set", False, 1)):
        net, target, opt, s = _setup("csr", updater, skip_step_on_update=skip, grad_accumulation=accumulate)
        x, y = regression_data(n=64, d_in=6, d_out=3)
        steps = []
        for t in range(1, 13):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(net(x), y).backward()
            if any(layer.dense_weight_grad is not None for layer in s.compressed.values()):
                steps.append(t)
            if s.before_optimizer_step():
                opt.step()
            s.after_optimizer_step()
        captured.append(steps)
    # rigl: the update steps; with k=2 also the step before each; set: only when the optimizer
    # step is not skipped (grown connections then take their first step with the dense gradient)
    assert captured == [[5, 10], [4, 5, 9, 10], [], [5, 10]]


def test_checkpoint_round_trip_and_cross_backend_resume():
    x, y = regression_data(n=64, d_in=6, d_out=3)
    reference = _setup("masked", "rigl")
    for _ in range(12):
        _step(*reference, x, y)

    def save(run):
        net, target, opt, s = run
        buf = io.BytesIO()
        torch.save({"net": net.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                    "sparse": s.state_dict()}, buf)
        buf.seek(0)
        return torch.load(buf, weights_only=True)

    def load(run, state):  # the order Agent.load_state_dict uses
        net, target, opt, s = run
        net.load_state_dict(state["net"])
        target.load_state_dict(state["target"])
        opt.load_state_dict(state["opt"])
        s.load_state_dict(state["sparse"])
        s.sync(target)

    # masked -> csr (fresh network with another seed: other initial masks and weights)
    state = save(reference)
    resumed = _setup("csr", "rigl", seed=7)
    load(resumed, state)
    _assert_same_training(reference, resumed)
    # and csr state saves exactly what masked saves (dense weights, dense-shaped moments)
    torch.testing.assert_close(save(resumed)["opt"], state["opt"], rtol=0, atol=0)
    for _ in range(12):
        _step(*reference, x, y)
        _step(*resumed, x, y)
    _assert_same_training(reference, resumed)
    # csr -> masked
    back = _setup("masked", "rigl", seed=3)
    load(back, save(resumed))
    for _ in range(6):
        _step(*back, x, y)
        _step(*resumed, x, y)
    _assert_same_training(resumed, back)


def test_reset_optimizer_state_false_needs_masked():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="reset_optimizer_state=False"):
        SparseTraining(Chain(), None, 0.9, updater="static", backend="csr", reset_optimizer_state=False)
    s = SparseTraining(Chain(), None, 0.9, updater="static", backend="auto", reset_optimizer_state=False)
    assert set(s.layer_backends().values()) == {"masked"}
    with pytest.raises(ValueError, match="unknown backend 'dense'"):
        SparseTraining(Chain(), None, 0.9, updater="static", backend="dense")


class Answers:
    def sparse_faster(self, n_out, n_in, density, batch, mode):
        return (n_out, n_in) == (48, 48) and batch >= 8  # only the middle layer, only for real batches


def test_auto_mixes_backends_and_still_trains_like_masked():
    x, y = regression_data(n=64, d_in=6, d_out=3)
    runs = {"masked": _setup("masked", "rigl"), "auto": _setup(AutoExecution(Answers()), "rigl")}
    backends = runs["auto"][3].layer_backends()
    assert backends == {"layers.0.weight": "masked", "layers.1.weight": "csr", "layers.2.weight": "masked"}
    for _ in range(21):
        for run in runs.values():
            _step(*run, x, y)
    _assert_same_training(runs["masked"], runs["auto"])
    with torch.no_grad():  # batch 1 goes through the dense path of the compressed layer
        torch.testing.assert_close(runs["auto"][0](x[:1]), runs["masked"][0](x[:1]), **TOL)
