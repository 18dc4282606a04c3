"""benchmarks/sbx_compare.py measures what it says: the timed window covers exactly the
requested env steps (= updates) after learning started, in a child pinned to one core, and the
summary reports the ratio of the medians. No timing is asserted (benchmarks measure)."""
import argparse
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("sbx_compare", ROOT / "benchmarks" / "sbx_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_window_counts_the_steps_between_its_marks():
    window = _module()._Window(5, 9)
    for step in range(1, 12):
        window.at(step)
    result = window.result()
    assert result["steps"] == 4 and result["per_cpu_s"] > 0 and result["per_wall_s"] > 0


def test_sparserl_child_times_the_requested_updates():
    sbx_compare = _module()
    args = argparse.Namespace(core=sorted(os.sched_getaffinity(0))[0], warmup=64, skip=8, steps=16, seed=0)
    result = sbx_compare.measure("sparserl", os.sys.executable, args)
    assert result["steps"] == 16 and result["per_cpu_s"] > 0


def test_summary_line_reports_the_ratio_of_medians():
    sbx_compare = _module()
    runs = {"sparserl": [{"per_cpu_s": 100.0, "per_wall_s": 90.0}, {"per_cpu_s": 120.0, "per_wall_s": 110.0},
                         {"per_cpu_s": 80.0, "per_wall_s": 70.0}],
            "sbx": [{"per_cpu_s": 200.0, "per_wall_s": 180.0}] * 3}
    median = {f: {k: sorted(r[k] for r in rs)[1] for k in ("per_cpu_s", "per_wall_s")} for f, rs in runs.items()}
    result = {"runs": runs, "median": median, "ratio_cpu": 0.5, "ratio_wall": 0.5}
    line = sbx_compare.summary_line(result, argparse.Namespace(repeats=3, steps=16, warmup=64, skip=8))
    assert "sparserl 100.0 updates per CPU-second, SBX 200.0" in line and "**0.50x SBX**" in line


def test_a_failing_child_raises_with_its_error():
    sbx_compare = _module()
    args = argparse.Namespace(core=10**6, warmup=64, skip=8, steps=16, seed=0)  # no such core: the child fails
    with pytest.raises(RuntimeError, match="sparserl run failed"):
        sbx_compare.measure("sparserl", os.sys.executable, args)
