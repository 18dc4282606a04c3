"""Shared helpers of the bench tests: a fake trainer instead of ``sparserl train``."""
import sys
from pathlib import Path

import pytest

from sparserl.bench.suite import prefix_command_builder

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FAKE_TRAINER = HERE / "fake_trainer.py"
SMOKE = REPO / "benchmarks" / "suites" / "smoke.yaml"
SUITES = REPO / "benchmarks" / "suites"


@pytest.fixture
def fake_builder():
    """Command builder running tests/bench/fake_trainer.py with the real train arguments."""
    return prefix_command_builder([sys.executable, str(FAKE_TRAINER)])


@pytest.fixture(autouse=True)
def _fast_fake(monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_SLEEP", "0.05")
    monkeypatch.delenv("FAKE_TRAINER_FAIL", raising=False)
