"""``sparserl report`` on plain ``sparserl train`` run directories (issue 24, item 1).

Real runs are tiny DQN CartPole runs (a few hundred steps); their returns are whatever they
are, so the tests compare the report with the runs' own summary.json, never with fixed numbers.
"""
import contextlib
import io
import json
import math
import shutil

import pandas as pd
import pytest
import yaml

from sparserl.cli import main

TINY = ["--algo", "dqn", "--env", "CartPole-v1", "--steps", "400", "--learning-starts", "100",
        "--eval-every", "200", "--eval-episodes", "2", "--hidden", "8", "8", "--batch-size", "16",
        "--no-progress", "--no-tensorboard"]


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs in one directory: dense seeds 0 and 1, and static sparse seed 0."""
    root = tmp_path_factory.mktemp("plain")
    for name, extra in (("dense-s0", ["--seed", "0"]), ("dense-s1", ["--seed", "1"]),
                        ("static-s0", ["--seed", "0", "--method", "static", "--q-sparsity", "0.5"])):
        rc, _, err = _main(["train", *TINY, *extra, "--out", str(root / name)])
        assert rc == 0, err
    return root


def _summary(run):
    return json.loads((run / "summary.json").read_text())


def test_two_run_dirs_give_one_report_grouped_from_their_summaries(runs, tmp_path):
    out = tmp_path / "report"
    rc, stdout, err = _main(["report", str(runs / "dense-s0"), str(runs / "dense-s1"), str(runs / "static-s0"),
                             "--out", str(out), "--n-boot", "200", "--no-plots"])
    assert rc == 0, err
    table = pd.read_csv(out / "report.csv")
    assert sorted(table["label"]) == ["dense", "static"]
    dense = table[table["label"] == "dense"].iloc[0]
    assert dense["n_seeds"] == 2 and dense["algo"] == "dqn" and dense["env"] == "CartPole-v1"
    returns = [_summary(runs / d)["final_eval_return"] for d in ("dense-s0", "dense-s1")]
    assert math.isclose(dense["return_mean"], sum(returns) / 2)
    # the tables are printed too, and the single static run says n=1 instead of an interval
    assert "(n=1)" in stdout and "| static |" in stdout.replace("  ", " ")
    static = table[table["label"] == "static"].iloc[0]
    assert math.isnan(static["return_ci_low"]) and math.isnan(static["return_ci_high"])
    assert "(n=1)" in (out / "report.md").read_text()


def test_a_directory_of_runs_is_read_and_the_report_lands_in_it(runs, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    rc, stdout, err = _main(["report", str(root), "--n-boot", "200"])
    assert rc == 0, err
    assert (root / "report.md").exists() and (root / "runs.csv").exists()
    assert any((root / "plots").glob("learning_curves_*.png"))
    listed = pd.read_csv(root / "runs.csv")
    assert len(listed) == 3 and set(listed["seed"]) == {0, 1}
    assert str(root / "report.md") in stdout


def test_runs_that_differ_in_more_than_the_seed_are_not_pooled(runs, tmp_path):
    """Two dense runs with different learning rates are two experiments, labelled by the difference."""
    root = tmp_path / "lr"
    shutil.copytree(runs / "dense-s0", root / "a")
    shutil.copytree(runs / "dense-s1", root / "b")
    config = yaml.safe_load((root / "b" / "config.yaml").read_text())
    config["lr"] = config["lr"] * 4
    (root / "b" / "config.yaml").write_text(yaml.safe_dump(config))
    rc, _, err = _main(["report", str(root), "--n-boot", "200", "--no-plots"])
    assert rc == 0, err
    labels = sorted(pd.read_csv(root / "report.csv")["label"])
    assert len(labels) == 2 and all(label.startswith("dense-lr=") for label in labels)


def test_a_directory_without_runs_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = _main(["report", str(tmp_path / "empty")])
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "empty") in lines[0] and "summary.json" in lines[0]
    rc, _, err = _main(["report", str(tmp_path / "missing")])
    assert rc == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def test_results_md_is_for_bench_directories(runs, tmp_path):
    rc, _, err = _main(["report", str(runs / "dense-s0"), "--results-md", str(tmp_path / "R.md")])
    assert rc == 2 and "--results-md" in err and str(runs / "dense-s0") in err
    assert not (tmp_path / "R.md").exists()
