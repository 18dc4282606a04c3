"""Suite YAML: expansion, directory layout, the command builder, one-line errors."""
import sys
from pathlib import Path

import pytest

from sparserl.bench.suite import default_command, load_suite, option_args, parse_suite
from sparserl.errors import UserError

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
SMOKE = SUITES / "smoke.yaml"


def test_smoke_expands_to_cells_with_layout_and_command(tmp_path):
    suite = load_suite(SMOKE, tmp_path)
    assert suite.name == "smoke"
    assert len(suite.cells) == 2 * 3 * 2  # algos x methods x seeds
    keys = {c.key for c in suite.cells}
    assert "td3/Pendulum-v1/rigl/seed1" in keys and "sac/Pendulum-v1/dense/seed0" in keys
    cell = next(c for c in suite.cells if c.key == "td3/Pendulum-v1/static/seed1")
    assert cell.out_dir == tmp_path / "td3" / "Pendulum-v1" / "static" / "seed1"
    assert default_command(cell) == [
        sys.executable, "-m", "sparserl", "train", "--algo", "td3", "--method", "static",
        "--env", "Pendulum-v1", "--seed", "1", "--steps", "600", "--out", str(cell.out_dir),
        "--eval-every", "300", "--eval-episodes", "2", "--no-progress",
        "--batch-size", "32", "--learning-starts", "200",
    ]
    # seed-major order: every configuration gets a first seed before any gets a second
    assert [c.seed for c in suite.cells] == sorted(c.seed for c in suite.cells)


def test_shipped_suites_load(tmp_path):
    short = load_suite(SUITES / "short.yaml", tmp_path)
    assert 10 <= len(short.cells) <= 60
    paper = load_suite(SUITES / "paper.yaml", tmp_path)
    assert len(paper.cells) == 2 * 4 * 6 * 8
    assert {c.steps for c in paper.cells} == {3_000_000}
    assert {c.seed for c in paper.cells} == set(range(8))
    assert {c.env for c in paper.cells} == {"HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"}
    for c in paper.cells:
        assert (dict(c.overrides).get("preset") == "paper") == (c.method != "dense")
        assert c.label == c.method  # no tags: method columns are the plain method names


def test_option_args():
    assert option_args("batch_size", 32) == ["--batch-size", "32"]
    assert option_args("tensorboard", False) == ["--no-tensorboard"]
    assert option_args("dynamic_buffer", True) == ["--dynamic-buffer"]
    assert option_args("hidden", [64, 64]) == ["--hidden", "64", "64"]
    assert option_args("lr", None) == []


def test_sweep_tags_and_conflicts(tmp_path):
    raw = {"steps": 10, "seeds": [0], "cells": [
        {"algo": "td3", "env": "E-v0", "method": ["dense"]},
        {"algo": "td3", "env": "E-v0", "method": "set", "sweep": {"actor_sparsity": [0.5, 0.9]}},
    ]}
    suite = parse_suite(raw, tmp_path)
    assert sorted(c.label for c in suite.cells) == [
        "dense", "set-actor_sparsity=0.5", "set-actor_sparsity=0.9"]
    raw["cells"].append({"algo": "td3", "env": "E-v0", "method": "dense", "overrides": {"lr": 1}})
    with pytest.raises(UserError, match="defined twice"):
        parse_suite(raw, tmp_path)


@pytest.mark.parametrize("text, message", [
    (None, "suite file not found"),
    ("cells: [\n  - algo: td3\n", "invalid YAML"),
    ("- just a list\n", "must be a YAML mapping"),
    ("cells: []\n", "non-empty list"),
    ("stepz: 5\ncells: [{algo: td3, env: E, method: dense}]\n", "unknown key.*stepz"),
    ("cells: [{algo: td3, env: E}]\n", "missing 'method'"),
    ("seeds: [0, 0]\ncells: [{algo: td3, env: E, method: dense}]\n", "duplicates"),
    ("steps: -3\ncells: [{algo: td3, env: E, method: dense}]\n", "positive integer"),
    ("cells: [{algo: td3, env: E, method: dense, overrides: [1]}]\n", "mapping"),
    ("steps: 5\nsteps: 500000\ncells: [{algo: td3, env: E, method: dense}]\n", "duplicate key 'steps'"),
    ("cells: [{algo: td3, env: E, method: dense, overrides: {lr: 1, lr: 2}}]\n", "duplicate key 'lr'"),
    ("timeout: .nan\ncells: [{algo: td3, env: E, method: dense}]\n", "'timeout' must be a positive finite"),
    ("cells: [{algo: td3, env: E, method: dense, timeout: .inf}]\n", "'timeout' must be a positive finite"),
])
def test_invalid_suites_raise_one_line_user_errors(tmp_path, text, message):
    path = tmp_path / "suite.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_suite(path, tmp_path / "out")
    assert "\n" not in str(info.value)
