"""Typed run configuration.

One flat dataclass holds every knob of a run so that the CLI, YAML files, presets and
checkpoints all speak the same names (``--batch-size`` on the command line is
``batch_size`` in YAML).  Fields left as ``None`` take the algorithm's default from
``ALGO_DEFAULTS`` when the config is resolved, and the *resolved* config is what a run
writes to ``config.yaml``, so that file re-runs the same experiment.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import UserError
from .methods import METHODS, method_class
from .methods.options import BLOCKS as METHOD_BLOCKS, MAX_NSTEP, field_types  # noqa: F401 (MAX_NSTEP: as before)
from .planning import planned_updates, update_rounds  # noqa: F401 (importable from here as before)
from .validation import (NON_NEGATIVE, POSITIVE, POSITIVE_REAL, UNIT, UNIT_OPEN_BOTTOM,  # noqa: F401
                         UNIT_OPEN_TOP, Check, between, coerce, flag, option)

ALGOS = ("dqn", "td3", "sac")
PRESET_DIR = Path(__file__).parent / "presets"
#: the preset a run without ``--preset`` uses where it has an entry for the algo/env (so the
#: README's example commands give the README's figures); ``--preset none`` opts out
DEFAULT_PRESET = "tuned"
NO_PRESET = "none"

SEED_MAX = 2 ** 32 - 1                                   # numpy's and gymnasium's seed range
MAX_TORCH_THREADS = 1024                                 # torch crashes (SIGSEGV) far above this


def _is_device(text: str) -> bool:
    return text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())


_f = option  # a config field (see :func:`sparserl.validation.option`)


@dataclass
class RunOptions:
    """What to run, where, and how it is evaluated, logged and checkpointed."""

    # --- what to run -------------------------------------------------------------------
    algo: str = _f("td3", "algorithm", ALGOS)
    env: str = _f("Pendulum-v1", "Gymnasium id or module.path:ClassName",
                  check=Check(lambda v: bool(v.strip()), "a Gymnasium id or module.path:ClassName"))
    env_kwargs: Optional[dict] = _f(None, "keyword arguments for the env constructor (YAML/JSON mapping)")
    steps: int = _f(10_000, "environment steps", check=POSITIVE)
    seed: int = _f(0, "random seed (torch, numpy, env)", check=between(0, SEED_MAX, text="in [0, 2**32-1]"))
    out: str = _f("runs/default", "output directory",
                  check=Check(lambda v: bool(v.strip()) and "\0" not in v, "a directory path"))
    method: str = _f("dense", "sparse/pruning method", METHODS)
    preset: Optional[str] = _f(None, "per-env settings: 'paper' (RLx2 paper), 'tuned' (rl-zoo tuned dense baselines; "
                               "used by default where it has an entry for the algo/env and fits the run) or 'none' "
                               "(the built-in defaults)", ("paper", "tuned", NO_PRESET),
                               default_doc="'tuned' where it has an entry for the algo/env, else none")
    # --- evaluation, logging, checkpoints -----------------------------------------------
    eval_every: int = _f(5_000, "env steps between deterministic evaluations (0: only at the end)", check=NON_NEGATIVE)
    eval_episodes: int = _f(10, "episodes per evaluation", check=POSITIVE)
    # A reported final return should rest on many episodes (30+), while the evaluations along the
    # curve only need to show its shape: the final one may use more episodes than the others.
    final_eval_episodes: Optional[int] = _f(None, "episodes of the evaluation at the last step (the reported "
                                            "final return)", check=POSITIVE, default_doc="--eval-episodes")
    checkpoint_every: int = _f(10_000, "env steps between resumable checkpoints (0: only at the end)",
                               check=NON_NEGATIVE)
    progress: bool = _f(True, "show a progress bar at a terminal (off a terminal, and with --no-progress: one "
                        "line per evaluation)")
    tensorboard: bool = _f(True, "write TensorBoard events")
    torch_threads: int = _f(1, "torch intra-op threads, set for the process (1 is fastest for these small MLPs)",
                            check=between(1, MAX_TORCH_THREADS))
    device: str = _f("auto", "where networks, replay sampling and masks live: auto (cuda if available), cpu, cuda, cuda:N",
                     check=Check(_is_device, "auto, cpu, cuda or cuda:N"))
    schedule_steps: Optional[int] = _f(None, "env steps the schedules (epsilon, topology, pruning, n-step delay) are planned "
                                             "over (a resumed or extended run keeps its original plan)",
                                       check=POSITIVE, default_doc="--steps")
    method_options: Optional[dict] = _f(None, "options of a method added with sparserl.methods.register_method() "
                                        "that no built-in option block declares (YAML/JSON mapping)")


@dataclass
class AlgoOptions:
    """The hyper-parameters of DQN, TD3 and SAC (``None``: the algorithm's default, ``ALGO_DEFAULTS``)."""

    # --- common hyper-parameters (None: the algorithm's default) -------------------------
    hidden: Optional[list[int]] = _f(None, "hidden layer widths, e.g. 256 256", check=POSITIVE)
    init: str = _f("default", "weight init of every Linear layer, before any mask: 'default' (PyTorch) or "
                   "'orthogonal' (zero biases; the RLx2 reference's SAC)", ("default", "orthogonal"))
    lr: Optional[float] = _f(None, "Adam learning rate", check=POSITIVE_REAL)
    max_grad_norm: Optional[float] = _f(None, "clip each network's gradient to this global L2 norm before the "
                                        "optimizer step (SB3's DQN uses 10; default: no clipping)",
                                        check=POSITIVE_REAL)
    batch_size: Optional[int] = _f(None, "minibatch size (at most --buffer-size)", check=POSITIVE)
    gamma: float = _f(0.99, "discount factor", check=UNIT)
    tau: Optional[float] = _f(None, "soft target update rate (1.0 = hard copy)", check=UNIT_OPEN_BOTTOM)
    buffer_size: Optional[int] = _f(None, "replay capacity (maximum)", check=POSITIVE)
    learning_starts: Optional[int] = _f(None, "random warm-up env steps before updates; must be below --steps",
                                        check=NON_NEGATIVE,
                                        default_doc="the algorithm's (td3 25000, sac 25000, dqn 1000), lowered to "
                                                    "--steps // 10 for shorter runs so that a default run trains")
    train_freq: Optional[int] = _f(None, "env steps between update rounds", check=POSITIVE)
    gradient_steps: Optional[int] = _f(None, "gradient updates per round", check=POSITIVE)
    # --- TD3 -----------------------------------------------------------------------------
    exploration_noise: float = _f(0.1, "TD3 Gaussian exploration noise (x max action)", check=NON_NEGATIVE)
    policy_noise: float = _f(0.2, "TD3 target policy smoothing noise (x max action)", check=NON_NEGATIVE)
    noise_clip: float = _f(0.5, "TD3 target noise clip (x max action)", check=NON_NEGATIVE)
    policy_delay: Optional[int] = _f(None, "TD3/SAC: critic updates per actor (and TD3 target) update", check=POSITIVE)
    # --- SAC -----------------------------------------------------------------------------
    alpha: float = _f(0.2, "SAC initial entropy coefficient", check=POSITIVE_REAL)
    autotune: bool = _f(True, "SAC automatic entropy tuning (target entropy = -|A|)")
    sac_collect: str = _f("sample", "SAC action executed while collecting data after warm-up: 'sample' "
                          "(standard SAC) or the deterministic 'mean' (the RLx2 reference code)", ("sample", "mean"))
    # --- DQN -----------------------------------------------------------------------------
    eps_start: float = _f(1.0, "DQN initial epsilon", check=UNIT)
    eps_end: float = _f(0.05, "DQN final epsilon (at most --eps-start)", check=UNIT)
    eps_fraction: float = _f(0.5, "DQN fraction of the run over which epsilon decays", check=UNIT_OPEN_BOTTOM)
    target_update_every: Optional[int] = _f(None, "DQN env steps between target updates", check=POSITIVE)
    double_q: bool = _f(True, "DQN: Double-DQN target")


class _ConfigMethods:
    """A run's whole configuration: the fields of every option block (:data:`CONFIG_BLOCKS`),
    flat, so that a flag, a YAML key and a ``config.yaml`` key are the same name."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        """A config of these keys, values as given (:func:`resolve` checks and completes it)."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: must be a mapping of config keys to values, got {type(data).__name__}")
        unknown = sorted(str(k) for k in set(data) - set(FIELDS))
        if unknown:
            raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; see `sparserl train --help`")
        return cls(**data)


    def method_block(self):
        """The chosen method's typed options (``Method.Options``) with this config's values."""
        return method_class(self.method).options_of(self)


#: the option blocks a config is composed of: run, algorithm, then every method block
CONFIG_BLOCKS: tuple[type, ...] = (RunOptions, AlgoOptions, *METHOD_BLOCKS)


def _compose() -> type:
    """``TrainConfig``: one flat dataclass of every block's fields, so the CLI offers one flag per
    option, YAML files and ``config.yaml`` keep flat keys, and old config files still load; the
    run reads a method's options through that method's own typed view (:meth:`method_block`)."""
    specs = [(f.name, field_types(block)[f.name], field(default=f.default, metadata=f.metadata))
             for block in CONFIG_BLOCKS for f in fields(block)]  # each option is declared once (tested)
    cls = dataclasses.make_dataclass("TrainConfig", specs, bases=(_ConfigMethods,))
    cls.__module__, cls.__doc__ = __name__, _ConfigMethods.__doc__
    return cls


TrainConfig = _compose()
FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in fields(TrainConfig)}
FIELD_TYPES: dict[str, Any] = {name: hint for block in CONFIG_BLOCKS for name, hint in field_types(block).items()}


def check_option(name: str, value: Any) -> Any:
    """One option's value in its declared type, within its declared choices/range; else a
    one-line :class:`UserError` (see :mod:`sparserl.validation`)."""
    meta = FIELDS[name].metadata
    return coerce(name, FIELD_TYPES[name], value, meta.get("choices"), meta.get("check"))


def check_options(options: dict, source: str | None = None) -> dict:
    """The validation layer every source goes through (CLI flags, YAML files, presets, the
    Python API, a stored run's config): each known option type-coerced (YAML's ``3e-4`` is a
    float, ``1e3`` for an integer option is 1000, ``'false'`` a bool) and range-checked.
    Returns a new dict; unknown keys are left to :meth:`TrainConfig.from_dict`. ``source``
    (a file name, ``TD3()``) prefixes the error so the user knows where the value came from."""
    try:
        return {key: check_option(key, value) if key in FIELDS else value for key, value in options.items()}
    except UserError as exc:
        if source is None:
            raise
        raise UserError(f"{source}: {exc}") from None


ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    # SPEC: MLP 2x256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, 25k random warm-up.
    "td3": dict(hidden=[256, 256], lr=3e-4, batch_size=256, tau=0.005, buffer_size=1_000_000,
                learning_starts=25_000, train_freq=1, gradient_steps=1, policy_delay=2),
    "sac": dict(hidden=[256, 256], lr=3e-4, batch_size=256, tau=0.005, buffer_size=1_000_000,
                learning_starts=25_000, train_freq=1, gradient_steps=1, policy_delay=1),
    # DQN: CleanRL / SB3-style discrete-control defaults with the SPEC's 2x256 MLP.
    "dqn": dict(hidden=[256, 256], lr=2.5e-4, batch_size=128, tau=1.0, buffer_size=100_000,
                learning_starts=1_000, train_freq=4, gradient_steps=1, target_update_every=500,
                policy_delay=1),
}


# Default warm-up: the algorithm's (25k TD3/SAC, 1k DQN) or steps / 10, whichever is smaller.
WARMUP_DIVISOR = 10

# Default minimum capacity of the dynamic buffer, lowered to the maximum when that is smaller.
BUFFER_MIN_DEFAULT = 100_000


def resolve(cfg: TrainConfig, run_length_known: bool = True) -> TrainConfig:
    """The one place a config is completed: the user's values (type-coerced and range-checked
    by :func:`check_options`), then the method's defaults (``Method.DEFAULTS``), the
    algorithm's defaults and generic fallbacks for options still unset, then derived values
    and the rules between options (:func:`check_combination`, ``Method.validate``). Returns a
    new config; the CLI, YAML files, presets, ``--resume`` and the Python API all go through here.

    ``run_length_known=False`` (the Python API's constructor, before ``learn(total_timesteps)``
    fixes ``steps``) skips the rules that compare options with ``--steps``."""
    data = check_options(cfg.to_dict())
    method = method_class(data["method"])
    if data["learning_starts"] is None:
        # the warm-up default scales down for short runs, so a default run always trains
        data["learning_starts"] = min(ALGO_DEFAULTS[data["algo"]]["learning_starts"], data["steps"] // WARMUP_DIVISOR)
    for layer in (method.defaults(data), ALGO_DEFAULTS[data["algo"]]):
        for key, value in layer.items():
            if data.get(key) is None:
                data[key] = copy.deepcopy(value)
    extra = [name for name in method.option_names() if name not in FIELDS]
    if extra or data.get("method_options"):  # the options of a method added with register_method()
        data["method_options"] = method.resolve_options(dict(data.get("method_options") or {}),
                                                        "--method-options", extra)
    out = TrainConfig(**data)
    if out.schedule_steps is None:
        out.schedule_steps = out.steps
    if out.buffer_min is None:
        out.buffer_min = min(BUFFER_MIN_DEFAULT, out.buffer_size if out.buffer_max is None else out.buffer_max)
    method.derived(out)
    check_options(out.to_dict())  # defaults and derived values obey the same declarations
    check_combination(out, run_length_known)
    method.validate(out)
    return out


def check_combination(cfg: TrainConfig, run_length_known: bool = True) -> None:
    """Rules between options that hold for every method (method-specific ones live in
    ``Method.validate``); each violation is one line naming both options and their values."""
    if cfg.eps_end > cfg.eps_start:
        raise UserError(f"--eps-end {cfg.eps_end} must not exceed --eps-start {cfg.eps_start} "
                        f"(epsilon decays from --eps-start to --eps-end)")
    if not cfg.prune_start < cfg.prune_end:
        raise UserError(f"--prune-start {cfg.prune_start} must be below --prune-end {cfg.prune_end}")
    if cfg.buffer_max is not None and cfg.buffer_max > cfg.buffer_size:
        raise UserError(f"--buffer-max {cfg.buffer_max} must not exceed --buffer-size {cfg.buffer_size} "
                        f"(the replay capacity)")
    top, top_name = ((cfg.buffer_size, "--buffer-size") if cfg.buffer_max is None
                     else (cfg.buffer_max, "--buffer-max"))
    if cfg.buffer_min > top:
        raise UserError(f"--buffer-min {cfg.buffer_min} must not exceed {top_name} {top}")
    if cfg.batch_size > cfg.buffer_size:
        raise UserError(f"--batch-size {cfg.batch_size} must not exceed --buffer-size {cfg.buffer_size}")
    if not run_length_known:
        return
    if cfg.learning_starts >= cfg.steps:
        raise UserError(f"--learning-starts {cfg.learning_starts} must be below --steps {cfg.steps}: the first "
                        f"--learning-starts steps are random warm-up, so no gradient update would ever happen "
                        f"(give a larger --steps or a smaller --learning-starts)")
    if update_rounds(cfg, cfg.steps) == 0:
        raise UserError(f"--train-freq {cfg.train_freq} leaves no gradient update between --learning-starts "
                        f"{cfg.learning_starts} and --steps {cfg.steps} (updates happen every --train-freq env "
                        f"steps after the warm-up)")
    if cfg.nstep > cfg.steps:
        raise UserError(f"--nstep {cfg.nstep} must not exceed --steps {cfg.steps}")


def config_from_options(options: dict, source: str = "options", run_length_known: bool = True,
                        notes: Optional[list] = None) -> TrainConfig:
    """A resolved config from the options a user gave (CLI flags merged over a YAML file, or
    the Python API's keyword arguments). Precedence: built-in defaults < ``preset`` < the
    given options; then :func:`resolve` fills method and algorithm defaults.

    Without a ``preset``, :data:`DEFAULT_PRESET` applies where it has an entry for the algo/env
    and the run resolved with it is valid (a short test run whose length the preset's warm-up
    or update period does not fit keeps the built-in defaults); ``preset: none`` opts out. What
    was chosen, and why, is appended to ``notes`` (one line) for the caller to print."""
    TrainConfig.from_dict(options, source=source)  # unknown keys -> one line
    options = check_options(options, source)
    if options.get("preset") is None:
        algo = options.get("algo", FIELDS["algo"].default)
        env = options.get("env", FIELDS["env"].default)
        if has_preset_entry(DEFAULT_PRESET, algo, env):
            try:
                cfg = _config_with_preset({**options, "preset": DEFAULT_PRESET}, source, run_length_known)
            except UserError as exc:
                reason = str(exc).split(": ")[0]
                _note(notes, f"--preset {DEFAULT_PRESET} has settings for {algo} on {env} but does not fit this run "
                             f"({reason}): the built-in defaults apply (--preset {DEFAULT_PRESET} to insist, "
                             f"--preset {NO_PRESET} to silence this)")
            else:
                _note(notes, f"using --preset {DEFAULT_PRESET} by default: it has settings for {algo} on {env} "
                             f"(sparserl/presets/{DEFAULT_PRESET}.yaml); --preset {NO_PRESET} for the built-in defaults")
                return cfg
    return _config_with_preset(options, source, run_length_known)


def _note(notes: Optional[list], text: str) -> None:
    if notes is not None:
        notes.append(text)


def _config_with_preset(options: dict, source: str, run_length_known: bool) -> TrainConfig:
    data: dict = {}
    preset = options.get("preset")
    from_preset: dict = {}
    if preset and preset != NO_PRESET:
        settings = load_preset(preset, options.get("algo", FIELDS["algo"].default),
                               options.get("env", FIELDS["env"].default))
        TrainConfig.from_dict(settings, source=f"--preset {preset}")
        data.update(check_options(settings, f"--preset {preset}"))
        from_preset = {k: v for k, v in data.items() if k not in options}
    data.update(options)
    try:
        return resolve(TrainConfig.from_dict(data, source=source), run_length_known)
    except UserError as exc:
        if not from_preset:
            raise
        raise UserError(name_preset_values(str(exc), preset, from_preset)) from None


def name_preset_values(message: str, preset: str, from_preset: dict) -> str:
    """A rule's error about a value the user never typed says where it came from:
    ``--learning-starts 25000 (from --preset paper) must be below --steps 5000``."""
    import re
    for key, value in from_preset.items():
        for text in dict.fromkeys((str(value), repr(value))):
            pattern = re.compile(re.escape(f"{flag(key)} {text}") + r"(?![\w.])(?! \(from)")
            message, count = pattern.subn(lambda m: f"{m.group(0)} (from --preset {preset})", message, count=1)
            if count:
                break
    return message


def has_preset_entry(name: str, algo: str, env: str) -> bool:
    """Whether ``presets/<name>.yaml`` has settings for ``algo`` on ``env``'s family."""
    path = PRESET_DIR / f"{name}.yaml"
    return path.exists() and _preset_key(algo, env) in (load_yaml(path).get("envs") or {})


def _preset_key(algo: str, env: str) -> str:
    return f"{algo}/{str(env).split('-v')[0]}"


def load_preset(name: str, algo: str, env: str) -> dict:
    """Per-env settings from ``presets/<name>.yaml``: ``common``, then ``algos.<algo>``, then
    ``envs.<algo>/<env-family>`` (later blocks win)."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        allowed = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise UserError(f"unknown --preset {name!r}; allowed: {', '.join(allowed)}")
    table = load_yaml(path)
    key = _preset_key(algo, env)
    if key not in table.get("envs", {}):
        known = ", ".join(sorted(table.get("envs", {})))
        raise UserError(f"--preset {name} has no settings for {algo} on {env}; known: {known}")
    return {**table.get("common", {}), **(table.get("algos") or {}).get(algo, {}), **table["envs"][key]}


#: bounds on what a config or suite file may make the reader do (issue 27.12): its size, its
#: nesting depth and the number of values its aliases expand to (a 566-byte "billion laughs"
#: file expands to 10^9 values that the config checks and the saved config.yaml would walk)
MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 64
MAX_YAML_EXPANDED = 100_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice (PyYAML silently keeps the last one,
    so ``lr: 0.1`` further down a file would quietly override an earlier ``lr``), nesting
    deeper than :data:`MAX_YAML_DEPTH` (the composer recurses: deeper input was a RecursionError)
    and aliases that expand to more than :data:`MAX_YAML_EXPANDED` values, or into themselves."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _expanded_size(node, {}, self)
        return node


def _expanded_size(node, sizes: dict, loader) -> int:
    """How many values ``node`` stands for with every alias expanded (memoised per node, so
    this is linear in the file however much the aliases multiply)."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a value that contains it "
                                              "(a recursive structure)", node.start_mark)
        return sizes[key]
    sizes[key] = None
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes, loader) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, sizes, loader) + _expanded_size(v, sizes, loader) for k, v in node.value)
    if total > MAX_YAML_EXPANDED:
        raise yaml.composer.ComposerError(None, None, f"more than {MAX_YAML_EXPANDED:,} values (aliases expanded)",
                                          node.start_mark)
    sizes[key] = total
    return total


def read_yaml_text(path: str | Path) -> str:
    """A config/suite file's text, at most :data:`MAX_YAML_BYTES` read (``--config /dev/zero``
    read until MemoryError); raises ``OSError`` / ``UnicodeDecodeError`` / ``UserError``."""
    p = Path(path)
    with p.open("rb") as fh:
        data = fh.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise UserError(f"cannot read config {p}: larger than {MAX_YAML_BYTES // 1024} KiB (allowed: up to "
                        f"{MAX_YAML_BYTES // 1024} KiB of YAML)")
    return data.decode("utf-8")


def safe_yaml(text: str):
    """``yaml.safe_load`` with the bounds of :class:`_UniqueKeyLoader` (for ``--env-kwargs``)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping of config keys; one-line errors for unreadable files."""
    p = Path(path)
    try:
        data = yaml.load(read_yaml_text(p), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except FileNotFoundError:
        raise UserError(f"config file not found: {p}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read config {p}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                        f"offset {exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or type(exc).__name__).split())
        raise UserError(f"cannot read config {p}: {problem}{where}") from None
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read config {p}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {p} must be a YAML mapping of keys to values, got {type(data).__name__}")
    return data


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
