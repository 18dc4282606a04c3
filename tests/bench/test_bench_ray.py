"""The Ray backend runs the smoke grid (plus one crashing cell) on a local Ray instance."""
import json
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray backend is optional (pip install 'sparserl[ray]')")

from sparserl.bench import make_report, run_suite  # noqa: E402

SMOKE = Path(__file__).resolve().parents[2] / "benchmarks" / "suites" / "smoke.yaml"


def test_ray_backend_runs_smoke_grid_locally(tmp_path, fake_builder, monkeypatch):
    suite = tmp_path / "smoke_plus_crash.yaml"
    suite.write_text(SMOKE.read_text() + "  - {algo: td3, env: Pendulum-v1, method: crash, seeds: [0]}\n")
    monkeypatch.setenv("FAKE_TRAINER_FAIL", "sac/Pendulum-v1/rigl/1")
    out = tmp_path / "run"
    summary = run_suite(suite, out, workers=2, backend="ray", command_builder=fake_builder,
                        progress=False)
    assert (summary["total"], summary["completed"], summary["failed"]) == (13, 11, 2)
    failures = {f["cell"]: f for f in json.loads((out / "failures.json").read_text())}
    assert set(failures) == {"td3/Pendulum-v1/crash/seed0", "sac/Pendulum-v1/rigl/seed1"}
    assert all(f["returncode"] == 3 for f in failures.values())
    assert (out / "td3/Pendulum-v1/crash/seed0/error.txt").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "ray" and manifest["ray_address"] == "local"
    assert not ray.is_initialized()  # the local instance it started was shut down

    monkeypatch.delenv("FAKE_TRAINER_FAIL")
    again = run_suite(suite, out, workers=2, backend="ray", command_builder=fake_builder,
                      progress=False)
    assert (again["skipped"], again["completed"], again["failed"]) == (11, 1, 1)
    table = pd.read_csv(make_report(out, n_boot=200, plots=False)["csv"])
    assert table["n_seeds"].sum() == 12
