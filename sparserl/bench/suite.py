"""Benchmark suites: the YAML format, its validation, and its expansion into cells.

A suite is a YAML mapping::

    name: smoke                 # used in reports and docs/RESULTS.md section titles
    description: ...            # optional, free text
    steps: 600                  # default env steps per cell
    seeds: [0, 1]               # default seeds (a list of ints, or an int n meaning 0..n-1)
    eval_every: 300             # default evaluation period (env steps)
    eval_episodes: 2            # default episodes per evaluation
    timeout: 3600               # optional: seconds before a cell is killed and counted as failed
    vectorise: 4                # optional: train up to 4 seeds of one configuration in one process
    overrides: {}               # optional: extra train options for every cell (not in dir names)
    score_floor: {Pendulum-v1: -1600}   # optional, per env: the "0 %" score of % of dense
    cells:                      # groups; each expands over its lists (cartesian product)
      - algo: [td3]             # a string or a list of strings
        env: [Pendulum-v1]
        method: [dense, static, rigl]
        overrides: {learning_starts: 200}   # fixed extra options; NOT part of the dir name
        sweep: {sparsity: [0.5, 0.9]}       # varied options (cartesian); part of the dir name
        tag: ""                 # optional explicit dir-name tag (replaces the sweep-derived one)
        steps / seeds / eval_every / eval_episodes / timeout / vectorise: per-group overrides of the defaults

Each cell runs in ``OUT/<algo>/<env>/<method>[-<tag>]/seed<k>/``.  Every part is one directory
level: names may not contain ``/`` (nor ``..`` as a part, NUL, or a leading ``.``/``-``), except
a Gymnasium namespace in an env id (``ALE/Pong-v5``), whose ``/`` becomes ``+`` in the directory
name (``ALE+Pong-v5``; see :func:`env_dir_name`).  The resolved cell directory must lie inside
``OUT`` (a symlink pointing elsewhere is refused), so a suite can neither write nor delete outside
``OUT``.  The tag is the explicit
``tag`` if given, else ``key=value`` pairs of the group's ``sweep`` joined by ``,``.  Options in
``overrides`` are deliberately kept out of the directory name: they are settings, not
experimental factors, so a suite-wide ``learning_starts`` does not rename every method column.
Two groups that produce the same cell directory with different settings are an error.

``vectorise: K`` (default 1): the cells of one configuration that differ only in their seed run
K at a time as one ``sparserl train --seeds`` process (:mod:`sparserl.vectorised`): each seed
still gets its own cell directory, so reports read them unchanged; a timeout then applies to
the whole group. Only the local backend groups cells (td3 and dqn).

Override values become command-line options (see :func:`option_args`):
``learning_starts: 200`` -> ``--learning-starts 200``; ``tensorboard: false`` ->
``--no-tensorboard``; ``hidden: [64, 64]`` -> ``--hidden 64 64`` (write ``[[64, 64], [256, 256]]``
inside ``sweep`` to sweep over list values; in tags lists are comma-joined).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from sparserl.errors import UserError

SUITE_KEYS = {
    "name", "description", "steps", "seeds", "eval_every", "eval_episodes", "timeout",
    "overrides", "score_floor", "cells", "vectorise",
}
GROUP_KEYS = {
    "algo", "env", "method", "overrides", "sweep", "tag", "steps", "seeds", "eval_every",
    "eval_episodes", "timeout", "vectorise",
}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]*")  # one directory level: no '/'
_ENV_PART = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"  # no '+': it stands for '/' in directory names
_ENV_RE = re.compile(rf"(?:{_ENV_PART}/)?{_ENV_PART}")  # optional Gymnasium namespace
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.=,+-]")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: everything the command builder needs."""

    algo: str
    env: str
    method: str
    seed: int
    steps: int
    eval_every: int
    eval_episodes: int
    out_dir: Path
    tag: str = ""
    overrides: tuple[tuple[str, Any], ...] = ()
    timeout: float | None = None
    #: seeds of this configuration trained together in one process (``vectorise`` of the suite)
    vectorise: int = 1
    #: ``sparserl bench --trust-env-module`` was given: the child may import a module:Class env
    trust_env_module: bool = False

    @property
    def label(self) -> str:
        """The method column name: ``method`` or ``method-tag``."""
        return f"{self.method}-{self.tag}" if self.tag else self.method

    @property
    def key(self) -> str:
        """``algo/env/label/seedK`` -- the cell directory relative to the run directory."""
        return f"{self.algo}/{env_dir_name(self.env)}/{self.label}/seed{self.seed}"


def env_dir_name(env: str) -> str:
    """An env id as one directory level: a Gymnasium namespace's ``/`` becomes ``+``
    (``ALE/Pong-v5`` -> ``ALE+Pong-v5``), which no valid env id of a suite contains."""
    return env.replace("/", "+")


def env_from_dir_name(name: str) -> str:
    """Inverse of :func:`env_dir_name` (for reports, which read envs from directory names)."""
    return name.replace("+", "/")


def is_safe_name(name: Any) -> bool:
    """A name usable as one directory level (suite, algo and method names)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


@dataclass
class Suite:
    name: str
    path: Path | None
    raw: dict
    cells: list[Cell] = field(default_factory=list)
    score_floor: dict[str, float] = field(default_factory=dict)


def format_option_value(value: Any) -> str:
    """A scalar (or a list, comma-joined) as it appears in a directory tag."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_option_value(v) for v in value)
    return str(value)


def option_args(key: str, value: Any) -> list[str]:
    """One override as command-line arguments, matching ``sparserl train``'s parser:
    ``batch_size: 32`` -> ``--batch-size 32``; ``tensorboard: false`` -> ``--no-tensorboard``
    (booleans are ``--flag/--no-flag``); ``hidden: [64, 64]`` -> ``--hidden 64 64``;
    ``None`` -> nothing."""
    flag = "--" + key.replace("_", "-")
    if value is None:
        return []
    if isinstance(value, bool):
        return [flag] if value else ["--no-" + key.replace("_", "-")]
    if isinstance(value, (list, tuple)):
        return [flag, *(format_option_value(v) for v in value)]
    return [flag, str(value)]


def train_args(cell: Cell) -> list[str]:
    """The arguments after ``sparserl train`` for one cell (see :func:`default_command`).

    ``--no-progress`` keeps per-step progress bars out of the cell's stderr.log (whose tail is
    the error report); an override ``progress: true`` turns them back on.
    """
    args = [
        "--algo", cell.algo, "--method", cell.method, "--env", cell.env,
        "--seed", str(cell.seed), "--steps", str(cell.steps), "--out", str(cell.out_dir),
        "--eval-every", str(cell.eval_every), "--eval-episodes", str(cell.eval_episodes),
    ]
    if cell.trust_env_module:
        args.append("--trust-env-module")
    opts = dict(cell.overrides)
    if "progress" not in opts:
        args.append("--no-progress")
    for key, value in cell.overrides:
        args += option_args(key, value)
    return args


def default_command(cell: Cell) -> list[str]:
    """The command line of one cell: ``python -m sparserl train ...``.

    This is the single place that maps a cell to a process; pass another callable with the
    same signature as ``command_builder`` to :func:`sparserl.bench.run_suite` to change it.
    """
    return [sys.executable, "-m", "sparserl", "train", *train_args(cell)]


def default_resume_command(cell: Cell) -> list[str]:
    """Continue an interrupted cell from its ``resume.pt``: ``sparserl train --resume DIR``."""
    return [sys.executable, "-m", "sparserl", "train", "--resume", str(cell.out_dir),
            "--steps", str(cell.steps), *(["--trust-env-module"] if cell.trust_env_module else [])]


def group_command(cells: Sequence[Cell], resume: bool = False) -> list[str]:
    """One ``sparserl train --seeds`` process for cells that differ only in their seed: the first
    cell's command with ``--seeds`` and the configuration's directory (the seeds' cell
    directories ``seedK`` lie in it) in place of ``--seed`` and ``--out``; ``resume``: continue
    those seeds from their ``resume.pt`` files."""
    seeds = ",".join(str(c.seed) for c in cells)
    parent = str(cells[0].out_dir.parent)
    if resume:
        return [sys.executable, "-m", "sparserl", "train", "--resume", parent, "--seeds", seeds,
                "--steps", str(cells[0].steps), *(["--trust-env-module"] if cells[0].trust_env_module else [])]
    args = train_args(cells[0])
    for flag, value in (("--seed", None), ("--out", parent)):
        i = args.index(flag)
        args[i:i + 2] = ["--seeds", seeds] if value is None else [flag, value]
    return [sys.executable, "-m", "sparserl", "train", *args]


def prefix_command_builder(prefix: Sequence[str]) -> Callable[[Cell], list[str]]:
    """A command builder that runs ``PREFIX <train args>`` instead of ``python -m sparserl train``."""
    prefix = list(prefix)

    def build(cell: Cell) -> list[str]:
        return [*prefix, *train_args(cell)]

    return build


# --------------------------------------------------------------------------- loading

def _as_str_list(value: Any, what: str, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UserError(f"{where}: '{what}' is an empty list")
    pattern, allowed = (_ENV_RE, "[namespace/]name of [A-Za-z0-9_.:-]") if what == "env" else (
        _NAME_RE, "[A-Za-z0-9_.:+-] without '/'")
    out = []
    for item in items:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise UserError(f"{where}: '{what}' must be a name or a list of names ({allowed}, starting with "
                            f"a letter or digit), got {item!r}")
        out.append(item)
    return out


#: the most cells one suite may define (a grid beyond this is a typo, not an experiment)
MAX_CELLS = 10_000


def _as_seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, bool):
        raise UserError(f"{where}: 'seeds' must be a list of integers or a count, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise UserError(f"{where}: 'seeds' count must be >= 1, got {value}")
        if value > MAX_CELLS:  # range(10**7) as cells hung even --dry-run
            raise UserError(f"{where}: 'seeds' count {value} is above {MAX_CELLS:,}; allowed: 1..{MAX_CELLS:,}")
        return list(range(value))
    if isinstance(value, list) and value and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value
    ):
        if len(set(value)) != len(value):
            raise UserError(f"{where}: 'seeds' has duplicates: {value}")
        return list(value)
    raise UserError(f"{where}: 'seeds' must be a list of non-negative integers or a count, got {value!r}")


def _as_pos_int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: '{what}' must be a positive integer, got {value!r}")
    return value


#: options of ``sparserl train`` a suite must not set: where a cell writes and whether it may
#: replace or resume a run are the bench's decisions (a suite could otherwise write outside
#: ``--out``), and importing an env module is the user's (``sparserl bench --trust-env-module``)
RUN_CONTROL_OPTIONS = ("out", "overwrite", "resume", "config", "trust_env_module")
#: set by the cell itself (group keys); an override would silently contradict its directory
CELL_OPTIONS = ("algo", "env", "method", "seed", "steps", "eval_every", "eval_episodes")


def _config_fields() -> set[str]:
    from sparserl.config import TrainConfig  # noqa: PLC0415 (imports torch: only when a suite has options)

    return {f.name for f in dataclasses.fields(TrainConfig)}


def _as_options(value: Any, what: str, where: str) -> dict:
    """An ``overrides`` / ``sweep`` mapping: only training-config fields (each becomes a
    ``sparserl train`` option), never run-control options or the cell's own keys."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: '{what}' must be a mapping of option: value")
    fields = None
    for key, val in value.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise UserError(f"{where}: bad option name {key!r} in '{what}'")
        name = key.replace("-", "_")
        if name in RUN_CONTROL_OPTIONS:
            raise UserError(f"{where}: '{what}' cannot set {key!r} (a run-control option: the bench decides "
                            f"where cells write and whether they replace or resume runs); allowed: "
                            f"training config fields")
        if name in CELL_OPTIONS:
            raise UserError(f"{where}: '{what}' cannot set {key!r}; give it as the group's own {name!r} key")
        fields = _config_fields() if fields is None else fields
        if name not in fields:
            raise UserError(f"{where}: unknown option {key!r} in '{what}'; allowed: training config fields "
                            f"(sparserl train options, e.g. lr, batch_size, actor_sparsity)")
        if isinstance(val, dict):
            raise UserError(f"{where}: option {key!r} in '{what}' cannot be a mapping")
    return dict(value)


def _tag_from_sweep(point: dict) -> str:
    parts = [f"{k}={format_option_value(v)}" for k, v in sorted(point.items())]
    return _TAG_BAD.sub("-", ",".join(parts))


def parse_suite(raw: Any, out_dir: str | Path, source: str = "<suite>",
                path: Path | None = None, trust_env_module: bool = False) -> Suite:
    """Validate a loaded suite mapping and expand it into cells under ``out_dir``.

    A suite is data: a ``module:Class`` env id (importing the module runs its code) is refused
    unless the user gave ``sparserl bench --trust-env-module`` (``trust_env_module``); only
    then do the cells' commands carry the flag on to ``sparserl train``."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a suite must be a YAML mapping with a 'cells' list")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; "
                        f"allowed: {', '.join(sorted(SUITE_KEYS))}")
    name = raw.get("name") or (path.stem if path else "suite")
    if not is_safe_name(name):
        raise UserError(f"{source}: 'name' must be a simple name ([A-Za-z0-9_.:+-] without '/'), got {name!r}")
    defaults = {
        "steps": _as_pos_int(raw.get("steps", 100_000), "steps", source),
        "seeds": _as_seeds(raw.get("seeds", [0]), source),
        "eval_every": _as_pos_int(raw.get("eval_every", 5_000), "eval_every", source),
        "eval_episodes": _as_pos_int(raw.get("eval_episodes", 10), "eval_episodes", source),
        "timeout": raw.get("timeout"),
        "vectorise": _as_pos_int(raw.get("vectorise", 1), "vectorise", source),
    }
    global_overrides = _as_options(raw.get("overrides"), "overrides", source)
    score_floor = raw.get("score_floor") or {}
    if not isinstance(score_floor, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in score_floor.values()
    ):
        raise UserError(f"{source}: 'score_floor' must map env names to numbers")
    groups = raw.get("cells")
    if not isinstance(groups, list) or not groups:
        raise UserError(f"{source}: 'cells' must be a non-empty list of groups")

    out_dir = Path(out_dir)
    root = out_dir.resolve()
    cells: dict[str, Cell] = {}
    for gi, group in enumerate(groups):
        where = f"{source}: cells[{gi}]"
        if not isinstance(group, dict):
            raise UserError(f"{where} must be a mapping with algo, env and method")
        unknown = sorted(set(group) - GROUP_KEYS)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                            f"allowed: {', '.join(sorted(GROUP_KEYS))}")
        for req in ("algo", "env", "method"):
            if req not in group:
                raise UserError(f"{where}: missing '{req}'")
        algos = _as_str_list(group["algo"], "algo", where)
        envs = _as_str_list(group["env"], "env", where)
        for env in envs:
            if ":" in env and not trust_env_module:
                raise UserError(f"{where}: env {env!r} names module {env.partition(':')[0]!r} (importing it runs "
                                f"its code); allowed: Gymnasium env ids, or pass --trust-env-module to "
                                f"sparserl bench")
        methods = _as_str_list(group["method"], "method", where)
        seeds = _as_seeds(group["seeds"], where) if "seeds" in group else defaults["seeds"]
        steps = _as_pos_int(group.get("steps", defaults["steps"]), "steps", where)
        eval_every = _as_pos_int(group.get("eval_every", defaults["eval_every"]), "eval_every", where)
        eval_episodes = _as_pos_int(group.get("eval_episodes", defaults["eval_episodes"]),
                                    "eval_episodes", where)
        vectorise = _as_pos_int(group.get("vectorise", defaults["vectorise"]), "vectorise", where)
        timeout = group.get("timeout", defaults["timeout"])
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout <= 0):  # .nan <= 0 is False
            raise UserError(f"{where}: 'timeout' must be a positive finite number of seconds, got {timeout!r}")
        overrides = {**global_overrides, **_as_options(group.get("overrides"), "overrides", where)}
        sweep = _as_options(group.get("sweep"), "sweep", where)
        sweep_axes = {k: (v if isinstance(v, list) else [v]) for k, v in sweep.items()}
        if any(not axis for axis in sweep_axes.values()):
            raise UserError(f"{where}: a 'sweep' option has an empty list")
        tag_explicit = group.get("tag")
        if tag_explicit is not None and (not isinstance(tag_explicit, str)
                                         or _TAG_BAD.search(tag_explicit)):
            raise UserError(f"{where}: 'tag' must be a string of [A-Za-z0-9_.=,+-]")
        keys = list(sweep_axes)
        n_cells = len(cells) + len(algos) * len(envs) * len(methods) * len(seeds) * math.prod(map(len, sweep_axes.values()))
        if n_cells > MAX_CELLS:  # counted before a single cell is built
            raise UserError(f"{where}: the suite expands to {n_cells:,} cells; allowed: at most {MAX_CELLS:,} "
                            f"(fewer seeds, envs, methods or sweep values)")
        points = [dict(zip(keys, combo)) for combo in itertools.product(*sweep_axes.values())]
        for algo, env, method, point, seed in itertools.product(algos, envs, methods, points, seeds):
            opts = {**overrides, **point}
            if tag_explicit is not None:
                tag = tag_explicit if len(points) == 1 else "_".join(
                    t for t in (tag_explicit, _tag_from_sweep(point)) if t)
            else:
                tag = _tag_from_sweep(point)
            label = f"{method}-{tag}" if tag else method
            cell = Cell(
                algo=algo, env=env, method=method, seed=seed, steps=steps,
                eval_every=eval_every, eval_episodes=eval_episodes,
                out_dir=out_dir, tag=tag, overrides=tuple(sorted(opts.items())), timeout=timeout,
                vectorise=vectorise, trust_env_module=trust_env_module,
            )
            cell = dataclasses.replace(cell, out_dir=out_dir / cell.key)
            if not cell.out_dir.resolve().is_relative_to(root):  # e.g. a symlink inside OUT
                raise UserError(f"{where}: cell directory {cell.out_dir} resolves to {cell.out_dir.resolve()}, "
                                f"outside --out {root}")
            previous = cells.get(cell.key)
            if previous is not None and previous != cell:
                raise UserError(f"{where}: cell {cell.key} is defined twice with different "
                                "settings; give one group a 'tag' or move the option to 'sweep'")
            cells[cell.key] = cell
    # Seed-major order: a partial (or killed) grid covers every configuration early.
    ordered = sorted(cells.values(), key=lambda c: c.seed)
    return Suite(name=name, path=path, raw=raw, cells=ordered,
                 score_floor={str(k): float(v) for k, v in score_floor.items()})


def load_suite(suite_path: str | Path, out_dir: str | Path, trust_env_module: bool = False) -> Suite:
    """Read and validate a suite YAML file (raises ``UserError`` with a one-line message)."""
    path = Path(suite_path)
    if not path.is_file():
        raise UserError(f"suite file not found: {path}")
    # a key given twice would silently keep the last value (PyYAML's safe_load): refused
    from sparserl.config import _UniqueKeyLoader, read_yaml_text  # noqa: PLC0415 (the train config's loader)
    try:
        raw = yaml.load(read_yaml_text(path), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"{path}: invalid YAML{pos}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read suite file {path}: {exc}") from None
    return parse_suite(raw, out_dir, source=str(path), path=path, trust_env_module=trust_env_module)
