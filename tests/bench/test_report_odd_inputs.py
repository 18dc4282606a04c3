"""``sparserl report`` on odd bench directories (issue 27.14): one line each, never a traceback.

A damaged run (truncated or mistyped summary.json, a metrics.csv that is not UTF-8) is skipped
with one warning line and the report is still written; what stops the whole report (a
non-numeric score_floor, ``plots`` being a file, a read-only directory) is one ``error:`` line.
"""
import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from sparserl.bench import run_suite
from sparserl.cli import main


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    from sparserl.bench.suite import prefix_command_builder

    here = Path(__file__).resolve().parent
    tmp = tmp_path_factory.mktemp("odd")
    suite = tmp / "suite.yaml"
    suite.write_text("name: odd\nsteps: 30\nseeds: [0, 1]\neval_every: 10\neval_episodes: 1\n"
                     "cells:\n  - {algo: td3, env: EnvA-v0, method: [dense, rigl]}\n")
    os.environ["FAKE_TRAINER_SLEEP"] = "0"
    try:
        summary = run_suite(suite, tmp / "run", workers=1, progress=False,
                            command_builder=prefix_command_builder([sys.executable, str(here / "fake_trainer.py")]))
    finally:
        os.environ.pop("FAKE_TRAINER_SLEEP", None)
    assert summary["completed"] == 4
    return tmp / "run"


def _report(run_dir: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["report", str(run_dir), "--n-boot", "100", "--no-plots"])
    return rc, out.getvalue(), err.getvalue()


def _first(run_dir: Path, name: str) -> Path:
    return sorted(run_dir.glob(f"*/*/*/seed*/{name}"))[0]


def _truncate_summary(d: Path):
    p = _first(d, "summary.json")
    p.write_text(p.read_text()[:40])


def _summary_field(key, value):
    def edit(d: Path):
        p = _first(d, "summary.json")
        s = json.loads(p.read_text())
        s[key] = value
        p.write_text(json.dumps(s))
    return edit


def _latin1_metrics(d: Path):
    p = _first(d, "metrics.csv")
    p.write_bytes(p.read_bytes() + "9,réglé\n".encode("latin-1"))


def _floor_text(d: Path):
    p = d / "suite.yaml"
    p.write_text(p.read_text() + "score_floor: {EnvA-v0: lots}\n")


def _plots_file(d: Path):
    (d / "plots").write_text("not a directory")


SKIPPED = [  # (id, damage, needles of the one warning line)
    ("summary-truncated", _truncate_summary, ["skipping unreadable", "summary.json", "truncated"]),
    ("summary-return-a-string", _summary_field("final_eval_return", "high"), ["final_eval_return", "'high'"]),
    ("summary-steps-a-list", _summary_field("steps", [1, 2]), ["steps", "[1, 2]"]),
    ("metrics-not-utf8", _latin1_metrics, ["metrics.csv", "not UTF-8", "left out"]),
]


@pytest.mark.parametrize("damage,needles", [c[1:] for c in SKIPPED], ids=[c[0] for c in SKIPPED])
def test_a_damaged_run_is_skipped_with_one_warning(damage, needles, bench_dir, tmp_path):
    d = shutil.copytree(bench_dir, tmp_path / "run")
    damage(d)
    rc, _, err = _report(d)
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert (d / "report.md").exists()


REFUSED = [  # (id, damage, needles of the one error line)
    ("score-floor-not-a-number", _floor_text, ["score_floor", "EnvA-v0", "'lots'", "number"]),
]


@pytest.mark.parametrize("damage,needles", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_report_refuses_in_one_line(damage, needles, bench_dir, tmp_path):
    d = shutil.copytree(bench_dir, tmp_path / "run")
    damage(d)
    rc, _, err = _report(d)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_plots_existing_as_a_file(bench_dir, tmp_path):
    d = shutil.copytree(bench_dir, tmp_path / "run")
    _plots_file(d)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["report", str(d), "--n-boot", "100"])
    assert rc == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "plots" in lines[0] and "not a directory" in lines[0], lines
    assert (d / "plots").read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_bench_directory(bench_dir, tmp_path):
    d = shutil.copytree(bench_dir, tmp_path / "run")
    d.chmod(0o555)
    try:
        rc, _, err = _report(d)
    finally:
        d.chmod(0o755)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Permission denied" in lines[0], lines
