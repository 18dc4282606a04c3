"""RLx2 knobs with meaningless values must be one-line user errors (exit 2), not tracebacks
or silent reinterpretations (buffer_min / buffer_max / buffer_threshold / nstep_delay)."""
import pytest

from sparserl.cli import build_parser, config_from_args
from sparserl.errors import UserError

BASE = "train --algo td3 --env Pendulum-v1 --method rlx2 --steps 300 --learning-starts 100"


def resolve_args(extra: str):
    return config_from_args(build_parser().parse_args(f"{BASE} {extra}".split()))


def test_valid_rlx2_values_resolve():
    cfg = resolve_args("--buffer-min 1 --buffer-max 300 --buffer-threshold 0 --nstep-delay 0")
    assert (cfg.buffer_min, cfg.buffer_max, cfg.buffer_threshold, cfg.nstep_delay) == (1, 300, 0.0, 0)


def test_nstep_must_be_positive():
    with pytest.raises(UserError, match=r"--nstep '0': out of range; allowed: an integer in \[1, 100\]"):
        resolve_args("--nstep 0")


@pytest.mark.parametrize("extra", ["--buffer-min 0", "--buffer-max -5", "--buffer-max 0",
                                   "--buffer-threshold -1", "--nstep-delay -3",
                                   "--buffer-min 500 --buffer-max 100"])
def test_bad_rlx2_values_are_user_errors(extra):
    with pytest.raises(UserError):
        resolve_args(extra)
