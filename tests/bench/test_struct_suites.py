"""The issue-14 suites: they load, report on seeds the sweep never saw, and the dense Hopper
cells can be shared with the RLx2 comparison (hopper100k) because they are the same runs."""
from pathlib import Path

import pytest

from sparserl.bench.suite import load_suite, train_args

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
REPORTED = ["struct_cartpole", "struct_lunar", "struct_mujoco", "highway", "struct_tradeoff"]
SWEEPS = ["struct_sweep", "struct_sweep_lunar"]


@pytest.mark.parametrize("name,n_cells", [("struct_cartpole", 10), ("struct_lunar", 15), ("struct_mujoco", 12),
                                          ("highway", 6), ("struct_sweep", 26),
                                          ("struct_sweep_lunar", 16), ("struct_tradeoff", 74)])
def test_suites_load(tmp_path, name, n_cells):
    suite = load_suite(SUITES / f"{name}.yaml", tmp_path)
    assert len(suite.cells) == n_cells
    assert {c.method for c in suite.cells} == {"dense", "structured"}


def test_sweep_seeds_are_not_reporting_seeds(tmp_path):
    sweep = {c.seed for name in SWEEPS for c in load_suite(SUITES / f"{name}.yaml", tmp_path).cells}
    reported = {c.seed for name in REPORTED for c in load_suite(SUITES / f"{name}.yaml", tmp_path).cells}
    assert sweep == {100, 101} and not sweep & reported
    labels = {c.label for c in load_suite(SUITES / "struct_sweep.yaml", tmp_path).cells}
    assert {"structured-threshold_scope=global", "structured-recovery_reg_scale=0.0",
            "structured-prune_end=0.5,prune_start=0.05"} <= labels


def test_dense_hopper_cells_are_the_hopper100k_runs(tmp_path):
    def dense_hopper(name):
        return _args(name, tmp_path, lambda c: c.env == "Hopper-v5" and c.method == "dense")
    assert dense_hopper("struct_mujoco") == dense_hopper("hopper100k")
    assert len(dense_hopper("struct_mujoco")) == 3


def test_cartpole_sweep_cells_pin_the_schedule_they_ran_with(tmp_path):
    """The CartPole sweep ran around the then-default schedule (prune 10 % -> 80 %), which its
    winner replaced: every structured cell outside the schedule group must still pin it."""
    for cell in load_suite(SUITES / "struct_sweep.yaml", tmp_path).cells:
        if cell.method == "structured" and "prune_start" not in cell.label:
            args = train_args(cell)
            assert args[args.index("--prune-start") + 1] == "0.1", cell.key
            assert args[args.index("--prune-end") + 1] == "0.8", cell.key


def _args(name, tmp_path, keep):
    """Each kept cell's train arguments without the run-directory paths (which differ by suite)."""
    cells = load_suite(SUITES / f"{name}.yaml", tmp_path / name).cells
    return {c.key: [a for a in train_args(c) if str(tmp_path) not in a] for c in cells if keep(c)}


def test_tradeoff_shares_its_dense_and_93_cells_with_the_claim_suites(tmp_path):
    """struct_tradeoff's dense and 93.5 % cells are copied from struct_lunar / struct_mujoco instead of
    rerun, which is only honest when their train commands are identical."""
    def shared(c):
        return c.label in ("dense", "structured")
    tradeoff = _args("struct_tradeoff", tmp_path, shared)
    claims = {k: v for name in ("struct_cartpole", "struct_lunar", "struct_mujoco")
              for k, v in _args(name, tmp_path, shared).items()}
    assert len(tradeoff) == 2 * 5 * 2 + 2 * 3 * 2
    assert tradeoff == {k: claims[k] for k in tradeoff}
