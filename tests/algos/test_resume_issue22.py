"""Issue 22: exact resume with the new structured-pruning options (the proximal step, pruning
only one network, a critic target of its own), like tests/algos/test_resume_methods.py."""
import pytest

from sparserl import checkpoint
from sparserl.cli import main

from test_resume import _metrics, _summary, assert_same, run_interrupted
from test_resume_methods import args_for

CASES = {
    "proximal": ["--reg-mode", "proximal", "--reg-lambda", "0.05"],
    "actor-only": ["--prune-networks", "actor", "--reg-mode", "proximal", "--target-neuron-fraction", "0.5"],
    "own-critic-target": ["--target-neuron-fraction", "0.5", "--critic-target-neuron-fraction", "0.25",
                          "--threshold-rule", "cubic"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_structured_with_issue22_options_resumes_exactly(case, tmp_path, monkeypatch, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    args = [*args_for("structured", full), *CASES[case]]
    assert main(args) == 0
    run_interrupted(monkeypatch, [*args_for("structured", part), *CASES[case]])
    assert main(["train", "--resume", str(part)]) == 0
    full_ckpt, part_ckpt = checkpoint.load(full / "checkpoint.pt"), checkpoint.load(part / "checkpoint.pt")
    assert_same(full_ckpt["agent"], part_ckpt["agent"], "agent")
    assert full_ckpt["architecture"] == part_ckpt["architecture"]
    assert_same(checkpoint.load(full / "resume.pt")["method"], checkpoint.load(part / "resume.pt")["method"], "method")
    assert _metrics(full) == _metrics(part)
    assert _summary(full) == _summary(part)
    neurons = _summary(full)["neurons"]
    assert neurons["actor.net"]["neurons_alive"] < 128  # pruning did happen across the interruption
    if case == "actor-only":
        assert sorted(neurons) == ["actor.net"]
        assert full_ckpt["architecture"]["critic.q1"] == [64, 64]
    if case == "own-critic-target":
        assert full_ckpt["architecture"]["critic.q1"] == [48, 48]  # 64 - floor(0.25 * 64)
        assert full_ckpt["architecture"]["actor.net"] == [32, 32]

