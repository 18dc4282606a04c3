"""Issue 27, items 9-17: the held-out probe's cases, table-driven like tests/cli/test_bad_inputs.py.

Every bad case ends with exit status 2 (``UserError`` for the API) and ONE line naming the bad
value and what is allowed; a refused fresh run leaves no directory; a refused resume writes
nothing. Damaged or edited checkpoints are refused (content hash, stored counters), files that
would make a reader hang or exhaust memory are refused quickly, and library warnings never add
lines to an error.
"""
from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from sparserl import TD3, checkpoint
from sparserl.cli import main
from sparserl.errors import UserError

TINY = ["--hidden", "16", "--batch-size", "8", "--eval-episodes", "1", "--no-progress", "--no-tensorboard"]


from test_bad_inputs import _assert_one_line as _one_line, _main  # noqa: E402 (one copy of the helpers)


def _refused(argv: list[str], needles: list[str]) -> str:
    rc, _, stderr = _main(argv)
    assert rc == 2, f"rc {rc}, stderr {stderr!r}"
    line = _one_line(stderr, needles)
    assert line.startswith("error: ")
    return line


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished 50-step TD3 run (checkpoint.pt, resume.pt at the final step)."""
    out = tmp_path_factory.mktemp("issue27") / "run"
    rc, _, stderr = _main(["train", "--steps", "50", "--learning-starts", "10", "--eval-every", "0",
                           "--out", str(out), *TINY])
    assert rc == 0, stderr
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file():
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


# ===================================================================== 27.9 content hash, counters
def _flip_exponent_bits(path: Path) -> None:
    """One flipped exponent bit in every floating-point tensor, the stored hash kept (what a bad
    disk or a careless edit does): torch.load still loads it."""
    raw = torch.load(path, weights_only=True)
    assert checkpoint.HASH_KEY in raw

    def flip(obj):
        if torch.is_tensor(obj) and obj.dtype == torch.float32 and obj.numel():
            obj.view(torch.int32).reshape(-1)[0] ^= 1 << 29
        elif isinstance(obj, dict):
            for v in obj.values():
                flip(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                flip(v)
    flip(raw["agent"])
    torch.save(raw, path)


def _edit(key_path: tuple, value):
    """Edit resume.pt and re-save it through checkpoint.save (a fresh, matching hash): the
    counters themselves must be checked."""
    def edit(path: Path) -> None:
        state = checkpoint.load(path)
        target = state
        for key in key_path[:-1]:
            target = target[key]
        target[key_path[-1]] = value
        checkpoint.save(state, path)
    return edit


CHECKPOINT_BAD = [  # (id, file, how to damage it, command, needles)
    ("flipped-bits-checkpoint", "checkpoint.pt", _flip_exponent_bits, "eval",
     ["checkpoint.pt", "fails its content check", "damaged or edited"]),
    ("flipped-bits-resume", "resume.pt", _flip_exponent_bits, "resume", ["resume.pt", "fails its content check"]),
    ("step-negative", "resume.pt", _edit(("step",), -50), "resume", ["stored step -50", "out of range", "0 <= step"]),
    ("step-beyond-steps", "resume.pt", _edit(("step",), 10_000), "resume", ["stored step 10000 of 50"]),
    ("episode-length-edited", "resume.pt", _edit(("episode", "len"), 999), "resume",
     ["episode length 999", "stored actions"]),
    ("elapsed-nan", "resume.pt", _edit(("elapsed",), float("nan")), "resume", ["elapsed nan", "finite"]),
    ("update-count-negative", "resume.pt", _edit(("agent", "n_updates", "critic"), -3), "resume",
     ["update counts", "-3"]),
]


@pytest.mark.parametrize("name,damage,command,needles", [c[1:] for c in CHECKPOINT_BAD],
                         ids=[c[0] for c in CHECKPOINT_BAD])
def test_damaged_or_edited_checkpoint_is_refused(name, damage, command, needles, run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    damage(copy / name)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    argv = (["eval", str(copy), "--episodes", "1"] if command == "eval"
            else ["train", "--resume", str(copy), "--steps", "60", "--no-progress"])
    _refused(argv, needles)
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before, "a refused command wrote"


def test_an_untouched_copy_still_evaluates_and_resumes(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    assert _main(["eval", str(copy), "--episodes", "1"])[0] == 0
    rc, _, stderr = _main(["train", "--resume", str(copy), "--steps", "60", "--no-progress", "--no-tensorboard"])
    assert rc == 0, stderr


def test_content_hash_round_trip_and_any_changed_bit(tmp_path):
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "step": 3, "rows": [1.5, "x", None]}
    checkpoint.save(state, tmp_path / "a.pt")
    assert checkpoint.HASH_KEY not in state  # the caller's dict is not changed
    loaded = checkpoint.load(tmp_path / "a.pt")
    assert checkpoint.HASH_KEY not in loaded and torch.equal(loaded["w"], state["w"]) and loaded["step"] == 3
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    raw["step"] = 4  # a plain value counts as much as a tensor
    torch.save(raw, tmp_path / "a.pt")
    with pytest.raises(UserError, match="fails its content check"):
        checkpoint.load(tmp_path / "a.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pt")  # no hash (older files, torch.save): loads
    assert torch.equal(checkpoint.load(tmp_path / "old.pt")["w"], torch.ones(2))


# ===================================================================== 27.17 messages
class Pwn:
    """A pickled call that would create a marker file if it ever ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def test_truncated_checkpoint_says_so(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    _truncate(copy / "checkpoint.pt")
    line = _refused(["eval", str(copy), "--episodes", "1"], ["checkpoint.pt", "truncated or not a sparserl checkpoint"])
    assert "Errno" not in line


TRUNCATED_RESUME = [  # (id, argv after the run dir is filled in, needles)
    ("fresh-train-into-it", ["train", "--out", "{run}", "--steps", "50", *TINY],
     ["resume.pt", "truncated or not a sparserl checkpoint", "pass --overwrite"]),
    ("resume-it", ["train", "--resume", "{run}", "--steps", "60", "--no-progress"],
     ["resume.pt", "truncated or not a sparserl checkpoint", "cannot be resumed", "--overwrite replaces it"]),
]


@pytest.mark.parametrize("argv,needles", [c[1:] for c in TRUNCATED_RESUME], ids=[c[0] for c in TRUNCATED_RESUME])
def test_truncated_resume_pt_mentions_overwrite(argv, needles, run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    _truncate(copy / "resume.pt")
    _refused([a.replace("{run}", str(copy)) for a in argv], needles)


def test_overwrite_replaces_a_run_with_a_truncated_resume_pt(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    _truncate(copy / "resume.pt")
    rc, _, stderr = _main(["train", "--out", str(copy), "--overwrite", "--steps", "30", "--learning-starts", "10",
                           "--eval-every", "0", *TINY])
    assert rc == 0, stderr
    assert checkpoint.load(copy / "resume.pt")["step"] == 30


def test_refused_pickle_names_the_call_and_never_suggests_weights_only_false(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    marker = tmp_path / "pwned"
    torch.save({"config": {}, "agent": Pwn(marker)}, copy / "checkpoint.pt")
    line = _refused(["eval", str(copy), "--episodes", "1"], ["refused to load", "checkpoint.pt", "system"])
    assert "weights_only" not in line and "trust" not in line
    assert not marker.exists(), "the pickled call ran"


class WarnThenFailEnv(gym.Env):
    """Emits a multi-line library-style warning, then fails in its constructor."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, fail=True):
        warnings.warn("this option is deprecated\n  and here is a second line", UserWarning)
        if fail:
            raise RuntimeError("no licence for the simulator")

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), 0.0, False, False, {}


@pytest.fixture
def warn_env_id():
    env_id = "SparserlWarnThenFail-v0"
    gym.register(env_id, entry_point=WarnThenFailEnv, max_episode_steps=20)
    yield env_id
    gym.registry.pop(env_id, None)


def test_library_warnings_add_no_lines_to_an_error(warn_env_id, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as a user's PYTHONWARNINGS=always would
        _refused(["train", "--env", warn_env_id, "--out", str(tmp_path / "out"), *TINY],
                 ["creating the environment raised RuntimeError: no licence for the simulator"])
    assert not (tmp_path / "out").exists()


def test_warnings_of_a_successful_command_are_one_line_each(warn_env_id, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        rc, _, stderr = _main(["train", "--env", warn_env_id, "--env-kwargs", "{fail: false}", "--steps", "30",
                               "--learning-starts", "10", "--eval-every", "0", "--out", str(tmp_path / "out"), *TINY])
    assert rc == 0, stderr
    lines = stderr.strip().splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines), lines
    assert any("UserWarning: this option is deprecated and here is a second line" in line for line in lines)


# ===================================================================== 27.12 bounded resources
def _alias_bomb() -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "env_kwargs:\n" + "".join(f"  {line}\n" for line in lines)


RESOURCE_BAD = [  # (id, argv or YAML text, needles)
    ("seed-exponent-million", ["--seed", "1e1000000"], ["--seed", "1e1000000", "too large"]),
    ("steps-long-digits", ["--steps", "9" * 5000], ["--steps", "too large"]),
    ("hidden-billion", ["--hidden", "1000000000"], ["needs at least", "GiB", "--hidden", "widest 1000000000"]),
    ("buffer-and-batch-huge", ["--buffer-size", "1e8", "--batch-size", "5e7", "--steps", "1e8"],
     ["needs at least", "minibatch", "--batch-size (50000000)"]),
    ("yaml-alias-bomb", _alias_bomb(), ["cannot read config", "more than 100,000 values (aliases expanded)"]),
    ("yaml-recursive-alias", "env_kwargs: &x {a: *x}\n", ["cannot read config", "recursive structure"]),
    ("yaml-nested-5000", "env_kwargs: {a: " + "[" * 5000 + "]" * 5000 + "}\n",
     ["cannot read config", "nested deeper than 64 levels"]),
    ("yaml-over-a-mebibyte", "lr: 0.001\n" + "# padding\n" * 120_000, ["cannot read config", "larger than 1024 KiB"]),
    ("env-kwargs-alias-bomb", ["--env-kwargs", "{a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], b: &b [*a, *a, *a, *a, *a, "
                               "*a, *a, *a, *a, *a], c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], d: &d [*c, *c, "
                               "*c, *c, *c, *c, *c, *c, *c, *c], e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}"],
     ["--env-kwargs", "more than 100,000 values"]),
]


@pytest.mark.parametrize("given,needles", [c[1:] for c in RESOURCE_BAD], ids=[c[0] for c in RESOURCE_BAD])
def test_resource_bombs_are_refused_fast_leaving_nothing(given, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sparserl.resources.machine_memory", lambda: 64 * 2 ** 30)  # the same answer everywhere
    if isinstance(given, str):
        (tmp_path / "cfg.yaml").write_text(given)
        given = ["--config", str(tmp_path / "cfg.yaml")]
    before = sorted(p.name for p in tmp_path.iterdir())
    start = time.monotonic()
    _refused(["train", *given, "--out", str(tmp_path / "out"), "--no-progress", "--no-tensorboard"], needles)
    assert time.monotonic() - start < 20, "refused, but only after a long time"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a refused run left a directory or file"


def test_config_from_dev_zero_is_refused(tmp_path, monkeypatch):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    monkeypatch.chdir(tmp_path)
    _refused(["train", "--config", "/dev/zero", "--out", str(tmp_path / "out")], ["/dev/zero", "larger than 1024 KiB"])
    assert not (tmp_path / "out").exists()


def test_memory_estimate_with_the_envs_sizes_leaves_no_directory(tmp_path, monkeypatch):
    """Fits with 1-d sizes, not with the env's: refused inside the trainer, before allocation,
    and the directory the lock created is removed again (no stale .lock)."""
    from sparserl.resources import estimate_bytes
    from sparserl.config import TrainConfig, resolve
    cfg = resolve(TrainConfig(env="Pendulum-v1", steps=10**7, buffer_size=10**7, hidden=[16]))
    lower, real = sum(estimate_bytes(cfg).values()), sum(estimate_bytes(cfg, 3, 1).values())
    assert lower < real
    monkeypatch.setattr("sparserl.resources.machine_memory", lambda: (lower + real) // 2)
    out = tmp_path / "out"
    _refused(["train", "--env", "Pendulum-v1", "--steps", "1e7", "--buffer-size", "1e7", "--hidden", "16",
              "--out", str(out), "--no-progress", "--no-tensorboard"], ["needs at least", "replay buffer"])
    assert not out.exists()


def test_api_refuses_200000_hidden_layers_before_building(monkeypatch):
    model = TD3("Pendulum-v1", hidden=[256] * 200_000, eval_every=0, eval_episodes=1)
    with pytest.raises(UserError, match="needs at least .* layer") as info:
        model.learn(100)
    _one_line(str(info.value), ["200000 layer(s)"])


def test_suite_with_ten_million_seeds_is_refused_in_dry_run(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: big\nsteps: 100\nseeds: 10000000\ncells:\n  - {algo: td3, env: Pendulum-v1, method: dense}\n")
    start = time.monotonic()
    _refused(["bench", str(suite), "--out", str(tmp_path / "grid"), "--dry-run"], ["seeds", "10000000", "10,000"])
    assert time.monotonic() - start < 20 and not (tmp_path / "grid").exists()
    suite.write_text("name: big\nsteps: 100\nseeds: 1000\ncells:\n  - {algo: td3, env: Pendulum-v1, method: dense,"
                     " sweep: {lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.01, 0.02]}}\n")
    _refused(["bench", str(suite), "--out", str(tmp_path / "grid"), "--dry-run"], ["11,000 cells", "at most 10,000"])


# ===================================================================== 27.11 and 27.15 the Python API
@pytest.fixture(scope="module")
def model():
    m = TD3("Pendulum-v1", hidden=[8], batch_size=8, learning_starts=10, eval_every=0, eval_episodes=1)
    return m.learn(30)


class IntBoxPendulum(gym.Wrapper):
    """Pendulum whose action space claims int64 (the probe's TD3-on-integers case)."""

    def __init__(self):
        super().__init__(gym.make("Pendulum-v1"))
        self.action_space = gym.spaces.Box(-2, 2, (1,), np.int64)


def _saved_with_spaces(tmp_path: Path, model, **changes) -> Path:
    path = tmp_path / "m.pt"
    model.save(path)
    state = checkpoint.load(path)
    state["spaces"].update(changes)
    checkpoint.save(state, path)
    return path


def _saved_without(tmp_path: Path, model, key: str) -> Path:
    path = tmp_path / "m.pt"
    model.save(path)
    state = checkpoint.load(path)
    del state[key]
    checkpoint.save(state, path)
    return path


def _sb3_load_missing(tmp_path: Path, _model):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from sparserl.integrations.sb3 import load
    load(tmp_path / "missing.zip", PPO)


def _second_learn_with(callback):
    def call(tmp_path, _model):
        TD3("Pendulum-v1", hidden=[8], batch_size=8, learning_starts=10, eval_every=0).learn(20, callback=callback)
    return call


API_BAD = [  # (id, call(tmp_path, model), needles of the UserError's one line)
    ("td3-int64-box", lambda t, m: TD3(IntBoxPendulum(), hidden=[8]).learn(50), ["floating point", "int64"]),
    ("predict-nan", lambda t, m: m.predict([np.nan, 0.0, 0.0]), ["predict", "nan", "finite"]),
    ("predict-inf-batch", lambda t, m: m.predict([[0.0, 0.0, 0.0], [0.0, np.inf, 0.0]]), ["predict", "inf", "index 4"]),
    ("evaluate-zero-episodes", lambda t, m: m.evaluate(n_episodes=0), ["n_episodes=0", "integer >= 1"]),
    ("load-negative-obs-shape", lambda t, m: TD3.load(_saved_with_spaces(t, m, obs_shape=[-3])),
     ["obs_shape [-3]", "integers >= 1"]),
    ("load-bad-obs-bounds", lambda t, m: TD3.load(_saved_with_spaces(t, m, obs_low=[0.0])), ["obs_low", "3 numbers"]),
    ("env-an-int", lambda t, m: TD3(42), ["TD3()", "env=42", "gymnasium.Env"]),
    ("predict-a-string", lambda t, m: m.predict("abc"), ["predict", "'abc'", "not numeric"]),
    ("predict-strings", lambda t, m: m.predict(["a", "b", "c"]), ["predict", "not numeric"]),
    ("evaluate-seed-negative", lambda t, m: m.evaluate(n_episodes=1, seed=-1), ["seed=-1", "[0, 4294967295]"]),
    ("evaluate-fraction-episodes", lambda t, m: m.evaluate(n_episodes=1.5), ["n_episodes=1.5"]),
    ("save-to-a-directory", lambda t, m: m.save(t), ["save", "is a directory"]),
    ("save-to-empty-path", lambda t, m: m.save(""), ["save", "path=''"]),
    ("load-device-tpu", lambda t, m: (m.save(t / "m.pt"), TD3.load(t / "m.pt", device="tpu")), ["'tpu'", "cuda:N"]),
    ("load-device-huge-index", lambda t, m: (m.save(t / "m.pt"), TD3.load(t / "m.pt", device="cuda:99999999999999999999")),
     ["cuda:99999999999999999999"]),
    ("load-missing-architecture", lambda t, m: TD3.load(_saved_without(t, m, "architecture")),
     ["not a sparserl model", "missing architecture"]),
    ("load-a-bare-dict", lambda t, m: (torch.save({"config": {"algo": "td3"}}, t / "d.pt"), TD3.load(t / "d.pt")),
     ["missing architecture, agent"]),
    ("load-unknown-algo", lambda t, m: (torch.save({"config": {"algo": "ppo"}, "architecture": {}, "agent": {}},
                                                    t / "d.pt"), TD3.load(t / "d.pt")), ["algo 'ppo'", "dqn, td3, sac"]),
    ("load-empty-path", lambda t, m: TD3.load(""), ["load", "path=''"]),
    ("learn-callback-int", _second_learn_with(42), ["callback=42", "allowed"]),
    ("learn-callback-string", _second_learn_with("stop"), ["callback='stop'", "allowed"]),
    ("sb3-load-missing-file", _sb3_load_missing, ["missing.zip", "no such SB3 model file"]),
]


@pytest.mark.parametrize("call,needles", [c[1:] for c in API_BAD], ids=[c[0] for c in API_BAD])
def test_bad_api_call_is_one_user_error_line(call, needles, model, tmp_path):
    with pytest.raises(UserError) as info:
        call(tmp_path, model)
    _one_line(str(info.value), needles)


def test_api_legal_calls_still_work(model, tmp_path):
    action, _ = model.predict(np.zeros(3, np.float32))
    assert action.shape == (1,) and np.isfinite(action).all()
    assert math.isfinite(model.evaluate(n_episodes=1, seed=0).mean)
    model.save(tmp_path / "m.pt")
    assert TD3.load(tmp_path / "m.pt", device="cpu").predict(np.zeros(3))[0].shape == (1,)


# ===================================================================== 27.14 eval / export / flops odd inputs
def _bare(tmp_path: Path, run: Path, edit) -> Path:
    copy = _copy(run, tmp_path / "run")
    state = checkpoint.load(copy / "checkpoint.pt")
    edit(state)
    checkpoint.save(state, copy / "checkpoint.pt")
    return copy


EVAL_BAD = [  # (id, argv after `eval RUN`, needles)
    ("seed-negative", ["--seed", "-1"], ["--seed -1", "[0, 2**32-1]"]),
    ("seed-2-to-32", ["--seed", str(2 ** 32)], ["--seed 4294967296"]),
    ("env-with-discrete-actions", ["--env", "CartPole-v1"], ["--env CartPole-v1", "do not fit", "3 observation values"]),
    ("env-with-other-obs-width", ["--env", "MountainCarContinuous-v0"], ["MountainCarContinuous-v0", "2 observation values"]),
]


@pytest.mark.parametrize("argv,needles", [c[1:] for c in EVAL_BAD], ids=[c[0] for c in EVAL_BAD])
def test_bad_eval_option(argv, needles, run):
    _refused(["eval", str(run), "--episodes", "1", *argv], needles)


MODEL_BAD = [  # (id, edit of checkpoint.pt, command, needles)
    ("eval-no-architecture", lambda s: s.pop("architecture"), "eval", ["not a sparserl model", "missing architecture"]),
    ("flops-no-architecture", lambda s: s.pop("architecture"), "flops", ["missing architecture"]),
    ("export-no-architecture", lambda s: s.pop("architecture"), "export", ["missing architecture"]),
    ("eval-unknown-algo", lambda s: s["config"].update(algo="ppo"), "eval", ["algo 'ppo'", "dqn, td3, sac"]),
    ("flops-architecture-scrambled", lambda s: s.update(architecture={"actor": [-4]}), "flops",
     ["stored architecture", "widths >= 1"]),
    ("eval-weights-of-another-shape", lambda s: s["agent"]["networks"]["actor"].update(
        {k: torch.zeros(5, 5) for k in list(s["agent"]["networks"]["actor"])[:1]}), "eval",
     ["does not fit its architecture"]),
]


@pytest.mark.parametrize("edit,command,needles", [c[1:] for c in MODEL_BAD], ids=[c[0] for c in MODEL_BAD])
def test_odd_checkpoint_is_one_line(edit, command, needles, run, tmp_path):
    copy = _bare(tmp_path, run, edit)
    argv = {"eval": ["eval", str(copy), "--episodes", "1"], "flops": ["flops", str(copy)],
            "export": ["export", str(copy), "--format", "npz", "--out", str(tmp_path / "p.npz")]}[command]
    _refused(argv, needles)
    assert not (tmp_path / "p.npz").exists()


def _flops_warning(run: Path, tmp_path: Path, text: str) -> str:
    copy = _copy(run, tmp_path / "run")
    (copy / "summary.json").write_text(text)
    rc, stdout, stderr = _main(["flops", str(copy)])
    assert rc == 0, stderr
    assert "== actor" in stdout and "training FLOPs" not in stdout
    return _one_line(stderr, ["warning: ", "summary.json", "training FLOPs not shown"])


def test_flops_with_a_truncated_summary(run, tmp_path):
    _flops_warning(run, tmp_path, (run / "summary.json").read_text()[:30])


def test_flops_with_summary_fields_of_the_wrong_type(run, tmp_path):
    _flops_warning(run, tmp_path, '{"flops": {"train_total": "many", "train_dense_total": 1}}')


TRAIN_BAD = [  # (id, argv, needles): one line, no directory
    ("out-name-over-255-bytes", ["--out", "{tmp}/" + "n" * 300], ["--out", "300 bytes long", "at most 255"]),
    ("device-huge-index", ["--device", "cuda:99999999999999999999"], ["--device", "cuda:99999999999999999999"]),
]


@pytest.mark.parametrize("argv,needles", [c[1:] for c in TRAIN_BAD], ids=[c[0] for c in TRAIN_BAD])
def test_bad_train_target(argv, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "out")]
    _refused(["train", *argv, *out, "--steps", "30", *TINY], needles)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_resume_pt_is_one_line_and_keeps_the_last_one(tmp_path, monkeypatch):
    import errno
    real_save = torch.save
    calls = []

    def save(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second resume.pt (step 40)
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    line = _refused(["train", "--steps", "50", "--learning-starts", "10", "--eval-every", "0",
                     "--checkpoint-every", "20", "--out", str(out), *TINY],
                    ["cannot write", "resume.pt", "No space left on device", "previous file"])
    assert "Errno" not in line
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoint.load(out / "resume.pt")["step"] == 20
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ===================================================================== 27.10 npz hash and validation
@pytest.fixture(scope="module")
def npz_arrays(run, tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "p.npz"
    rc, _, stderr = _main(["export", str(run), "--format", "npz", "--out", str(path)])
    assert rc == 0, stderr
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _as_csr(arrays: dict, i: int = 0) -> dict:
    """Layer ``i`` rewritten in CSR form (what a sparse run exports)."""
    w = arrays.pop(f"layer{i}.weight")
    rows, cols = np.nonzero(w)
    arrays[f"layer{i}.form"] = np.array("csr")
    arrays[f"layer{i}.data"] = w[rows, cols].astype(np.float32)
    arrays[f"layer{i}.indices"] = cols.astype(np.int32)
    arrays[f"layer{i}.indptr"] = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=w.shape[0]))]).astype(np.int32)
    return arrays


def _npz_case(change, rehash: bool = True):
    def build(arrays: dict, path: Path) -> Path:
        from sparserl import runtime
        arrays = _as_csr({k: v.copy() for k, v in arrays.items()})
        change(arrays)
        if rehash:
            arrays[runtime.HASH_KEY] = np.array(runtime.content_hash(arrays))
        np.savez(path, **arrays)
        return path
    return build


def _set(key, value):
    def change(a):
        a[key] = np.asarray(value, dtype=np.asarray(value).dtype)
    return change


def _poke(key, index, value):
    def change(a):
        a[key] = a[key].copy()
        a[key][index] = value
    return change


NPZ_BAD = [  # (id, build, needles)
    ("n-layers-zero", _npz_case(_set("n_layers", 0)), ["n_layers 0", "[1, 4096]"]),
    ("n-layers-negative", _npz_case(_set("n_layers", -1)), ["n_layers -1"]),
    ("csr-index-minus-one", _npz_case(_poke("layer0.indices", 0, -1)), ["layer 0", "CSR index -1", "0..2"]),
    ("csr-index-out-of-range", _npz_case(_poke("layer0.indices", 0, 7)), ["CSR index 7", "3 inputs"]),
    ("csr-bad-indptr", _npz_case(_poke("layer0.indptr", 1, 10_000)), ["indptr must rise from 0"]),
    ("csr-indptr-short", _npz_case(lambda a: a.update({"layer0.indptr": a["layer0.indptr"][:-1]})),
     ["indptr of shape"]),
    ("csr-nan-value", _npz_case(_poke("layer0.data", 0, np.nan)), ["finite floats"]),
    ("dense-nan-weight", _npz_case(_poke("layer1.weight", (0, 0), np.nan)), ["layer 1", "non-finite"]),
    ("dense-wrong-shape", _npz_case(lambda a: a.update({"layer1.weight": a["layer1.weight"][:, :-1]})),
     ["layer 1: weight of shape"]),
    ("layer-chain-broken", _npz_case(_set("layer1.shape", np.array([16, 15]))), ["layer 1 takes 15 inputs"]),
    ("obs-shape-negative", _npz_case(_set("obs_shape", np.array([-3]))), ["obs_shape [-3]"]),
    ("action-scale-nan", _npz_case(_poke("action_scale", 0, np.nan)), ["action_scale", "finite"]),
    ("edited-without-rehash", _npz_case(_poke("layer1.bias", 0, 1e30), rehash=False), ["fails its content check"]),
    ("dqn-head-on-td3-run", _npz_case(_set("head", np.array("argmax"))), ["discrete (argmax) actions", "Box"]),
]


@pytest.mark.parametrize("build,needles", [c[1:] for c in NPZ_BAD], ids=[c[0] for c in NPZ_BAD])
def test_malformed_npz_is_refused(build, needles, npz_arrays, run, tmp_path):
    path = build(npz_arrays, tmp_path / "bad.npz")
    _refused(["eval", str(run), "--exported", str(path), "--episodes", "1"], ["--exported", *needles])


def test_exported_npz_carries_a_hash_and_a_csr_copy_still_evaluates(npz_arrays, run, tmp_path):
    from sparserl import runtime
    assert str(npz_arrays[runtime.HASH_KEY]) == runtime.content_hash(npz_arrays)
    path = _npz_case(lambda a: None)(npz_arrays, tmp_path / "csr.npz")
    for densify in (True, False):
        assert runtime.Policy.load(path, densify=densify).act(np.zeros(3)).shape == (1,)
    rc, _, stderr = _main(["eval", str(run), "--exported", str(path), "--episodes", "1"])
    assert rc == 0, stderr


def test_c_generator_refuses_non_finite_weights(run):
    from sparserl.cli import load_agent
    from sparserl.export import policy_spec_of
    from sparserl.export.c_format import generate_c
    _, agent, _ = load_agent(run, with_env=False)
    spec = policy_spec_of(agent)
    spec.weights[0][0, 0] = np.nan
    with pytest.raises(UserError, match="cannot generate C: layer 0: weight holds non-finite") as info:
        generate_c(spec, "policy.h")
    _one_line(str(info.value), ["layer 0"])


def test_case_count():
    """The README's reliability section reports these counts (issue 27, items 9-17)."""
    singles = 1 + 1 + 1 + 1 + 1 + 1 + 2 + 2 + 1 + 1  # truncated, pickle, warning, /dev/zero, env sizes,
    # 200000 layers, suites (2), flops (2), disk full, C generator
    n_bad = (len(CHECKPOINT_BAD) + len(TRUNCATED_RESUME) + len(RESOURCE_BAD) + len(API_BAD) + len(EVAL_BAD)
             + len(MODEL_BAD) + len(TRAIN_BAD) + len(NPZ_BAD) + singles)
    assert n_bad == 78
