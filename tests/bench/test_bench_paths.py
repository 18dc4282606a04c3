"""Suites cannot write or delete outside --out: names are single directory levels, a Gymnasium
namespace maps to '+', and the resolved cell directory must lie inside OUT."""
import json
import os

import pandas as pd
import pytest

from sparserl.bench import make_report, run_suite
from sparserl.bench.results_md import render_results_section
from sparserl.bench.suite import env_dir_name, env_from_dir_name, load_suite
from sparserl.errors import UserError


def _tree(root):
    """Every path under root with the bytes of its files (to prove nothing changed)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def sandbox(tmp_path):
    """tmp/box/out is --out; tmp/victim.txt and tmp/box/keep/ must survive every suite."""
    (tmp_path / "victim.txt").write_text("precious")
    (tmp_path / "box" / "keep").mkdir(parents=True)
    (tmp_path / "box" / "keep" / "data.txt").write_text("also precious")
    return tmp_path


@pytest.mark.parametrize("cell", [
    "{algo: 'td3/../../..', env: E-v0, method: dense}",
    "{algo: '..', env: E-v0, method: dense}",
    "{algo: td3, env: '../../victim', method: dense}",
    "{algo: td3, env: 'a/../../..', method: dense}",
    "{algo: td3, env: 'ALE/Pong/v5', method: dense}",
    "{algo: td3, env: '/etc', method: dense}",
    "{algo: td3, env: 'E+v0', method: dense}",
    "{algo: td3, env: E-v0, method: 'dense/../../../keep'}",
    "{algo: td3, env: E-v0, method: \"dense\\0\"}",
    "{algo: \"td3\\n\", env: E-v0, method: dense}",
    "{algo: td3, env: E-v0, method: dense, tag: '../../keep'}",
])
def test_path_escaping_names_are_refused_and_nothing_is_touched(sandbox, fake_builder, cell):
    suite = sandbox / "suite.yaml"
    suite.write_text(f"steps: 10\neval_every: 5\neval_episodes: 1\ncells:\n  - {cell}\n")
    before = _tree(sandbox)
    with pytest.raises(UserError) as info:
        run_suite(suite, sandbox / "box" / "out", workers=1, command_builder=fake_builder, progress=False)
    assert "\n" not in str(info.value)
    assert _tree(sandbox) == before  # not even --out was created


def test_suite_name_with_a_slash_is_refused(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: a/../../x\ncells: [{algo: td3, env: E-v0, method: dense}]\n")
    with pytest.raises(UserError, match="'name' must be a simple name"):
        load_suite(suite, tmp_path / "out")


def test_symlinked_cell_directory_pointing_outside_out_is_refused(sandbox, fake_builder):
    out = sandbox / "box" / "out"
    out.mkdir()
    os.symlink(sandbox / "box" / "keep", out / "td3")  # a directory in OUT that leads elsewhere
    suite = sandbox / "suite.yaml"
    suite.write_text("steps: 10\neval_every: 5\neval_episodes: 1\ncells: [{algo: td3, env: E-v0, method: dense}]\n")
    before = _tree(sandbox / "box" / "keep")
    with pytest.raises(UserError, match="outside --out"):
        run_suite(suite, out, workers=1, command_builder=fake_builder, progress=False)
    assert _tree(sandbox / "box" / "keep") == before


def test_gymnasium_namespace_is_one_directory_level_and_reported_with_its_slash(tmp_path, fake_builder):
    assert env_from_dir_name(env_dir_name("ALE/Pong-v5")) == "ALE/Pong-v5"
    suite = tmp_path / "suite.yaml"
    suite.write_text("steps: 10\neval_every: 5\neval_episodes: 1\nseeds: [0, 1]\n"
                     "cells: [{algo: td3, env: [ALE/Pong-v5, E-v0], method: [dense, static]}]\n")
    out = tmp_path / "out"
    res = run_suite(suite, out, workers=2, command_builder=fake_builder, progress=False)
    assert res["completed"] == 8 and res["failed"] == 0
    cell_dirs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("summary.json"))
    assert "td3/ALE+Pong-v5/dense/seed0" in cell_dirs
    assert all(d.count("/") == 3 for d in cell_dirs)  # algo/env/label/seedK, nothing deeper
    # The child got the real id on its command line, and the report reads it back from the directory.
    summary = json.loads((out / "td3/ALE+Pong-v5/dense/seed0/summary.json").read_text())
    assert summary["env"] == "ALE/Pong-v5"
    runs = pd.read_csv(make_report(out, n_boot=50, plots=False)["runs_csv"])
    assert sorted(set(runs["env"])) == ["ALE/Pong-v5", "E-v0"]


def test_results_md_ignores_a_path_like_suite_name_in_a_manifest(tmp_path, fake_builder):
    """The manifest is data: a crafted 'suite' name must not steer where plots are copied."""
    suite = tmp_path / "suite.yaml"
    suite.write_text("steps: 10\neval_every: 5\neval_episodes: 1\ncells: [{algo: td3, env: E-v0, method: dense}]\n")
    out = tmp_path / "box" / "run"
    run_suite(suite, out, workers=1, command_builder=fake_builder, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["suite"] = "../../escaped"
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / "curve.png").write_bytes(b"\x89PNG")
    section_id, _ = render_results_section(out, n_boot=50, plots_dir=tmp_path / "box" / "docs" / "img")
    assert section_id == "run/run"
    assert (tmp_path / "box" / "docs" / "img" / "run" / "curve.png").is_file()
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "box" / "escaped").exists()


def test_module_env_id_in_a_suite_needs_trust_env_module_and_nothing_is_imported(tmp_path, monkeypatch, capsys):
    """A suite is data: its 'module:Class' env is refused (one line, exit 2) before any cell
    runs, so the module's code never runs; --trust-env-module passes the flag on to the cells."""
    from sparserl.bench.suite import default_resume_command, train_args
    from sparserl.cli import main

    marker = tmp_path / "imported"
    (tmp_path / "mymod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # a child process would find mymod too
    suite = tmp_path / "suite.yaml"
    suite.write_text("steps: 20\neval_every: 10\neval_episodes: 1\n"
                     "cells: [{algo: dqn, env: 'mymod:Env', method: dense}]\n")
    before = _tree(tmp_path)
    for extra in ([], ["--dry-run"]):
        assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "mymod:Env" in err and "--trust-env-module" in err
    assert not marker.exists()
    assert _tree(tmp_path) == before
    trusted = load_suite(suite, tmp_path / "out", trust_env_module=True).cells[0]
    assert "--trust-env-module" in train_args(trusted)
    assert "--trust-env-module" in default_resume_command(trusted)
    (tmp_path / "plain.yaml").write_text("cells: [{algo: dqn, env: CartPole-v1, method: dense}]\n")
    plain = load_suite(tmp_path / "plain.yaml", tmp_path / "out").cells[0]
    assert "--trust-env-module" not in train_args(plain) + default_resume_command(plain)


@pytest.mark.parametrize("options", [
    "overrides: {out: '../../escaped', overwrite: true}",
    "sweep: {out: ['../../a', '../../b']}",
    "overrides: {resume: '../../victim'}",
    "overrides: {trust-env-module: true}",
    "overrides: {config: '../victim.txt'}",
    "overrides: {seed: 3}",
    "sweep: {not_a_field: [1, 2]}",
])
def test_overrides_and_sweeps_accept_only_config_fields(sandbox, fake_builder, options):
    """Overrides and sweeps become `sparserl train` options: a run-control option there would
    write outside --out (or replace runs); refused in one line naming the key, nothing touched."""
    suite = sandbox / "suite.yaml"
    suite.write_text("steps: 10\neval_every: 5\neval_episodes: 1\n"
                     f"cells:\n  - {{algo: td3, env: E-v0, method: dense, {options}}}\n")
    before = _tree(sandbox)
    with pytest.raises(UserError) as info:
        run_suite(suite, sandbox / "box" / "out", workers=1, command_builder=fake_builder, progress=False)
    key = options.split("{")[1].split(":")[0]
    assert "\n" not in str(info.value) and repr(key) in str(info.value)
    assert _tree(sandbox) == before
