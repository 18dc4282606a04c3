"""``train --help`` in sections, ``--version``, preset-named errors, and warnings for runs that
plan too few prune or topology events (issue 24, item 4)."""
import contextlib
import io
import json
import re

import pytest

import sparserl
from sparserl.cli import HELP_SECTIONS, main
from sparserl.config import TrainConfig, planned_updates, resolve
from sparserl.plan import MIN_RAMP_EVENTS, plan_warnings, prune_events, topology_updates
from sparserl.sparse.schedules import TopologySchedule
from sparserl.structured.threshold import PruneSchedule


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # --help / --version
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def train_help():
    rc, out, _ = _main(["train", "--help"])
    assert rc == 0
    return out


def test_help_is_in_sections(train_help):
    titles = [line[:-1] for line in train_help.splitlines() if line and not line[0].isspace() and line.endswith(":")]
    for title, _, _ in HELP_SECTIONS:
        assert title in titles
    # each section holds options: the sparse one has --actor-sparsity, the structured one --prune-every
    sections = re.split(r"\n(?=\S[^\n]*:\n)", train_help)
    by_title = {s.splitlines()[0][:-1]: s for s in sections}
    assert "--actor-sparsity" in by_title["sparse training"] and "--prune-every" in by_title["structured pruning"]
    assert "--nstep " in by_title["RLx2"] and "--eval-every" in by_title["evaluation, logging and checkpoints"]


def test_help_is_plain_text_with_each_default_once(train_help):
    assert "`" not in train_help
    body = train_help.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", body)
    assert len(entries) > 50
    for entry in entries:
        flat = " ".join(entry.split())
        assert flat.count("default:") <= 1, flat


def test_version_and_eval_help():
    rc, out, _ = _main(["--version"])
    assert rc == 0 and out.strip() == f"sparserl {sparserl.__version__}"
    rc, out, _ = _main(["eval", "--help"])
    flat = " ".join(out.split())
    assert rc == 0 and re.search(r"--episodes EPISODES \w+", flat)


def test_an_error_about_a_preset_value_names_the_preset(tmp_path):
    rc, _, err = _main(["train", "--algo", "td3", "--env", "Hopper-v5", "--method", "rlx2", "--preset", "paper",
                        "--steps", "5000", "--out", str(tmp_path / "r")])
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert re.search(r"--learning-starts \d+ \(from --preset paper\) must be below --steps 5000", err), err
    # a value the user typed is not attributed to the preset
    rc, _, err = _main(["train", "--algo", "td3", "--env", "Hopper-v5", "--preset", "paper", "--steps", "5000",
                        "--learning-starts", "6000", "--out", str(tmp_path / "r")])
    assert rc == 2 and "--learning-starts 6000 must be below" in err and "from --preset" not in err


@pytest.mark.parametrize("total,start,end,every", [(1125, 0.05, 0.5, 1000), (24750, 0.05, 0.5, 1000),
                                                   (500, 0.1, 0.8, 7), (100, 0.0, 1.0, 10), (40, 0.5, 0.5, 3)])
def test_prune_events_count_the_schedules_own_events(total, start, end, every):
    schedule = PruneSchedule(total, prune_start=start, prune_end=end, prune_every=every)
    counted = sum(1 for t in range(1, total + 1) if schedule.is_prune_step(t) and schedule.progress(t) > 0)
    assert prune_events(total, start, end, every) == counted


@pytest.mark.parametrize("total,delta,stop", [(1000, 100, None), (1000, 300, 0.5), (50, 100, None)])
def test_topology_updates_count_the_schedules_own_updates(total, delta, stop):
    stop_step = None if stop is None else max(1, int(stop * total))
    schedule = TopologySchedule(delta, 0.5, total, stop_step)
    assert topology_updates(total, delta, stop) == sum(schedule.is_update_step(t) for t in range(total + 1))


def test_short_structured_run_is_warned_about_and_prunes_no_more_than_planned(tmp_path):
    argv = ["train", "--algo", "dqn", "--env", "CartPole-v1", "--method", "structured", "--steps", "800",
            "--hidden", "16", "16", "--eval-every", "0", "--eval-episodes", "1", "--batch-size", "16",
            "--no-progress", "--no-tensorboard", "--out", str(tmp_path / "r")]
    rc, _, err = _main(argv)
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "prune event" in warnings[0] and "--prune-every" in warnings[0]
    planned = int(re.search(r"plans (\d+) prune event", warnings[0]).group(1))
    assert planned < MIN_RAMP_EVENTS
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["neurons"]["q"]["prune_events"] <= planned


def test_topology_warning_and_none_for_a_well_planned_run():
    short = resolve(TrainConfig(algo="td3", method="rigl", steps=2000, hidden=[8]))
    lines = plan_warnings(short)
    assert lines and all("topology update" in line for line in lines)
    assert str(short.topology_delta) in lines[0]
    fine = resolve(TrainConfig(algo="dqn", env="CartPole-v1", method="structured", steps=100_000))
    assert planned_updates(fine) > 0 and plan_warnings(fine) == []
    cubic = resolve(TrainConfig(algo="dqn", env="CartPole-v1", method="structured", steps=5000,
                                threshold_rule="cubic"))
    assert plan_warnings(cubic) == []  # the cubic rule reaches its target at the last event
    assert plan_warnings(resolve(TrainConfig(algo="td3", steps=2000))) == []  # dense: nothing to plan
