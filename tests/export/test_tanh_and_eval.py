"""Tanh MLPs (SB3 PPO/A2C's default) and clipped Gaussian means export to every format with
the same function, and `sparserl eval --exported X --env ID` runs any exported file without
a run directory (ONNX and .pt2 included)."""
from __future__ import annotations

import numpy as np
import pytest

from sparserl.export import export_policy
from sparserl.export.c_format import find_compiler
from sparserl.export.quant import error_bound
from sparserl.export.spec import PolicySpec
from sparserl.runtime import Policy

from export_helpers import run_main
from test_cli_export import eval_return
from test_formats import EXT, run_exported


def tanh_spec(agent, head: str) -> PolicySpec:
    """The agent's trained weights, with Tanh between the layers and the given head (half of
    the first layer's weights zeroed, so the sparse storage forms are exercised too)."""
    spec = agent.policy_spec()
    weights = [w.copy() for w in spec.weights]
    weights[0][:, ::2] = 0.0
    n_out = weights[-1].shape[0]
    kw = {"tanh": dict(action_scale=np.full(n_out, 2.0), action_offset=np.full(n_out, 0.5)),
          "clip": dict(action_low=np.full(n_out, -0.3), action_high=np.full(n_out, 0.4)),
          "argmax": {}}[head]
    if head == "argmax":
        rng = np.random.default_rng(0)
        weights[-1] = rng.normal(size=(3, weights[-1].shape[1])).astype(np.float32)
        biases = [*spec.biases[:-1], np.zeros(3, np.float32)]
    else:
        biases = spec.biases
    if head == "clip":  # a box inside the outputs' range (30th to 70th percentile), so both bounds clip
        raw = PolicySpec(weights, biases, "argmax", spec.obs_shape, activation="tanh").outputs(
            np.random.default_rng(1).normal(size=(64, spec.obs_dim)) * 2)
        kw = dict(action_low=np.percentile(raw, 30, axis=0), action_high=np.percentile(raw, 70, axis=0))
    return PolicySpec(weights, biases, head, spec.obs_shape, activation="tanh", **kw)


@pytest.mark.parametrize("fmt", ["npz", "c", "onnx", "torch"])
@pytest.mark.parametrize("head", ["tanh", "clip", "argmax"])
def test_tanh_mlp_exports_to_every_format(dense_td3, tmp_path, fmt, head):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    if fmt == "c" and find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH: the generated C cannot be built here")
    spec = tanh_spec(dense_td3, head)
    obs = (np.random.default_rng(1).normal(size=(64, spec.obs_dim)) * 2).astype(np.float32)
    path = tmp_path / f"policy.{EXT[fmt]}"
    export_policy(spec, fmt, path)
    got, expected = run_exported(fmt, path, obs), spec.forward(obs)
    if head == "argmax":
        np.testing.assert_array_equal(np.asarray(got).astype(np.int64), expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        if head == "clip":  # the clip really clips: both bounds are hit
            assert np.isclose(got, spec.action_low).any() and np.isclose(got, spec.action_high).any()


def test_tanh_mlp_int8_stays_within_its_bound(dense_td3, tmp_path):
    spec = tanh_spec(dense_td3, "tanh")
    obs = (np.random.default_rng(2).normal(size=(128, spec.obs_dim)) * 2).astype(np.float32)
    export_policy(spec, "npz", tmp_path / "q.npz", dtype="int8", probe_obs=obs)
    err = np.abs(Policy.load(tmp_path / "q.npz").act(obs).astype(np.float64) - spec.forward(obs))
    assert np.all(err <= error_bound(spec, obs)[1]) and err.max() > 0


def test_dead_tanh_neuron_is_folded_with_tanh(dense_td3):
    spec = tanh_spec(dense_td3, "tanh")
    spec.weights[0][0, :] = 0.0  # neuron 0 now outputs the constant tanh(b_0)
    spec.biases[0][0] = 0.7
    simple = spec.without_dead_neurons()
    assert simple.removed_neurons[0] >= 1
    obs = np.random.default_rng(3).normal(size=(32, spec.obs_dim)).astype(np.float32)
    np.testing.assert_allclose(simple.forward(obs), spec.forward(obs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("fmt", ["npz", "onnx", "torch", "c"])
def test_eval_exported_without_a_run_directory(rlx2_run, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    if fmt == "c" and find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH")
    path = tmp_path / f"policy.{EXT[fmt]}"
    assert run_main(["export", str(rlx2_run), "--format", fmt, "--out", str(path)])[0] == 0
    rc, ref_out, err = run_main(["eval", str(rlx2_run), "--episodes", "2", "--seed", "7"])
    assert rc == 0, err
    rc, out, err = run_main(["eval", "--exported", str(path), "--env", "Pendulum-v1", "--episodes", "2", "--seed", "7"])
    assert rc == 0, err
    assert "Pendulum-v1" in out
    assert eval_return(out) == pytest.approx(eval_return(ref_out), abs=0.011)  # printed to 2 decimals


def test_eval_exported_bad_input_is_one_line(rlx2_run, tmp_path):
    path = tmp_path / "p.npz"
    assert run_main(["export", str(rlx2_run), "--format", "npz", "--out", str(path)])[0] == 0
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    cases = [(["eval", "--exported", str(path)], ("--env",)),
             (["eval"], ("run directory", "--exported")),
             (["eval", "--exported", str(path), "--env", "CartPole-v1"], ("3 observation values", "CartPole-v1")),
             (["eval", "--exported", str(tmp_path / "junk.onnx"), "--env", "Pendulum-v1"], ("cannot load",))]
    for argv, needles in cases:
        rc, _, err = run_main(argv)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (argv, err)
        for needle in needles:
            assert needle in lines[0], (argv, lines[0])


def test_eval_finds_the_prefix_of_a_prefixed_c_export(rlx2_run, tmp_path):
    if find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH")
    path = tmp_path / "arm.c"
    assert run_main(["export", str(rlx2_run), "--format", "c", "--c-prefix", "arm", "--out", str(path)])[0] == 0
    rc, out, err = run_main(["eval", "--exported", str(path), "--env", "Pendulum-v1", "--episodes", "1"])
    assert rc == 0, err
    assert "return" in out
