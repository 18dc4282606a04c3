"""What a run prints (issue 24, item 2): one line per evaluation off a terminal, a bar on one,
method metrics in TensorBoard and in the run plot, and final lines on what the network became.

Runs are tiny (a few hundred DQN CartPole steps); expectations come from the run's own
metrics.csv / summary.json, never from fixed numbers.
"""
import contextlib
import csv
import io
import json
import re
import struct

import pytest

from sparserl.cli import main
from sparserl.plots import learning_curve, size_columns
from sparserl.terminal import choose_output, eval_line, format_duration, network_lines
from sparserl.trainer import method_scalars

TINY = ["--algo", "dqn", "--env", "CartPole-v1", "--steps", "600", "--learning-starts", "100",
        "--eval-every", "200", "--eval-episodes", "2", "--hidden", "16", "16", "--batch-size", "16"]
PRUNE = ["--method", "structured", "--prune-every", "10", "--target-neuron-fraction", "0.75"]
EVAL_LINE = re.compile(r"^step (\d+)/(\d+) \| return (-?[\d.]+) ± ([\d.]+) \| [\d,]+ steps/s \| ETA \S+")


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _rows(run):
    with (run / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def structured_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("term") / "run"
    rc, stdout, stderr = _main(["train", *TINY, *PRUNE, "--out", str(out)])  # --progress, but not a TTY
    assert rc == 0, stderr
    return out, stdout, stderr


def test_off_a_terminal_each_evaluation_is_one_line(structured_run):
    out, stdout, stderr = structured_run
    assert "\r" not in stdout and "\r" not in stderr  # no bar frames in a redirected log
    lines = [line for line in stdout.splitlines() if line.startswith("step ")]
    rows = _rows(out)
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        m = EVAL_LINE.match(line)
        assert m, line
        assert int(m.group(1)) == int(row["step"]) and int(m.group(2)) == 600
        assert abs(float(m.group(3)) - float(row["eval_return"])) < 0.01
        # the method's metrics: neurons alive of the original count, as metrics.csv has them
        assert f"q {row['alive_q']}/32 neurons" in line


def test_no_progress_prints_the_same_lines(tmp_path):
    rc, stdout, stderr = _main(["train", *TINY, "--no-progress", "--no-tensorboard", "--out", str(tmp_path / "r")])
    assert rc == 0, stderr
    lines = [line for line in stdout.splitlines() if EVAL_LINE.match(line)]
    assert len(lines) == len(_rows(tmp_path / "r")) >= 3


def test_final_lines_say_what_the_network_became(structured_run):
    out, stdout, _ = structured_run
    summary = json.loads((out / "summary.json").read_text())
    block = summary["neurons"]["q"]
    now = "x".join(map(str, block["architecture"]))
    removed = round(100 * block["neurons_removed_frac"])
    assert f"q: 16x16 -> {now}, {removed}% of neurons removed" in stdout
    assert block["neurons_alive"] < block["neurons_total"]  # the tiny run did prune


def test_sparse_runs_state_their_weight_sparsity(tmp_path):
    rc, stdout, stderr = _main(["train", *TINY, "--method", "static", "--q-sparsity", "0.5", "--no-tensorboard",
                                "--out", str(tmp_path / "s")])
    assert rc == 0, stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert f"q: {100 * summary['sparsity']['q']:.1f}% of weights are zero" in stdout
    assert any("% sparse" in line for line in stdout.splitlines() if line.startswith("step "))


def test_method_metrics_go_to_tensorboard(structured_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out, _, _ = structured_run
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert "structured/alive_q" in tags
    logged = [e.value for e in events.Scalars("structured/alive_q")]
    assert logged == [float(r["alive_q"]) for r in _rows(out)]


def test_method_scalars_names_and_skips():
    row = {"alive_q": 12, "sparsity_actor": 0.9, "buffer_size": 5, "prune_norm_ratio_q": "", "flag": True}
    tags = method_scalars(row, {"buffer_size": 5})
    assert tags == {"structured/alive_q": 12.0, "sparse/sparsity_actor": 0.9}


def _png_size(path):
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_the_run_plot_has_a_size_panel_when_the_method_changes_the_network(structured_run, tmp_path):
    out, _, _ = structured_run
    rows = _rows(out)
    assert size_columns(rows) == (["alive_q"], [])
    plain = [{k: v for k, v in r.items() if not k.startswith("alive_")} for r in rows]
    learning_curve(plain, tmp_path / "plain.png")
    # the same width, a taller figure: one more panel
    (w0, h0), (w1, h1) = _png_size(tmp_path / "plain.png"), _png_size(out / "learning_curve.png")
    assert w0 == w1 and h1 > h0


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_a_bar_only_at_a_terminal():
    assert choose_output(True, _Stream(True)) == "bar"
    assert choose_output(True, _Stream(False)) == "lines"
    assert choose_output(False, _Stream(True)) == "lines"


def test_line_helpers():
    assert format_duration(42) == "42s" and format_duration(185) == "3m05s" and format_duration(float("nan")) == "?"
    line = eval_line({"step": 50, "eval_return": 1.5, "eval_return_std": 0.5, "alive_q": 7}, 100, 10.0,
                     {"q": {"neurons_total": 16}})
    assert line.startswith("step 50/100 | return 1.50 ± 0.50") and "ETA 5s" in line and "q 7/16 neurons" in line
    assert network_lines({"method": "dense", "sparsity": {"q": 0.0}}) == []
