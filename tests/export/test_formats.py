"""Every export format gives the torch agent's action: dense, unstructured-sparse and
structurally shrunk policies, continuous (TD3, SAC) and discrete (DQN)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sparserl
from sparserl.export import export_policy, policy_spec_of
from sparserl.export.c_format import CFLAGS, compile_c, find_compiler, write_c
from sparserl.runtime import CPolicy, Policy, load_policy
from sparserl.trainer import evaluate

AGENTS = ("dense_td3", "dense_sac", "sparse_td3", "structured_dqn", "structured_td3")
EXT = {"torch": "pt2", "onnx": "onnx", "npz": "npz", "c": "c"}
REPO_ROOT = Path(sparserl.__file__).resolve().parents[1]

needs_cc = pytest.mark.skipif(find_compiler() is None,
                              reason="no C compiler (cc or $CC) on PATH: the generated C cannot be built here")


def random_obs(agent, n=64, seed=0):
    dim = int(np.prod(agent.spaces[0].shape))
    return (np.random.default_rng(seed).normal(size=(n, dim)) * 2).astype(np.float32)


def build_c(c_path: Path) -> Path:
    """Compile exactly as the issue demands (cc -std=c99 -O2 -Wall -Werror), to a unique .so."""
    assert CFLAGS == ("-std=c99", "-O2", "-Wall", "-Werror")
    return compile_c([c_path], c_path.with_suffix(".so"))


def run_exported(fmt: str, path: Path, obs: np.ndarray) -> np.ndarray:
    if fmt == "torch":
        return torch.export.load(str(path)).module()(torch.from_numpy(obs)).numpy()
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"obs": obs})[0]
    if fmt == "npz":
        return Policy.load(path).act(obs)
    return CPolicy(build_c(path)).act(obs)


def assert_same_actions(agent, got, expected):
    if agent.policy_spec().head == "argmax":
        assert got.dtype.kind == "i"
        np.testing.assert_array_equal(got, expected)
    else:
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_fixture_agents_are_what_they_claim(dense_td3, sparse_td3, structured_dqn, structured_td3):
    def density(agent):
        spec = agent.policy_spec()
        return sum(int((w != 0).sum()) for w in spec.weights) / sum(w.size for w in spec.weights)
    assert density(dense_td3) == 1.0
    assert density(sparse_td3) < 0.2
    for agent in (structured_dqn, structured_td3):
        spec = agent.policy_spec()
        assert all(h < r for h, r in zip(spec.hidden, spec.reference_hidden))  # physically shrunk


@pytest.mark.parametrize("fmt", ["torch", "onnx", "npz", "c"])
@pytest.mark.parametrize("agent_name", AGENTS)
def test_every_format_acts_like_the_agent(request, tmp_path, agent_name, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    if fmt == "c" and find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH: the generated C cannot be built here")
    agent = request.getfixturevalue(agent_name)
    obs = random_obs(agent)
    path = tmp_path / f"policy.{EXT[fmt]}"
    report = export_policy(agent, fmt, path)
    assert path.exists() and report.nbytes > 0
    assert_same_actions(agent, np.asarray(run_exported(fmt, path, obs)), agent.act(obs))


@pytest.mark.parametrize("agent_name", AGENTS)
def test_npz_runtime_single_observation_and_csr_compute(request, tmp_path, agent_name):
    agent = request.getfixturevalue(agent_name)
    obs = random_obs(agent, n=8)
    export_policy(agent, "npz", tmp_path / "p.npz")
    for policy in (Policy.load(tmp_path / "p.npz"), Policy.load(tmp_path / "p.npz", densify=False)):
        assert_same_actions(agent, policy.act(obs), agent.act(obs))
        single = policy.act(obs[0])
        assert np.shape(single) == np.shape(agent.act(obs[0]))
        assert_same_actions(agent, np.asarray(single), agent.act(obs[0]))
        assert policy.act(obs.reshape(2, 4, -1)).shape[:2] == (2, 4)  # any leading batch shape


@needs_cc
@pytest.mark.parametrize("style", ["arrays", "unrolled"])
@pytest.mark.parametrize("agent_name", ["sparse_td3", "structured_dqn"])
def test_both_c_styles_and_the_c_api(request, tmp_path, agent_name, style):
    agent = request.getfixturevalue(agent_name)
    spec = policy_spec_of(agent)
    obs = random_obs(agent)
    header = write_c(spec, tmp_path / f"policy_{style}.c", sparse_style=style)
    source = (tmp_path / f"policy_{style}.c").read_text()
    assert "malloc" not in source and "#include <stdlib.h>" not in source
    if style == "unrolled":
        assert "L1_C[" not in source  # no index arrays in straight-line code
    policy = CPolicy(build_c(tmp_path / f"policy_{style}.c"))
    assert_same_actions(agent, policy.act(obs), agent.act(obs))
    assert_same_actions(agent, np.asarray(policy.act(obs[0])), agent.act(obs[0]))
    text = header.read_text()
    assert "void sparserl_act(const float *obs, float *out);" in text
    assert ("int sparserl_act_discrete(const float *obs);" in text) == (spec.head == "argmax")


@needs_cc
def test_c_program_links_against_the_header_without_python(tmp_path, structured_dqn):
    """A plain C program (no Python in the loop) calling the exported policy."""
    agent = structured_dqn
    obs = random_obs(agent, n=4)
    write_c(policy_spec_of(agent), tmp_path / "policy.c")
    rows = ",".join("{" + ",".join(f"{v:.9g}f" for v in row) + "}" for row in obs)
    (tmp_path / "main.c").write_text(f"""#include <stdio.h>
#include "policy.h"
static const float obs[4][SPARSERL_OBS_DIM] = {{{rows}}};
int main(void) {{
    for (int i = 0; i < 4; ++i) printf("%d\\n", sparserl_act_discrete(obs[i]));
    return 0;
}}
""")
    exe = compile_c([tmp_path / "main.c", tmp_path / "policy.c"], tmp_path / "main", shared=False)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert [int(x) for x in out] == list(agent.act(obs))


@pytest.mark.parametrize("agent_name,fmt", [("sparse_td3", "npz"), ("sparse_td3", "c"),
                                            ("structured_dqn", "npz"), ("structured_dqn", "c")])
def test_exported_policy_drives_the_env_to_the_same_return(request, tmp_path, agent_name, fmt):
    if fmt == "c" and find_compiler() is None:
        pytest.skip("no C compiler (cc or $CC) on PATH: the generated C cannot be built here")
    from sparserl.envs import make_env
    agent = request.getfixturevalue(agent_name)
    path = tmp_path / f"policy.{EXT[fmt]}"
    export_policy(agent, fmt, path)
    policy = load_policy(path) if fmt == "npz" else CPolicy(build_c(path))
    env = make_env(agent.cfg.env)
    env.reset(seed=123)
    torch_return, _ = evaluate(agent, env, 2)
    env.reset(seed=123)
    exported_return, _ = evaluate(policy, env, 2)
    if agent.policy_spec().head == "argmax":
        assert exported_return == torch_return  # identical actions, identical episodes
    else:
        assert exported_return == pytest.approx(torch_return, rel=1e-5, abs=1e-4)


def test_npz_runtime_never_imports_torch(tmp_path, sparse_td3):
    """In a process where ``import torch`` fails: write an npz from a spec and run it."""
    spec = policy_spec_of(sparse_td3)
    obs = random_obs(sparse_td3, n=16)
    np.savez(tmp_path / "arrays.npz", obs=obs, expected=sparse_td3.act(obs),
             **{f"w{i}": w for i, w in enumerate(spec.weights)}, **{f"b{i}": b for i, b in enumerate(spec.biases)},
             scale=spec.action_scale, offset=spec.action_offset)
    export_policy(sparse_td3, "npz", tmp_path / "policy.npz")
    script = f"""
import importlib.abc, sys
class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None
sys.meta_path.insert(0, BlockTorch())
try:
    import torch
    raise SystemExit("the torch blocker did not work")
except ImportError:
    pass
import json
import numpy as np
from sparserl.runtime import Policy
z = np.load({str(tmp_path / "arrays.npz")!r})
policy = Policy.load({str(tmp_path / "policy.npz")!r})
got = policy.act(z["obs"])
single = policy.act(z["obs"][0])
# the writer side needs no torch either: spec -> npz from plain arrays
from sparserl.export import export_policy
from sparserl.export.spec import PolicySpec
n = len([k for k in z.files if k.startswith("w")])
spec = PolicySpec([z[f"w{{i}}"] for i in range(n)], [z[f"b{{i}}"] for i in range(n)], "tanh", (z["obs"].shape[1],),
                  action_scale=z["scale"], action_offset=z["offset"])
export_policy(spec, "npz", {str(tmp_path / "again.npz")!r})
again = Policy.load({str(tmp_path / "again.npz")!r}).act(z["obs"])
print(json.dumps({{"diff": float(np.abs(got - z["expected"]).max()), "single": float(np.abs(single - z["expected"][0]).max()),
                  "again": float(np.abs(again - z["expected"]).max()),
                  "torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules)}}))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["torch_loaded"]
    assert result["diff"] <= 1e-5 and result["single"] <= 1e-5 and result["again"] <= 1e-5


def test_onnx_model_passes_the_checker(tmp_path, structured_td3):
    onnx = pytest.importorskip("onnx")
    export_policy(structured_td3, "onnx", tmp_path / "p.onnx")
    model = onnx.load(str(tmp_path / "p.onnx"))
    onnx.checker.check_model(model, full_check=True)
    widths = [init.dims[0] for init in model.graph.initializer if init.name.endswith(".bias")][:-1]
    assert widths == policy_spec_of(structured_td3).hidden  # the shrunk architecture, not the configured one


def test_torch_export_loads_without_sparserl(tmp_path, sparse_td3):
    obs = random_obs(sparse_td3, n=8)
    export_policy(sparse_td3, "torch", tmp_path / "p.pt2")
    np.save(tmp_path / "obs.npy", obs)
    script = f"""
import importlib.abc, sys
class BlockSparserl(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sparserl" or name.startswith("sparserl."):
            raise ImportError("sparserl is blocked in this test")
        return None
sys.meta_path.insert(0, BlockSparserl())
import numpy as np, torch
module = torch.export.load({str(tmp_path / "p.pt2")!r}).module()
np.save({str(tmp_path / "out.npy")!r}, module(torch.from_numpy(np.load({str(tmp_path / "obs.npy")!r}))).numpy())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_actions(sparse_td3, np.load(tmp_path / "out.npy"), sparse_td3.act(obs))


def test_torch_export_holds_the_final_architecture(tmp_path, structured_dqn):
    export_policy(structured_dqn, "torch", tmp_path / "p.pt2")
    module = torch.export.load(str(tmp_path / "p.pt2")).module()
    shapes = [tuple(p.shape) for name, p in module.named_parameters() if name.endswith("weight")]
    spec = policy_spec_of(structured_dqn)
    assert shapes == [w.shape for w in spec.weights]
    assert [s[0] for s in shapes[:-1]] == spec.hidden
