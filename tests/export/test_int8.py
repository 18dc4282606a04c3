"""int8 export (npz and C): every int8 format stays within the stated error bound of the float32
policy, DQN's greedy action agrees wherever the bound cannot flip it, and the report states
what the written files really do."""
from __future__ import annotations

import re

import numpy as np
import pytest

from sparserl.export import export_policy, policy_spec_of
from sparserl.export.c_format import compile_c, find_compiler
from sparserl.export.quant import error_bound, int8_forward, int8_outputs
from sparserl.runtime import CPolicy, Policy

from export_helpers import run_main
from test_formats import random_obs

AGENTS = ("dense_td3", "dense_sac", "sparse_td3", "structured_dqn", "structured_td3")


def _run_int8(fmt, spec, tmp_path, obs, scales="row", style="auto"):
    path = tmp_path / f"int8_{scales}_{style}.{fmt}"
    report = export_policy(spec, fmt, path, dtype="int8", scales=scales, c_style=style, probe_obs=obs, simplify=False)
    if fmt == "npz":
        return Policy.load(path), report
    return CPolicy(compile_c([path], path.with_suffix(".so"))), report


@pytest.mark.parametrize("scales", ["row", "layer"])
@pytest.mark.parametrize("agent_name", AGENTS)
def test_int8_npz_stays_within_its_bound(request, tmp_path, agent_name, scales):
    spec = policy_spec_of(request.getfixturevalue(agent_name))
    obs = random_obs(request.getfixturevalue(agent_name), n=128)
    policy, report = _run_int8("npz", spec, tmp_path, obs, scales)
    outputs_bound, action_bound = error_bound(spec, obs, scales)
    # the file computes exactly the documented int8 arithmetic ...
    if spec.head == "argmax":
        np.testing.assert_array_equal(policy.act(obs), int8_forward(spec, obs, scales))
    else:
        # (the head's tanh in float32 here, float64 in the reference: a rounding apart)
        np.testing.assert_allclose(policy.act(obs), int8_forward(spec, obs, scales), rtol=0, atol=1e-6)
        # ... and that is within the bound of the float32 policy, observation by observation
        err = np.abs(policy.act(obs).astype(np.float64) - spec.forward(obs))
        assert np.all(err <= action_bound), (err - action_bound).max()
        assert err.max() > 0  # it really is quantized
    q_err = np.abs(int8_outputs(spec, obs, scales) - spec.outputs(obs))
    assert np.all(q_err <= outputs_bound)
    assert report.dtype == "int8" and all("int8" in layer.form for layer in report.layers)


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler (cc or $CC) on PATH")
@pytest.mark.parametrize("style", ["arrays", "unrolled"])
@pytest.mark.parametrize("agent_name", AGENTS)
def test_int8_c_matches_the_npz_and_stays_within_its_bound(request, tmp_path, agent_name, style):
    agent = request.getfixturevalue(agent_name)
    spec, obs = policy_spec_of(agent), random_obs(agent, n=128)
    c_policy, _ = _run_int8("c", spec, tmp_path, obs, style=style)
    npz_policy, _ = _run_int8("npz", spec, tmp_path, obs)
    got, ref = c_policy.act(obs), npz_policy.act(obs)
    _, action_bound = error_bound(spec, obs)
    if spec.head == "argmax":
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
        assert np.all(np.abs(got.astype(np.float64) - spec.forward(obs)) <= action_bound + 1e-6)


@pytest.mark.parametrize("fmt", ["npz", "c"])
def test_int8_dqn_greedy_action_agrees_where_the_bound_cannot_flip_it(structured_dqn, tmp_path, fmt):
    if fmt == "c" and find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH")
    spec = policy_spec_of(structured_dqn)
    obs = random_obs(structured_dqn, n=400, seed=3)
    policy, report = _run_int8(fmt, spec, tmp_path, obs)
    q = np.sort(spec.outputs(obs), axis=1)
    _, bound = error_bound(spec, obs)
    safe = (q[:, -1] - q[:, -2]) > 2 * bound[:, 0]
    assert safe.sum() > len(obs) // 4  # the guarantee covers a good part of the observations
    got, float_actions = np.asarray(policy.act(obs)), np.asarray(structured_dqn.act(obs))
    np.testing.assert_array_equal(got[safe], float_actions[safe])
    # the stated agreement rate is the one the file gives on the probes
    assert report.quantization["greedy_agreement"] == pytest.approx(np.mean(got == spec.forward(obs)))
    assert report.quantization["greedy_agreement"] >= safe.mean()


def test_int8_report_states_the_error_of_the_files_and_is_smaller(sparse_td3, tmp_path):
    spec, obs = policy_spec_of(sparse_td3), random_obs(sparse_td3, n=200, seed=5)
    float_report = export_policy(spec, "npz", tmp_path / "f.npz", probe_obs=obs)
    report = export_policy(spec, "npz", tmp_path / "q.npz", dtype="int8", probe_obs=obs, probe="test observations")
    measured = np.abs(Policy.load(tmp_path / "q.npz").act(obs).astype(np.float64) - spec.forward(obs)).max()
    q = report.quantization
    assert q["max_action_error"] == pytest.approx(measured, abs=1e-6)
    assert 0 < q["max_action_error"] <= q["max_action_bound"]
    assert report.nbytes < float_report.nbytes and float_report.quantization is None
    assert report.file_bytes == (tmp_path / "q.npz").stat().st_size  # the printed file size is the file's


def test_cli_int8_export_prints_its_error_and_rejects_other_formats(rlx2_run, tmp_path):
    rc, out, err = run_main(["export", str(rlx2_run), "--format", "npz", "--dtype", "int8",
                             "--out", str(tmp_path / "q.npz")])
    assert rc == 0, err
    line = next(l for l in out.splitlines() if l.startswith("int8"))
    assert "largest action difference measured" in line and "guaranteed" in line and "Pendulum-v1" in line
    for fmt, name in (("onnx", "q.onnx"), ("torch", "q.pt2")):
        rc, _, err = run_main(["export", str(rlx2_run), "--format", fmt, "--dtype", "int8", "--out", str(tmp_path / name)])
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "int8" in err and "npz" in err
    rc, _, err = run_main(["export", str(rlx2_run), "--format", "npz", "--dtype", "int4", "--out", str(tmp_path / "x.npz")])
    assert rc == 2 and "int4" in err and "int8" in err and "Traceback" not in err


def _int8_npz_arrays(spec, tmp_path):
    export_policy(spec, "npz", tmp_path / "q.npz", dtype="int8", probe_obs=np.zeros((1, spec.obs_dim)))
    with np.load(tmp_path / "q.npz") as z:
        return {k: z[k] for k in z.files}


def _save(arrays, path, rehash=True):
    from sparserl import runtime
    if rehash:
        arrays[runtime.HASH_KEY] = np.array(runtime.content_hash(arrays))
    np.savez(path, **arrays)
    return path


def test_int8_npz_carries_the_hash_and_a_damaged_or_odd_file_is_refused(sparse_td3, tmp_path):
    """The content hash covers the int8 arrays too, and a re-hashed hand edit still has to make
    sense: int8 values in [-127, 127] (the bound assumes it), finite positive scales."""
    from sparserl import runtime
    arrays = _int8_npz_arrays(policy_spec_of(sparse_td3), tmp_path)
    assert str(arrays["layer0.dtype"]) == "int8" and str(arrays[runtime.HASH_KEY]) == runtime.content_hash(arrays)
    values = "layer0.data" if str(arrays["layer0.form"]) == "csr" else "layer0.weight"
    flipped = {**arrays, values: arrays[values].copy()}
    flipped[values].reshape(-1)[0] ^= 1
    cases = [(_save(flipped, tmp_path / "flip.npz", rehash=False), "fails its content check")]
    low = {**arrays, values: arrays[values].copy()}
    low[values].reshape(-1)[0] = -128
    cases.append((_save(low, tmp_path / "low.npz"), "int8 values in [-127, 127]"))
    for name, scale in (("zero", 0.0), ("nan", np.nan)):
        bad = {**arrays, "layer0.scale": arrays["layer0.scale"].copy()}
        bad["layer0.scale"][0] = scale
        cases.append((_save(bad, tmp_path / f"{name}.npz"), "int8 scale"))
    wrong = {**arrays, "layer0.scale": np.ones(3, np.float32)}
    cases.append((_save(wrong, tmp_path / "shape.npz"), "int8 scale of shape (3,)"))
    for path, needle in cases:
        with pytest.raises(ValueError, match=re.escape(needle)) as info:
            Policy.load(path)
        message = str(info.value)
        assert len(message.splitlines()) == 1, message
        assert needle.startswith("fails") or "layer 0" in message, message
