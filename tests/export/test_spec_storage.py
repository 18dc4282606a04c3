"""The policy spec (dead-neuron removal, validation), the stored form of each layer and the report."""
from __future__ import annotations

import numpy as np
import pytest

from sparserl.errors import UserError
from sparserl.export import export_policy, export_report, format_report, stored_layer
from sparserl.export.spec import PolicySpec
from sparserl.export.storage import csr_nbytes
from sparserl.runtime import Policy


def chain(rng, dims, density=1.0):
    weights = [(rng.normal(size=(b, a)) * (rng.random((b, a)) < density)).astype(np.float32)
               for a, b in zip(dims[:-1], dims[1:])]
    biases = [rng.normal(size=b).astype(np.float32) for b in dims[1:]]
    return weights, biases


def tanh_spec(weights, biases, obs_dim, **kw):
    out = weights[-1].shape[0]
    return PolicySpec(weights, biases, "tanh", (obs_dim,), action_scale=np.full(out, 2.0), action_offset=np.zeros(out), **kw)


def test_dense_layer_stays_dense_and_sparse_layer_becomes_csr():
    rng = np.random.default_rng(0)
    dense = stored_layer(rng.normal(size=(64, 32)), np.zeros(64))
    assert dense.form == "dense" and dense.nbytes == 4 * (64 * 32 + 64)
    w = rng.normal(size=(256, 256)) * (rng.random((256, 256)) < 0.05)
    sparse = stored_layer(w, np.zeros(256))
    nnz = int((w != 0).sum())
    assert sparse.form == "csr" and sparse.nonzeros == nnz
    assert sparse.indices.dtype == np.uint16  # 256 columns fit 16-bit indices
    assert sparse.nbytes == csr_nbytes(256, 256, nnz) + 4 * 256 < sparse.dense_nbytes
    np.testing.assert_array_equal(sparse.dense_weight(), w.astype(np.float32))


def test_form_is_chosen_by_bytes_at_the_break_even_density():
    rng = np.random.default_rng(1)
    n = 100
    # CSR with uint16 indices costs 6 bytes per non-zero + row pointers; dense 4 per weight
    for density, form in ((0.75, "dense"), (0.55, "csr")):  # break-even near 2/3
        w = rng.normal(size=(n, n)) * (rng.random((n, n)) < density)
        layer = stored_layer(w, np.zeros(n))
        assert layer.form == form
        assert layer.nbytes == min(csr_nbytes(n, n, layer.nonzeros), 4 * n * n) + 4 * n


def test_dead_neurons_are_removed_without_changing_the_function():
    rng = np.random.default_rng(2)
    weights, biases = chain(rng, [5, 8, 6, 2])
    weights[0][3] = 0.0                     # hidden-0 neuron 3: no inputs -> constant relu(b)
    biases[0][3] = 1.5
    weights[1][:, 5] = 0.0                  # hidden-0 neuron 5: no outputs
    weights[1][2] = 0.0                     # hidden-1 neuron 2: no inputs, negative bias -> constant 0
    biases[1][2] = -0.5
    spec = tanh_spec(weights, biases, 5)
    slim = spec.without_dead_neurons()
    assert slim.hidden == [6, 5] and slim.removed_neurons == [2, 1]
    obs = rng.normal(size=(100, 5))
    np.testing.assert_allclose(slim.forward(obs), spec.forward(obs), atol=1e-6)


def test_a_layer_with_only_dead_neurons_keeps_one():
    rng = np.random.default_rng(3)
    weights, biases = chain(rng, [3, 4, 2])
    weights[0][:] = 0.0
    spec = tanh_spec(weights, biases, 3).without_dead_neurons()
    assert spec.hidden == [1]
    np.testing.assert_allclose(spec.forward(np.ones((2, 3))), tanh_spec(weights, biases, 3).forward(np.ones((2, 3))),
                               atol=1e-6)


def test_spec_rejects_broken_chains_and_non_finite_weights():
    rng = np.random.default_rng(4)
    weights, biases = chain(rng, [3, 4, 2])
    with pytest.raises(ValueError, match="do not chain"):
        tanh_spec(weights, biases, 5)
    with pytest.raises(ValueError, match="head"):
        PolicySpec(weights, biases, "softmax", (3,))
    weights[1][0, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        tanh_spec(weights, biases, 3)


def test_report_counts_what_the_npz_file_holds(tmp_path):
    rng = np.random.default_rng(5)
    weights, biases = chain(rng, [11, 256, 256, 3], density=0.05)
    weights[0] = rng.normal(size=(256, 11)).astype(np.float32)  # a dense input layer
    spec = tanh_spec(weights, biases, 11, reference_hidden=(256, 256))
    report = export_policy(spec, "npz", tmp_path / "p.npz", simplify=False)
    assert [r.form for r in report.layers] == ["dense", "csr", "csr"]
    with np.load(tmp_path / "p.npz") as z:
        stored = sum(z[k].nbytes for k in z.files if k.startswith("layer") and not k.endswith((".form", ".shape")))
        assert stored == report.nbytes
    assert sum(r.nonzeros for r in report.layers) == sum(int((w != 0).sum()) for w in weights)
    assert report.dense_nbytes == report.reference_dense_nbytes == 4 * (11 * 256 + 256 + 256 * 256 + 256 + 256 * 3 + 3)
    assert report.nbytes < 0.2 * report.dense_nbytes
    text = format_report(report)
    assert "csr" in text and f"{report.nbytes:,}" in text and "dense fp32" in text
    assert export_report(spec).as_dict()["bytes"] == report.nbytes
    obs = rng.normal(size=(7, 11))
    np.testing.assert_allclose(Policy.load(tmp_path / "p.npz").act(obs), spec.forward(obs), atol=1e-5)


def test_runtime_rejects_foreign_files_and_wrong_shapes(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a sparserl policy"):
        Policy.load(tmp_path / "other.npz")
    rng = np.random.default_rng(6)
    weights, biases = chain(rng, [3, 4, 2])
    export_policy(tanh_spec(weights, biases, 3), "npz", tmp_path / "p.npz")
    with pytest.raises(ValueError, match="observation shape"):
        Policy.load(tmp_path / "p.npz").act(np.zeros(4))
