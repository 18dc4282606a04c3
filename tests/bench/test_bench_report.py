"""Report numbers against a hand computation from the runs' summary.json; RESULTS.md sections."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparserl.bench import make_report, run_suite, update_results_md
from sparserl.bench.stats import iqm
from sparserl.errors import UserError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import os
    import sys

    from sparserl.bench.suite import prefix_command_builder

    here = Path(__file__).resolve().parent
    tmp = tmp_path_factory.mktemp("report")
    suite = tmp / "suite.yaml"
    suite.write_text(
        "name: two-envs\nsteps: 90\nseeds: [0, 1, 2]\neval_every: 10\neval_episodes: 1\n"
        "score_floor: {EnvB-v0: -500}\n"
        "cells:\n  - {algo: td3, env: [EnvA-v0, EnvB-v0], method: [dense, tiny, rigl]}\n")
    os.environ["FAKE_TRAINER_SLEEP"] = "0"
    try:
        summary = run_suite(suite, tmp / "run", workers=2, progress=False,
                            command_builder=prefix_command_builder(
                                [sys.executable, str(here / "fake_trainer.py")]))
    finally:
        os.environ.pop("FAKE_TRAINER_SLEEP", None)
    assert summary["completed"] == 18
    return tmp / "run"


def _summaries(run_dir):
    out = {}
    for p in run_dir.glob("*/*/*/seed*/summary.json"):
        s = json.loads(p.read_text())
        s["_dir"] = p.parent.relative_to(run_dir)
        out[(s["env"], s["method"], s["seed"])] = s
    return out


def test_report_matches_hand_computation(run_dir):
    paths = make_report(run_dir, n_boot=1000)
    for key in ("md", "csv", "iqm_csv", "runs_csv"):
        assert paths[key].exists()
    assert {p.name for p in paths["plots"]} == {
        "learning_curves_td3_EnvA-v0.png", "learning_curves_td3_EnvB-v0.png",
        "return_vs_sparsity_td3.png"}
    table = pd.read_csv(paths["csv"]).set_index(["env", "label"])
    s = _summaries(run_dir)
    floors = {"EnvA-v0": 0.0, "EnvB-v0": -500.0}
    pct_runs = {}
    for env in ("EnvA-v0", "EnvB-v0"):
        dense = np.mean([s[(env, "dense", k)]["final_eval_return"] for k in range(3)])
        dense_total = np.mean([sum(p["total"] for p in s[(env, "dense", k)]["params"].values())
                               for k in range(3)])
        for method in ("dense", "tiny", "rigl"):
            runs = [s[(env, method, k)] for k in range(3)]
            ret = [r["final_eval_return"] for r in runs]
            pct = [100 * (r - floors[env]) / (dense - floors[env]) for r in ret]
            pct_runs.setdefault(method, []).extend(pct)
            row = table.loc[(env, method)]
            assert row["n_seeds"] == 3
            assert row["return_mean"] == pytest.approx(np.mean(ret))
            assert row["return_ci_low"] <= np.mean(ret) <= row["return_ci_high"]
            assert row["pct_of_dense"] == pytest.approx(np.mean(pct))
            # late return: the mean of the evaluations at steps 70, 80, 90 (> 0.75 * 90), read back
            # from each run's metrics.csv
            def late(run):
                m = pd.read_csv(run_dir / run["_dir"] / "metrics.csv")
                return m.loc[m["step"] > 67.5, "eval_return"].mean()
            dense_late = np.mean([late(s[(env, "dense", k)]) for k in range(3)])
            late_pct = [100 * (late(r) - floors[env]) / (dense_late - floors[env]) for r in runs]
            assert row["late_return_mean"] == pytest.approx(np.mean([late(r) for r in runs]))
            assert row["pct_late_of_dense"] == pytest.approx(np.mean(late_pct))
            # the window holds more than the last evaluation (the fake runs' returns rise to their final)
            assert all(late(r) < r["final_eval_return"] for r in runs)
            dense_best = np.mean([s[(env, "dense", k)]["best_eval_return"] for k in range(3)])
            best = [100 * (r["best_eval_return"] - floors[env]) / (dense_best - floors[env]) for r in runs]
            assert row["pct_best_of_dense"] == pytest.approx(np.mean(best))
            assert row["pct_best_ci_low"] <= np.mean(best) <= row["pct_best_ci_high"]
            size = np.mean([sum(p["nonzero"] for p in r["params"].values()) / dense_total for r in runs])
            assert row["size_ratio"] == pytest.approx(size)
            dense_train = np.mean([s[(env, "dense", k)]["flops"]["train_total"] for k in range(3)])
            assert row["train_flop_ratio"] == pytest.approx(
                np.mean([r["flops"]["train_total"] for r in runs]) / dense_train)
    # tiny: dense network with fewer weights -> size ratio < 1 although its own sparsity is 0
    assert table.loc[("EnvA-v0", "tiny"), "size_ratio"] == pytest.approx(0.3, rel=1e-3)
    assert table.loc[("EnvA-v0", "tiny"), "sparsity"] == pytest.approx(0.0)
    assert table.loc[("EnvA-v0", "dense"), "pct_of_dense"] == pytest.approx(100.0)
    q = pd.read_csv(paths["iqm_csv"]).set_index("label")
    for method, pct in pct_runs.items():
        assert q.loc[method, "n_runs"] == 6 and q.loc[method, "n_envs"] == 2
        assert q.loc[method, "iqm_pct_of_dense"] == pytest.approx(iqm(pct))
        assert q.loc[method, "iqm_ci_low"] <= iqm(pct) <= q.loc[method, "iqm_ci_high"]
    md = paths["md"].read_text()
    assert "| Algo | Env | tiny | rigl |" in md and "**IQM**" in md
    assert "**Best evaluation as % of dense's best**" in md and "**Late return as % of dense**" in md
    assert "| Final return | Late return |" in md
    assert "Seeds: 0, 1, 2" in md and "Runs: 18 finished of 18" in md


def test_results_md_sections_are_generated_and_replaced(run_dir, tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nHand-written intro stays.\n")
    update_results_md([run_dir], doc, n_boot=200)
    first = doc.read_text()
    assert "Hand-written intro stays." in first
    assert first.count("<!-- BEGIN sparserl-bench: two-envs/run -->") == 1
    for needle in ("Command: `", "Machine: ", "CPUs", "Budgets: 90 env steps", "Seeds: 0, 1, 2",
                   "Date: ", "| Algo | Env | tiny | rigl |"):
        assert needle in first, needle
    update_results_md([run_dir], doc, n_boot=200)  # idempotent: replaced, not appended
    assert doc.read_text().count("<!-- BEGIN sparserl-bench:") == 1


def test_report_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        make_report(tmp_path / "nope")
    with pytest.raises(UserError, match="no finished runs"):
        make_report(tmp_path)


def test_trade_off_plot_only_where_two_pruned_configurations_exist(tmp_path):
    from types import SimpleNamespace

    from sparserl.bench.plots import plot_return_vs_neurons_removed, tradeoff_points

    nan = float("nan")
    rows = [  # env A: dense + two pruned targets (a curve); env B: dense + one (a point, no figure)
        ("EnvA-v0", "dense", nan, 100.0), ("EnvA-v0", "structured", 0.935, 82.0),
        ("EnvA-v0", "structured-target_neuron_fraction=0.5", 0.5, 97.0),
        ("EnvB-v0", "dense", nan, 100.0), ("EnvB-v0", "structured", 0.935, 90.0),
        # env C: two schedules at one target (a sweep): one fraction of neurons, no curve either
        ("EnvC-v0", "dense", nan, 100.0), ("EnvC-v0", "structured", 0.935, 90.0),
        ("EnvC-v0", "structured-prune_end=0.7", 0.935, 80.0)]
    table = pd.DataFrame([{"algo": "dqn", "env": e, "label": lab, "baseline": "dense", "neurons_removed": n,
                           "pct_of_dense": p, "pct_ci_low": p - 5, "pct_ci_high": p + 5,
                           "pct_late_of_dense": p - 1, "pct_late_ci_low": p - 4, "pct_late_ci_high": p + 2}
                          for e, lab, n, p in rows])
    points = tradeoff_points(table[table["env"] == "EnvA-v0"])
    assert points["label"].tolist() == ["dense", "structured-target_neuron_fraction=0.5", "structured"]
    assert points["neurons_removed"].tolist() == [0.0, 0.5, 0.935]
    assert points["pct_ci_low"].iloc[0] == 95.0          # dense drawn with its own CI, not a bare 100
    assert points["pct_late_of_dense"].tolist() == [99.0, 96.0, 81.0]   # the late-return series rides along
    assert tradeoff_points(table[table["env"] == "EnvB-v0"]) is None
    assert tradeoff_points(table[table["env"] == "EnvC-v0"]) is None
    paths = plot_return_vs_neurons_removed(SimpleNamespace(table=table), tmp_path)
    assert [p.name for p in paths] == ["return_vs_neurons_dqn_EnvA-v0.png"]
    assert paths[0].stat().st_size > 0
    # a table from before the late return (no pct_late_* columns) still draws its final-return curve
    old_table = table.drop(columns=["pct_late_of_dense", "pct_late_ci_low", "pct_late_ci_high"])
    assert len(plot_return_vs_neurons_removed(SimpleNamespace(table=old_table), tmp_path / "old")) == 1
    # a table without structured runs (no neurons_removed column at all) draws nothing
    assert plot_return_vs_neurons_removed(SimpleNamespace(table=table.drop(columns="neurons_removed")),
                                          tmp_path) == []


def test_best_of_a_pruned_run_counts_only_its_final_size(tmp_path):
    from sparserl.bench.report import final_size_returns

    def best(cell, fallback):
        return final_size_returns(cell, steps=4000.0, final=0.0, best=fallback)[0]

    pruned = tmp_path / "pruned"
    pruned.mkdir()
    # best 300 while 256 neurons were alive; the final 17-neuron network peaks at 200
    (pruned / "metrics.csv").write_text("step,eval_return,alive_q\n1000,300.0,256\n2000,150.0,40\n"
                                        "3000,200.0,17\n3500,,17\n4000,180.0,17\n")
    assert best(pruned, fallback=300.0) == 200.0
    dense = tmp_path / "dense"   # no size columns: summary.json's best stands
    dense.mkdir()
    (dense / "metrics.csv").write_text("step,eval_return\n1000,300.0\n2000,150.0\n")
    assert best(dense, fallback=300.0) == 300.0
    assert best(tmp_path / "missing", fallback=7.0) == 7.0


def test_late_return_is_the_last_quarter_at_the_final_size(tmp_path):
    from sparserl.bench.report import final_size_returns

    def late(cell, steps, final):
        return final_size_returns(cell, steps=steps, final=final, best=0.0)[1]

    pruned = tmp_path / "pruned"
    pruned.mkdir()
    # 4000 steps: the last quarter is step > 3000; the 40-neuron row at 3500 is before the last prune
    (pruned / "metrics.csv").write_text("step,eval_return,alive_q\n1000,300.0,256\n3000,150.0,40\n"
                                        "3500,90.0,40\n3750,200.0,17\n3900,,17\n4000,180.0,17\n")
    assert late(pruned, 4000.0, final=-1.0) == pytest.approx((200.0 + 180.0) / 2)
    dense = tmp_path / "dense"   # no size columns: every evaluation in the window counts
    dense.mkdir()
    (dense / "metrics.csv").write_text("step,eval_return\n1000,10.0\n3000,20.0\n3500,30.0\n4000,60.0\n")
    assert late(dense, 4000.0, final=-1.0) == pytest.approx(45.0)
    # each fallback to the final evaluation: unknown budget, no evaluation in the window, no step
    # column, no metrics.csv
    assert late(dense, float("nan"), final=-1.0) == -1.0
    assert late(dense, 400_000.0, final=-1.0) == -1.0
    nostep = tmp_path / "nostep"
    nostep.mkdir()
    (nostep / "metrics.csv").write_text("eval_return\n10.0\n60.0\n")
    assert late(nostep, 4000.0, final=-1.0) == -1.0
    assert late(tmp_path / "missing", 4000.0, final=7.0) == 7.0


def test_a_dense_only_suite_reports_no_empty_ratio_tables(run_dir, tmp_path):
    import shutil

    dense_only = tmp_path / "dense_only"
    for cell in run_dir.glob("*/*/dense/seed*"):
        shutil.copytree(cell, dense_only / cell.relative_to(run_dir))
    shutil.copyfile(run_dir / "manifest.json", dense_only / "manifest.json")
    md = make_report(dense_only, n_boot=100, plots=False)["md"].read_text()
    assert "as % of dense" not in md and "Size and FLOP ratios" not in md
    assert md.count("| TD3 | EnvA-v0 | dense | 3 |") == 1 and "**Absolute final return and cost**" in md


@pytest.mark.parametrize("tail", ["4000,9", "4000,900.0\n"[:-1], "4000\n", "4000,9e+,17\n"])
def test_a_truncated_last_metrics_row_is_skipped_with_a_warning(tmp_path, capsys, tail):
    """A run killed while appending to metrics.csv: its cut last row (no line end, fewer
    fields, a cut-off number) is not read as its last evaluation."""
    from sparserl.bench.report import final_size_returns

    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "metrics.csv").write_text("step,eval_return,alive_q\n1000,10.0,17\n3500,30.0,17\n" + tail)
    best, late = final_size_returns(cell, steps=4000.0, final=-1.0, best=0.0)
    assert (best, late) == (30.0, 30.0)
    err = capsys.readouterr().err
    assert "truncated last row" in err and "metrics.csv" in err


def test_method_order_covers_every_method_and_labels_split_at_the_method_name():
    from sparserl.bench.report_data import METHOD_ORDER, method_sort_key, split_label
    from sparserl.methods import METHODS

    assert METHOD_ORDER == list(METHODS)  # neuron-magnitude included
    assert split_label("neuron-magnitude") == ("neuron-magnitude", "")
    assert split_label("neuron-magnitude-98") == ("neuron-magnitude", "98")
    assert split_label("rigl-98") == ("rigl", "98")
    assert split_label("mine-x") == ("mine", "x")  # an unknown method splits at its first "-"
    labels = ["gmp", "neuron-magnitude-a", "structured", "dense-b", "mine", "neuron-magnitude"]
    assert sorted(labels, key=method_sort_key) == ["dense-b", "structured", "neuron-magnitude",
                                                   "neuron-magnitude-a", "gmp", "mine"]
