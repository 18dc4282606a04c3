"""Whole short training runs: the csr and auto backends give the masked backend's run
(parameters, targets, optimizer state, masks, metrics) for TD3, SAC and DQN under static, SET,
RigL and RLx2, topology updates included; a csr run resumes exactly from its checkpoint."""
import csv
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "algos"))
from algo_helpers import tiny_config  # noqa: E402

from sparserl import checkpoint  # noqa: E402
from sparserl.sparse import crossover  # noqa: E402
from sparserl.trainer import Trainer  # noqa: E402

TIMING = {"wall_time_s", "sps", "updates_per_s"}


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(algo, method, backend, out, steps=260, **extra):
    cfg = tiny_config(algo, out, steps=steps, method=method, sparse_backend=backend, hidden=[32, 32],
                      topology_delta=15, actor_sparsity=0.8, critic_sparsity=0.8, q_sparsity=0.8,
                      eval_every=130, **extra)
    trainer = Trainer(cfg)
    trainer.train()
    return trainer


def _metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


def _assert_close_tree(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, where
        if a.dtype == torch.bool or not a.is_floating_point():
            assert torch.equal(a, b), where
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_close_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _assert_same_rows(rows_a, rows_b):
    assert len(rows_a) == len(rows_b) > 0
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        for k in ra:
            try:
                fa, fb = float(ra[k]), float(rb[k])
            except ValueError:
                assert ra[k] == rb[k], k
                continue
            assert (math.isnan(fa) and math.isnan(fb)) or math.isclose(fa, fb, rel_tol=1e-3, abs_tol=1e-4), \
                f"{k}: {ra[k]} != {rb[k]}"


@pytest.mark.parametrize("method", ["static", "set", "rigl", "rlx2"])
@pytest.mark.parametrize("algo", ["td3", "sac", "dqn"])
def test_csr_run_equals_masked_run(algo, method, tmp_path):
    if algo == "dqn" and method == "rlx2":
        pytest.skip("rlx2 is a continuous-control method (dynamic buffer)")
    masked = _run(algo, method, "masked", tmp_path / "masked")
    csr = _run(algo, method, "csr", tmp_path / "csr")
    plugins = [p for ps in csr.agent.plugins.values() for p in ps]
    assert any("csr" in p.sparse.layer_backends().values() for p in plugins)
    if method != "static":
        assert all(p.sparse.n_topology_updates >= 2 for p in plugins)
    _assert_close_tree(masked.agent.state_dict(), csr.agent.state_dict(), "agent")
    _assert_same_rows(_metrics(tmp_path / "masked"), _metrics(tmp_path / "csr"))


class MiddleLayersOnly:
    """Stand-in for the measured crossover: only the 32x32 hidden layers, only real batches."""

    def sparse_faster(self, n_out, n_in, density, batch, mode):
        return (n_out, n_in) == (32, 32) and batch >= 8


def test_auto_run_mixes_backends_and_equals_masked_run(tmp_path, monkeypatch):
    monkeypatch.setattr(crossover, "_DEFAULT", MiddleLayersOnly())
    masked = _run("td3", "rlx2", "masked", tmp_path / "masked")
    auto = _run("td3", "rlx2", "auto", tmp_path / "auto")
    backends = {n: b for p in (ps[0] for ps in auto.agent.plugins.values())
                for n, b in p.sparse.layer_backends().items()}
    assert backends["net.layers.1.weight"] == "csr" and backends["net.layers.0.weight"] == "masked"
    _assert_close_tree(masked.agent.state_dict(), auto.agent.state_dict(), "agent")
    _assert_same_rows(_metrics(tmp_path / "masked"), _metrics(tmp_path / "auto"))


def test_interrupted_csr_run_resumes_exactly(tmp_path, monkeypatch):
    full = _run("td3", "rlx2", "csr", tmp_path / "full", checkpoint_every=150)
    real_save = Trainer.save_resume

    def save_then_stop(self):
        real_save(self)
        if self.step == 150:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_resume", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            _run("td3", "rlx2", "csr", tmp_path / "part", checkpoint_every=150)
    state = checkpoint.load(tmp_path / "part" / "resume.pt")
    resumed = Trainer(tiny_config("td3", tmp_path / "part", **{k: v for k, v in state["config"].items()
                                                               if k not in ("algo", "out")}),
                      resume_state=state)
    resumed.train()
    # bit-identical: the checkpoint's dense weights and dense-shaped moments re-laid out exactly
    a, b = full.agent.state_dict(), resumed.agent.state_dict()
    for key in ("networks", "targets", "optimizers", "plugins"):
        _assert_close_tree(a[key], b[key], key)
        assert all(torch.equal(x, y) for x, y in zip(_tensors(a[key]), _tensors(b[key]))), key


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for k in sorted(tree, key=str):
            yield from _tensors(tree[k])
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


def test_csr_execution_cache_never_serves_a_freed_weights_values():
    """The masked-network CSR path caches each weight's compressed values by id(weight); a new
    tensor can reuse a freed one's id (a rebuilt target network does this), and must not get
    the old tensor's values back."""
    from sparserl.sparse.csr import CsrExecution
    execution = CsrExecution()
    mask = torch.rand(16, 8, generator=torch.Generator().manual_seed(0)) < 0.3
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for i in range(50):
            weight = torch.full((16, 8), float(i + 1))  # fresh tensor each time, often at a reused id
            expected = torch.nn.functional.linear(x, weight * mask)
            torch.testing.assert_close(execution.linear(x, weight, None, mask), expected)
            del weight
