"""The default-preset rule (issue 22 item 7): without ``--preset``, the tuned preset applies where
it has an entry for the algo/env and fits the run, and the run says so; ``--preset none`` keeps
the built-in defaults; a run too short for the preset keeps them too, with the reason printed."""
from sparserl.api import DQN
from sparserl.cli import build_parser, config_from_args, main
from sparserl.config import config_from_options, load_preset

STEPS = 5000   # longer than the tuned CartPole entry's warm-up and one update period
TUNED_CARTPOLE = load_preset("tuned", "dqn", "CartPole-v1")


def _resolve(*argv):
    notes: list = []
    cfg = config_from_args(build_parser().parse_args(["train", *argv]), notes)
    return cfg, notes


def test_tuned_entry_applies_by_default_and_says_so():
    cfg, notes = _resolve("--algo", "dqn", "--env", "CartPole-v1", "--steps", str(STEPS))
    assert cfg.preset == "tuned"
    for name, value in TUNED_CARTPOLE.items():
        assert getattr(cfg, name) == value, name
    assert len(notes) == 1 and "using --preset tuned by default" in notes[0] and "--preset none" in notes[0]


def test_explicit_options_win_over_the_default_preset():
    lr = TUNED_CARTPOLE["lr"] / 2
    cfg, _ = _resolve("--algo", "dqn", "--env", "CartPole-v1", "--steps", str(STEPS), "--lr", str(lr))
    assert cfg.preset == "tuned" and cfg.lr == lr
    assert cfg.train_freq == TUNED_CARTPOLE["train_freq"]


def test_preset_none_keeps_the_built_in_defaults_silently():
    cfg, notes = _resolve("--algo", "dqn", "--env", "CartPole-v1", "--steps", str(STEPS), "--preset", "none")
    assert cfg.preset == "none" and notes == []
    assert cfg.lr != TUNED_CARTPOLE["lr"]
    assert cfg.train_freq != TUNED_CARTPOLE["train_freq"]


def test_no_tuned_entry_means_no_preset_and_no_note():
    cfg, notes = _resolve("--algo", "dqn", "--env", "Acrobot-v1", "--steps", str(STEPS))
    assert cfg.preset is None and notes == []


def test_a_run_too_short_for_the_preset_keeps_the_defaults_and_says_why(capsys):
    short = TUNED_CARTPOLE["learning_starts"] // 2
    cfg, notes = _resolve("--algo", "dqn", "--env", "CartPole-v1", "--steps", str(short))
    assert cfg.preset is None
    assert cfg.learning_starts < short
    assert len(notes) == 1 and "does not fit this run" in notes[0] and f"--steps {short}" in notes[0]
    # insisting on the preset gives the preset's own error instead
    rc = main(["train", "--algo", "dqn", "--env", "CartPole-v1", "--steps", str(short), "--preset", "tuned",
               "--out", "/nonexistent/never-created"])
    assert rc == 2 and "--learning-starts" in capsys.readouterr().err


def test_cli_prints_which_preset_applied(tmp_path, capsys):
    rc = main(["train", "--algo", "dqn", "--env", "CartPole-v1", "--steps", "1500", "--eval-every", "0",
               "--eval-episodes", "1", "--no-progress", "--no-tensorboard", "--out", str(tmp_path / "run")])
    assert rc == 0
    assert "using --preset tuned by default" in capsys.readouterr().out
    assert "preset: tuned" in (tmp_path / "run" / "config.yaml").read_text()


def test_python_api_takes_the_same_default():
    model = DQN("CartPole-v1")
    assert model.config.preset == "tuned" and model.config.lr == TUNED_CARTPOLE["lr"]
    assert DQN("CartPole-v1", preset="none").config.preset == "none"
    assert config_from_options({"algo": "dqn", "env": "CartPole-v1", "preset": "none"}).lr != TUNED_CARTPOLE["lr"]
