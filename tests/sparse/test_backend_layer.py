"""CSR layer kernels: forward, input gradient and weight gradient equal the masked dense
layer's; layouts, dense-gradient capture, state dicts and the crossover cache."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparserl.sparse import (AutoExecution, CsrExecution, CsrLayout, SparseLinear, attach_execution,
                             csr_linear, feature_major_linear)
from sparserl.sparse.crossover import Crossover, batch_bucket


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as training runs use: these tiny matmuls only lose from threading."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_mask(n_out, n_in, density, g):
    k = max(1, round(density * n_out * n_in))
    flat = torch.zeros(n_out * n_in, dtype=torch.bool)
    flat[torch.randperm(n_out * n_in, generator=g)[:k]] = True
    return flat.view(n_out, n_in)


CASES = [(n_out, n_in, density, batch)
         for (n_out, n_in) in [(37, 23), (64, 11), (3, 50), (128, 128)]
         for density in (0.01, 0.1, 0.5, 1.0)
         for batch in (1, 256)]


@pytest.mark.parametrize("n_out,n_in,density,batch", CASES)
def test_csr_layer_matches_masked_dense_layer(n_out, n_in, density, batch):
    g = torch.Generator().manual_seed(n_out * 1000 + n_in + int(density * 100) + batch)
    mask = _random_mask(n_out, n_in, density, g)
    dense = nn.Linear(n_in, n_out)
    with torch.no_grad():
        dense.weight.mul_(mask)
    layer = SparseLinear.from_linear(dense, mask, CsrExecution())
    assert layer.values.numel() == int(mask.sum())

    x = torch.randn(batch, n_in, generator=g)
    x_ref, x_csr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    gy = torch.randn(batch, n_out, generator=g)
    y_ref = F.linear(x_ref, dense.weight, dense.bias)
    y_ref.backward(gy)
    y_csr = layer(x_csr)
    y_csr.backward(gy)

    assert y_csr.shape == y_ref.shape
    tol = dict(rtol=1e-4, atol=1e-4)  # float32 sums over up to 256 terms in another order
    torch.testing.assert_close(y_csr, y_ref, **tol)
    torch.testing.assert_close(x_csr.grad, x_ref.grad, **tol)
    # weight gradient only at the non-zeros, equal to the dense gradient there
    torch.testing.assert_close(layer.values.grad, dense.weight.grad[mask], **tol)
    torch.testing.assert_close(layer.bias.grad, dense.bias.grad)
    assert layer.dense_weight_grad is None  # nobody asked for it


def test_dense_gradient_is_produced_only_when_requested():
    g = torch.Generator().manual_seed(0)
    mask = _random_mask(40, 30, 0.1, g)
    dense = nn.Linear(30, 40)
    with torch.no_grad():
        dense.weight.mul_(mask)
    layer = SparseLinear.from_linear(dense, mask, CsrExecution())
    x, gy = torch.randn(16, 30, generator=g), torch.randn(16, 40, generator=g)
    F.linear(x, dense.weight, dense.bias).backward(gy)
    layer.operand.request.active = True
    layer(x).backward(gy)
    torch.testing.assert_close(layer.dense_weight_grad, dense.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.values.grad, dense.weight.grad[mask], rtol=1e-5, atol=1e-5)


def test_batched_inputs_and_feature_major_dense_layers_chain():
    g = torch.Generator().manual_seed(1)
    masks = [_random_mask(32, 8, 0.3, g), _random_mask(32, 32, 0.05, g)]
    ref = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    with torch.no_grad():
        for m, layer in zip(masks, (ref[0], ref[2])):
            layer.weight.mul_(m)
    x = torch.randn(5, 7, 8, generator=g)
    expected = ref(x)
    ex = CsrExecution()
    chain = nn.Sequential(SparseLinear.from_linear(ref[0], masks[0], ex), nn.ReLU(),
                          SparseLinear.from_linear(ref[2], masks[1], ex), nn.ReLU(), nn.Linear(32, 2))
    chain[4].load_state_dict(ref[4].state_dict())
    torch.testing.assert_close(chain(x), expected, rtol=1e-5, atol=1e-5)
    h = torch.randn(5, 7, 32, generator=g)
    torch.testing.assert_close(feature_major_linear(h, ref[4].weight, ref[4].bias), ref[4](h))


def test_layout_matches_mask_and_transpose():
    g = torch.Generator().manual_seed(2)
    mask = _random_mask(9, 13, 0.3, g)
    layout = CsrLayout(mask)
    assert torch.equal(layout.mask(), mask)
    values = torch.randn(layout.nnz, generator=g)
    dense = layout.to_dense(values)
    assert torch.equal(dense != 0, mask)
    assert torch.equal(layout.matrix(values).to_dense(), dense)
    assert torch.equal(layout.matrix_t(values).to_dense(), dense.t())
    assert torch.equal(layout.gather(dense), values)


def test_state_dict_is_a_dense_linear_state_dict():
    g = torch.Generator().manual_seed(3)
    mask = _random_mask(6, 5, 0.4, g)
    plain = nn.Linear(5, 6)
    with torch.no_grad():
        plain.weight.mul_(mask)
    layer = SparseLinear.from_linear(plain, mask, CsrExecution())
    state = layer.state_dict()
    assert list(state) == ["weight", "bias"]
    assert torch.equal(state["weight"], plain.weight.detach())
    other = nn.Linear(5, 6)
    other.load_state_dict(state)  # exports into a plain Linear
    assert torch.equal(other.weight, plain.weight)
    # loading a dense weight with entries outside the layout keeps them (residual): nothing lost
    full = torch.randn(6, 5, generator=g)
    layer.load_state_dict({"weight": full, "bias": torch.zeros(6)})
    assert torch.equal(layer.weight, full) and layer.residual is not None
    x = torch.randn(3, 5, generator=g)
    torch.testing.assert_close(layer(x), F.linear(x, full, torch.zeros(6)))
    with pytest.raises(RuntimeError, match="size mismatch"):
        layer.load_state_dict({"weight": torch.zeros(5, 6), "bias": torch.zeros(6)})


def test_csr_execution_through_the_inference_seam():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = {"0.weight": torch.rand(16, 8) < 0.3, "2.weight": torch.rand(3, 16) < 0.5}
    with torch.no_grad():
        for name, m in masks.items():
            dict(net.named_parameters())[name].mul_(m)
    x = torch.randn(4, 8)
    expected = net(x)
    attach_execution(net, masks, CsrExecution())
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-6)
        net[0].weight.mul_(2.0)  # weights changed: the cached compression is rebuilt
        assert not torch.allclose(net(x), expected)
    # with a weight gradient required it computes densely: training code still sees weight.grad
    net(x).sum().backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.shape == (16, 8)


class FixedAnswers:
    """A stand-in crossover: sparse is faster below ``density`` for batches >= ``min_batch``."""

    def __init__(self, density, min_batch=16):
        self.density, self.min_batch, self.calls = density, min_batch, []

    def sparse_faster(self, n_out, n_in, density, batch, mode):
        self.calls.append((n_out, n_in, batch, mode))
        return density <= self.density and batch >= self.min_batch


def test_auto_picks_layers_and_paths_from_the_crossover():
    auto = AutoExecution(FixedAnswers(0.2))
    assert auto.compresses((64, 64), 200)          # 5%: sparse wins
    assert not auto.compresses((64, 64), 2000)     # 49%: measured slower
    assert not auto.compresses((64, 64), 4096)     # dense layer: never compressed
    assert not auto.compresses((64, 64), 3000)     # above max_density: not even measured
    g = torch.Generator().manual_seed(5)
    mask = _random_mask(64, 64, 0.05, g)
    plain = nn.Linear(64, 64)
    with torch.no_grad():
        plain.weight.mul_(mask)
    layer = SparseLinear.from_linear(plain, mask, auto)
    seen = []
    real = layer.execution.use_sparse_kernel

    def spy(layout, batch, training):
        seen.append((batch, training, real(layout, batch, training)))
        return seen[-1][2]

    layer.execution.use_sparse_kernel = spy
    for batch in (1, 1, 256):
        x = torch.randn(batch, 64, generator=g)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-6)
    assert seen == [(1, False, False), (256, False, True)]  # batch 1 dense; asked once per key


def test_real_measurement_returns_positive_timings():
    from sparserl.sparse.crossover import measure
    for mode in ("infer", "train", "step"):
        dense_s, sparse_s = measure(16, 8, 0.25, 4, mode)
        assert dense_s > 0 and sparse_s > 0


def test_crossover_is_measured_once_and_cached_on_disk(tmp_path):
    calls = []

    def fake_measure(n_out, n_in, density, batch, mode):
        calls.append((n_out, n_in, density, batch, mode))
        return (2.0, 1.0) if density < 0.1 else (1.0, 2.0)

    path = tmp_path / "cache" / "crossover.json"
    first = Crossover(path, measure=fake_measure)
    assert first.sparse_faster(256, 256, 0.02, 300, "train")       # batch 300 -> bucket 256
    assert first.sparse_faster(256, 256, 0.02, 256, "train")       # same key: from memory
    assert not first.sparse_faster(256, 256, 0.3, 256, "train")
    assert calls == [(256, 256, 0.02, 256, "train"), (256, 256, 0.3, 256, "train")]
    stored = json.loads(path.read_text())
    assert list(stored) == [first.machine] and len(stored[first.machine]) == 2
    second = Crossover(path, measure=fake_measure)  # a later process reads the file
    assert second.sparse_faster(256, 256, 0.02, 256, "train") and len(calls) == 2
    assert batch_bucket(1) == 1 and batch_bucket(3) == 1 and batch_bucket(100) == 64 and batch_bucket(10**6) == 256


def test_functional_form_without_gradients_skips_autograd():
    g = torch.Generator().manual_seed(6)
    mask = _random_mask(20, 10, 0.2, g)
    layout = CsrLayout(mask)
    values = torch.randn(layout.nnz, generator=g, requires_grad=True)
    x = torch.randn(4, 10, generator=g)
    with torch.no_grad():
        y = csr_linear(x, values, None, layout)
    assert y.grad_fn is None
    torch.testing.assert_close(y, x @ layout.to_dense(values.detach()).t())
