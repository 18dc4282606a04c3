"""``sparserl`` command line: train | eval | flops | export | bench | report.

Every ``TrainConfig`` field is a ``train`` flag (``batch_size`` -> ``--batch-size``), with
its one-line description as ``--help``.  Precedence, lowest first: built-in defaults,
``--preset``, ``--config FILE.yaml``, flags given on the command line, then the method's
own defaults for anything still unset (e.g. ``--method rlx2`` turns on n = 3 and the
dynamic buffer unless you say otherwise).  Bad input exits with status 2 and one line
on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import typing
from pathlib import Path

from .config import ALGO_DEFAULTS, FIELD_TYPES, FIELDS, TrainConfig, check_option, check_options, config_from_options, load_yaml, resolve
from .errors import OneLineArgumentParser as _Parser
from .errors import UserError
from .model_file import load_agent  # noqa: F401 (sparserl.cli.load_agent, as before)
from .validation import coerce, kind_of
from .validation import flag as flag_of


def _block_sections() -> tuple:
    """The methods' sections of ``train --help``: one per ``SECTION`` of the option blocks
    (:mod:`sparserl.methods.options`), described by its first block that has a description."""
    from .methods.options import BLOCKS
    out: dict = {}
    for block in BLOCKS:
        if block.SECTION not in out:
            out[block.SECTION] = (block.SECTION, block.DESCRIPTION, dataclasses.fields(block)[0].name)
    return tuple(out.values())


#: ``train --help`` sections: (title, description, first field of the section). A field belongs to
#: the last section whose first field precedes it in ``TrainConfig`` (whose fields are declared
#: in this order), so a new field lands in its neighbours' section without being listed here.
HELP_SECTIONS = (
    ("run", "what to train, where, and on which device", "algo"),
    ("evaluation, logging and checkpoints", None, "eval_every"),
    ("algorithm", "hyper-parameters of DQN, TD3 and SAC (unset: the algorithm's default)", "hidden"),
    *_block_sections(),
)
#: fields shown in the run section although declared among the logging options
_RUN_FIELDS = ("torch_threads", "device", "schedule_steps", "method_options")

TRAIN_DESCRIPTION = """\
Train an agent. Every option below is also a key of a --config YAML file (--batch-size is
batch_size). Precedence, lowest first: built-in defaults, --preset, --config FILE.yaml, flags given
on the command line, then the method's own defaults for anything still unset (e.g. --method rlx2
turns on n = 3 and the dynamic buffer unless you say otherwise). Bad input exits with status 2
and one line on stderr."""


def _section_of(name: str, order: list[str]) -> str:
    if name in _RUN_FIELDS:
        return HELP_SECTIONS[0][0]
    index = order.index(name)
    title = HELP_SECTIONS[0][0]
    for section, _, first in HELP_SECTIONS:
        if order.index(first) <= index:
            title = section
    return title


def _plain(text: str) -> str:
    """Help text without reStructuredText markup (``--x`` and `x` read as --x and x)."""
    return text.replace("``", "").replace("`", "")


def _add_config_flags(parser: argparse.ArgumentParser, groups: dict | None = None) -> None:
    """One flag per ``TrainConfig`` field, in the argument group of its section (``groups``:
    title -> group; the parser itself without). Values are read by the same
    :func:`~sparserl.config.check_option` as YAML files and the Python API (so ``--lr 3e-4`` and
    ``--learning-starts 1e3`` mean what they mean in a YAML file); ranges and the rules between
    options are checked when the config is resolved."""
    order = [f.name for f in dataclasses.fields(TrainConfig)]
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        base, _ = kind_of(FIELD_TYPES[f.name])
        choices, check = f.metadata.get("choices"), f.metadata.get("check")
        allowed = f"; {check.text}" if check is not None and base in (int, float) else ""
        text = _plain(f.metadata.get("help", ""))
        # a help text that states its default already is not given a second one
        default = "" if "default:" in text else f" (default: {_default_text(f)})"
        help_ = (text + allowed + default).replace("%", "%%")
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=help_)
        target = groups[_section_of(f.name, order)] if groups else parser
        if base is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(base) is list:
            target.add_argument(flag, nargs="+", type=_element_reader(f.name), metavar="N", **common)
        elif base is dict or typing.get_origin(base) is dict:
            target.add_argument(flag, type=functools.partial(_mapping, f.name), metavar="YAML", **common)
        else:
            metavar = "{" + ",".join(choices) + "}" if choices else base.__name__.upper()
            target.add_argument(flag, type=functools.partial(check_option, f.name), metavar=metavar, **common)


def _element_reader(name: str):
    """argparse ``type`` for one element of a list option (``--hidden 256 256``): the list's
    element type and check (the whole list is checked again when the config is resolved)."""
    (element,) = typing.get_args(kind_of(FIELD_TYPES[name])[0])
    return functools.partial(coerce, name, element, check=FIELDS[name].metadata.get("check"))


def _default_text(f: dataclasses.Field) -> str:
    """The real default: per algorithm where it depends on the algorithm, else the method's."""
    if f.metadata.get("default_doc"):
        return f.metadata["default_doc"]
    if f.default is not None:
        return str(f.default)
    per_algo = {algo: d[f.name] for algo, d in ALGO_DEFAULTS.items() if f.name in d}
    if per_algo:
        return ", ".join(f"{algo} {value}" for algo, value in per_algo.items())
    return "set by the method" if f.name in ("nstep", "dynamic_buffer", "mask_init", "grow", "nstep_delay") else "none"


def _mapping(name: str, text: str) -> dict:
    """``--env-kwargs '{config: {lanes_count: 3}}'``: a YAML/JSON mapping."""
    import yaml

    from .config import safe_yaml
    try:
        value = safe_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{flag_of(name)} {text!r}: not YAML/JSON ({str(exc).splitlines()[0]})") from None
    return check_option(name, value)


def _add_trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-env-module", action="store_true",
                        help="allow importing the module named by a stored 'module:Class' env id (runs its code)")


def _version() -> str:
    from . import __version__
    return f"sparserl {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparserl", description="Train small (sparse or pruned) deep-RL agents.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train an agent", description=TRAIN_DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {title: train.add_argument_group(title, description) for title, description, _ in HELP_SECTIONS}
    run = groups[HELP_SECTIONS[0][0]]
    run.add_argument("--config", metavar="FILE.yaml", help="YAML file of config keys (e.g. a run's config.yaml)")
    run.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR (with it only "
                     "--steps, --progress, --device and --tensorboard may be given)")
    run.add_argument("--overwrite", action="store_true", help="replace a finished or unfinished run in --out")
    run.add_argument("--seeds", metavar="LIST", help="train one run per seed in one process, their updates "
                     "batched as one stacked program (e.g. 0-7 or 0,3,5; td3 and dqn); seed S's run is the "
                     "directory OUT/seedS, and --resume OUT continues the group")
    _add_trust_flag(run)
    _add_config_flags(train, groups)

    ev = sub.add_parser("eval", help="evaluate a run's checkpoint, an exported policy or an SB3 zip")
    ev.add_argument("dir", nargs="?", default=None,
                    help="run directory (holds checkpoint.pt) or a Stable-Baselines3 model .zip (with --env); "
                         "may be left out with --exported PATH --env ENV_ID")
    ev.add_argument("--episodes", type=int, default=10, help="full episodes to average (default: 10)")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the first episode's reset (default: 12345)")
    ev.add_argument("--env", default=None, help="evaluate in this env instead of the run's stored one")
    _add_trust_flag(ev)
    from .export.cli import add_export_parser, add_exported_argument
    add_exported_argument(ev)
    add_export_parser(sub)

    fl = sub.add_parser("flops", help="per-layer parameter and FLOP table of a run")
    fl.add_argument("dir", help="run directory (holds checkpoint.pt)")
    _add_trust_flag(fl)

    bench = sub.add_parser("bench", help="run an experiment grid (suite YAML)", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    report = sub.add_parser("report", help="aggregate a bench directory into tables and plots", add_help=False)
    report.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def config_from_args(ns: argparse.Namespace, notes: typing.Optional[list] = None) -> TrainConfig:
    """Flags over ``--config FILE`` over ``--preset`` over defaults; resolved like the Python API
    (``notes``: see :func:`~sparserl.config.config_from_options`)."""
    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(ns, f.name)}
    from_file = load_yaml(ns.config) if ns.config else {}
    TrainConfig.from_dict(from_file, source=str(ns.config))  # rejects unknown keys early
    check_options(from_file, str(ns.config))  # a bad value in the file is an error even if a flag overrides it
    return config_from_options({**from_file, **given}, source=str(ns.config) if ns.config else "options", notes=notes)


# Options that may accompany --resume; every other option is rejected (a resumed run keeps
# its stored config, so a silently ignored --lr would be a lie).
RESUME_OPTIONS = ("steps", "progress", "device", "tensorboard")


def cmd_train(ns: argparse.Namespace) -> int:
    from . import checkpoint
    from .rundir import RunState, open_run_dir
    from .terminal import choose_output
    from .trainer import RESUME_KEYS, Trainer

    if ns.seeds is not None or (ns.resume is not None and (Path(ns.resume) / GROUP_FILE).is_file()):
        return cmd_train_group(ns)
    if ns.resume is not None:
        extra = [f for f in dataclasses.fields(TrainConfig) if hasattr(ns, f.name) and f.name not in RESUME_OPTIONS]
        if extra or ns.config or ns.overwrite:
            names = [f"--{f.name.replace('_', '-')}" for f in extra] + (["--config"] if ns.config else []) \
                + (["--overwrite"] if ns.overwrite else [])
            raise UserError(f"--resume continues a run with its stored config; only "
                            f"{', '.join('--' + o for o in RESUME_OPTIONS)} may be given with it, got {', '.join(names)}")
        run_dir = Path(ns.resume)
        with open_run_dir(ns.resume, resuming=True) as status:
            resume_file = run_dir / "resume.pt"
            state = checkpoint.load(resume_file, overwrite_hint="; it cannot be resumed (a fresh run with "
                                                                "--overwrite replaces it)")
            missing = [k for k in RESUME_KEYS if k not in state] if isinstance(state, dict) else list(RESUME_KEYS)
            if missing:
                raise UserError(f"{resume_file} is not a sparserl resume state (missing {', '.join(missing[:4])}"
                                f"{' ...' if len(missing) > 4 else ''}; a checkpoint.pt or model file cannot be resumed, and a "
                                f"resume.pt written by an older sparserl needs that version to finish)")
            cfg = TrainConfig.from_dict(state["config"], source=str(resume_file))
            saved_step = status.step  # an integer: read and checked by open_run_dir
            for name in RESUME_OPTIONS:
                if hasattr(ns, name):
                    setattr(cfg, name, getattr(ns, name))
            cfg.out = str(run_dir)
            cfg = resolve(cfg)
            if cfg.steps < saved_step:
                raise UserError(f"--steps {cfg.steps} is below the {saved_step} steps {run_dir} already ran")
            if status.state is RunState.COMPLETE and cfg.steps == saved_step:
                raise UserError(f"run in {run_dir} already finished {saved_step} of {cfg.steps} steps; "
                                f"pass a larger --steps to continue it")
            # the env id comes from the stored run: a module:Class id is imported only on request
            try:
                trainer = Trainer(cfg, resume_state=state, allow_env_import=ns.trust_env_module,
                                  output=choose_output(cfg.progress))
            except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
                # the state is data: a damaged or foreign one is bad input, not a crash
                detail = " ".join(str(exc).split())[:200]
                raise UserError(f"cannot resume from {resume_file}: its state does not fit this run "
                                f"({type(exc).__name__}: {detail})") from None
            summary = trainer.train()  # at the final step: writes only the missing final artifacts
    else:
        notes: list = []
        cfg = config_from_args(ns, notes)
        for note in notes:  # which preset applied, so a run never silently differs from its flags
            print(note)
        from .plan import plan_warnings
        for warning in plan_warnings(cfg):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        # an env typed on the command line is the user's choice; one from --config is data
        explicit_env = hasattr(ns, "env") or ns.trust_env_module
        from .resources import check_memory
        check_memory(cfg)  # sizes alone (the env's dimensions come later): before any directory exists
        from .rundir import _path_text
        _path_text(cfg.out, "--out")  # a name too long for the file system: said before exists() trips on it
        created = not Path(cfg.out).exists()
        try:
            with open_run_dir(cfg.out, overwrite=ns.overwrite):
                trainer = Trainer(cfg, allow_env_import=explicit_env, output=choose_output(cfg.progress))
                summary = trainer.train()
        except UserError:
            _remove_if_unused(Path(cfg.out), created)
            raise
        except MemoryError:  # beyond the estimate: still one line, and no directory left behind
            _remove_if_unused(Path(cfg.out), created)
            raise UserError(f"out of memory building the run in {cfg.out}; allowed: a smaller --hidden, "
                            f"--buffer-size or --batch-size") from None
    out = Path(trainer.cfg.out)
    from .terminal import network_lines
    print(f"final eval return: {summary['final_eval_return']:.2f} (best {summary['best_eval_return']:.2f})")
    for line in network_lines(summary):
        print(line)
    print(f"logs:       {out / 'metrics.csv'}  (TensorBoard: {out / 'tb'})")
    print(f"plot:       {out / 'learning_curve.png'}")
    print(f"checkpoint: {out / 'checkpoint.pt'}")
    print(f"summary:    {out / 'summary.json'}")
    return 0


GROUP_FILE = "group.json"


def cmd_train_group(ns: argparse.Namespace) -> int:
    """``sparserl train --seeds LIST`` (and ``--resume`` of such a group): one process, one
    stacked update per step for all seeds (:mod:`sparserl.vectorised`); each seed's run is a
    normal run directory ``OUT/seedS`` that ``eval``, ``export``, ``flops`` and ``report`` read."""
    import contextlib
    import json

    from . import checkpoint
    from .atomic import atomic_write_text
    from .rundir import open_run_dir
    from .terminal import choose_output
    from .vectorised import GroupTrainer, check_group, parse_seeds

    if ns.resume is not None:
        extra = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(TrainConfig)
                 if hasattr(ns, f.name) and f.name not in RESUME_OPTIONS]
        if extra or ns.config or ns.overwrite:
            raise UserError(f"--resume of a group continues its stored configs; only "
                            f"{', '.join('--' + o for o in RESUME_OPTIONS)} and --seeds may be given with it, "
                            f"got {', '.join(extra + (['--config'] if ns.config else []) + (['--overwrite'] if ns.overwrite else []))}")
        out = Path(ns.resume)
        if ns.seeds is not None:  # these seeds of OUT (the bench resumes its groups so)
            dirs = [out / f"seed{seed}" for seed in parse_seeds(ns.seeds)]
        else:
            try:
                record = json.loads((out / GROUP_FILE).read_text())
                dirs = [out / name for name in record["runs"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{out / GROUP_FILE} is not a sparserl group record ({exc})") from None
        for run_dir in dirs:
            if not (run_dir / "resume.pt").is_file():
                raise UserError(f"--resume {out}: {run_dir} has no resume.pt to continue")
        states, cfgs = [], []
        for run_dir in dirs:
            state = checkpoint.load(run_dir / "resume.pt", overwrite_hint="; the group cannot be resumed")
            cfg = TrainConfig.from_dict(state["config"], source=str(run_dir / "resume.pt"))
            for name in RESUME_OPTIONS:
                if hasattr(ns, name):
                    setattr(cfg, name, getattr(ns, name))
            cfg.out = str(run_dir)
            cfgs.append(resolve(cfg))
            states.append(state)
        resuming = True
    else:
        seeds = parse_seeds(ns.seeds)
        notes: list = []
        base = config_from_args(ns, notes)
        for note in notes:
            print(note)
        from .plan import plan_warnings
        for warning in plan_warnings(base):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        out = Path(base.out)
        cfgs = [resolve(dataclasses.replace(base, seed=seed, out=str(out / f"seed{seed}"))) for seed in seeds]
        states, resuming = None, False
    check_group(cfgs)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for cfg in cfgs:
            stack.enter_context(open_run_dir(cfg.out, overwrite=ns.overwrite, resuming=resuming))
        if not resuming:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / GROUP_FILE, json.dumps(
                {"seeds": [c.seed for c in cfgs], "runs": [Path(c.out).name for c in cfgs]}, indent=1) + "\n")
        group = GroupTrainer(cfgs, states, output=choose_output(cfgs[0].progress))
        summaries, failures = group.train()
    for k, cfg in enumerate(cfgs):
        if k in summaries:
            s = summaries[k]
            print(f"seed {cfg.seed}: final eval return {s['final_eval_return']:.2f} (best {s['best_eval_return']:.2f})"
                  f"  {cfg.out}")
    for k, message in sorted(failures.items()):
        print(f"error: seed {cfgs[k].seed} stopped: {' '.join(message.split())}", file=sys.stderr)
    return 2 if failures else 0


def _remove_if_unused(out: Path, created: bool) -> None:
    """A run rejected before it wrote anything leaves no directory behind (only the lock was made)."""
    if created and out.is_dir() and all(p.name == ".lock" for p in out.iterdir()):
        for p in out.iterdir():
            p.unlink()
        out.rmdir()


def cmd_eval(ns: argparse.Namespace) -> int:
    from .config import SEED_MAX
    from .evaluation import evaluate
    if ns.episodes <= 0:
        raise UserError(f"--episodes must be a positive integer, got {ns.episodes}")
    if not 0 <= ns.seed <= SEED_MAX:
        raise UserError(f"--seed {ns.seed} is out of range; allowed: an integer in [0, 2**32-1]")
    if ns.dir is None:
        if not ns.exported:
            raise UserError("sparserl eval needs a run directory, an SB3 .zip, or --exported PATH with --env ENV_ID")
        from .export.cli import evaluate_exported
        result = evaluate_exported(None, ns.exported, ns.episodes, ns.seed, ns.env)
        print(f"exported {ns.exported} on {ns.env}: {_eval_line(result, ns.episodes)}")
        return 0
    if str(ns.dir).endswith(".zip"):
        return _eval_sb3_zip(ns)
    cfg, agent, env = load_agent(ns.dir, env=ns.env, trust_env_module=ns.trust_env_module)
    if ns.exported:
        from .export.cli import evaluate_exported
        result = evaluate_exported(ns.dir, ns.exported, ns.episodes, ns.seed, ns.env, ns.trust_env_module)
        print(f"exported {ns.exported} ({cfg.algo}/{cfg.method}) on {cfg.env}: {_eval_line(result, ns.episodes)}")
        return 0
    env.reset(seed=ns.seed)
    result = evaluate(agent, env, ns.episodes)
    print(f"{cfg.algo}/{cfg.method} on {cfg.env}: {_eval_line(result, ns.episodes)}")
    return 0


class _SB3Greedy:
    """``act(obs)`` of an SB3 model: its deterministic ``predict``."""

    def __init__(self, model):
        self.model = model

    def act(self, obs):
        return self.model.predict(obs, deterministic=True)[0]


def _eval_sb3_zip(ns: argparse.Namespace) -> int:
    """``sparserl eval model.zip --env ID``: an SB3 model, loaded without unpickling anything
    from the zip (as ``sparserl export`` loads it), run greedily like a checkpoint."""
    from .evaluation import evaluate
    if ns.exported:
        raise UserError("--exported evaluates an exported file on its own: leave out the .zip "
                        "(sparserl eval --exported PATH --env ENV_ID)")
    if ns.env is None:
        raise UserError(f"sparserl eval {ns.dir}: an SB3 zip does not store its env id; give --env ENV_ID")
    if not Path(ns.dir).is_file():
        raise UserError(f"{ns.dir}: no such file")
    try:
        from .integrations import sb3
    except ImportError:
        raise UserError(f"sparserl eval {ns.dir}: SB3 zips need stable-baselines3: pip install 'sparserl[sb3]'") from None
    from .envs import make_env
    cls = sb3.algorithm_of_zip(ns.dir)
    model = sb3.load_zip_safely(ns.dir, cls)
    env = make_env(ns.env, allow_import=True)
    if env.observation_space.shape != model.observation_space.shape or \
            type(env.action_space) is not type(model.action_space):
        raise UserError(f"{ns.dir} was trained on observations {model.observation_space.shape} and "
                        f"{model.action_space}; {ns.env} has {env.observation_space.shape} and {env.action_space}")
    env.reset(seed=ns.seed)
    result = evaluate(_SB3Greedy(model), env, ns.episodes)
    print(f"SB3 {cls.__name__} {ns.dir} on {ns.env}: {_eval_line(result, ns.episodes)}")
    return 0


def _eval_line(result, episodes: int) -> str:
    """``return m ± s over N episodes``, and the collision rate where the env reports crashes."""
    line = f"return {result.mean:.2f} ± {result.std:.2f} over {episodes} episodes"
    rate = result.collision_rate
    if rate is not None:
        line += f", collision rate {rate:.2f} ({round(rate * episodes)}/{episodes})"
    return line


def cmd_flops(ns: argparse.Namespace) -> int:
    from .sparse.flops import format_table, layer_flops

    cfg, agent, _ = load_agent(ns.dir, with_env=False, trust_env_module=ns.trust_env_module)
    for name, net in agent.networks.items():
        print(f"== {name} ({cfg.algo}/{cfg.method})")
        print(format_table(layer_flops(net)))
        print()
    from .export.cli import size_section
    print(size_section(agent) + "\n")
    summary_path = Path(ns.dir) / "summary.json"
    if summary_path.exists():
        flops = _summary_flops(summary_path)
        if flops:
            print(f"training FLOPs: {flops['train_total']:.3e} (dense {flops['train_dense_total']:.3e}, "
                  f"ratio {flops['train_total'] / max(flops['train_dense_total'], 1):.3f})")
            print(f"inference FLOPs per action: {flops['infer_per_action']:,} (dense {flops['infer_dense_per_action']:,}, "
                  f"ratio {flops['infer_per_action'] / max(flops['infer_dense_per_action'], 1):.3f})")
    return 0


def _summary_flops(path: Path) -> dict | None:
    """summary.json's ``flops`` if it is readable and holds numbers; otherwise one warning line
    (the per-layer table above is the checkpoint's and stays valid)."""
    import json
    keys = ("train_total", "train_dense_total", "infer_per_action", "infer_dense_per_action")
    try:
        flops = json.loads(path.read_text(encoding="utf-8")).get("flops")
    except (OSError, ValueError, AttributeError):
        print(f"warning: {path} is unreadable (truncated or not a JSON object); training FLOPs not shown",
              file=sys.stderr)
        return None
    if not flops:
        return None
    if not isinstance(flops, dict) or not all(isinstance(flops.get(k), (int, float)) and not isinstance(
            flops.get(k), bool) for k in keys):
        print(f"warning: {path}: 'flops' does not hold the numbers {', '.join(keys)}; training FLOPs not shown",
              file=sys.stderr)
        return None
    return flops


def main(argv: list[str] | None = None) -> int:
    """Run one command. Library warnings (gymnasium's env checker, numpy, torch) are collected
    while it runs: a failing command prints only its one ``error:`` line, a successful one
    prints each distinct warning as one ``warning:`` line at the end (their multi-line source
    excerpts never reach the terminal). pygame's greeting (highway-env's renderer) is hidden."""
    import os
    import warnings
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings(record=True) as caught:
        rc = _run(argv)
    if rc == 0:
        seen = set()
        for w in caught:
            line = f"warning: {w.category.__name__}: {' '.join(str(w.message).split())[:300]}"
            if line not in seen and len(seen) < 10:
                seen.add(line)
                print(line, file=sys.stderr)
    return rc


def _run(argv: list[str]) -> int:
    from .faults import exception_text
    try:
        if argv and argv[0] in ("bench", "report"):
            from . import bench
            return (bench.bench_main if argv[0] == "bench" else bench.report_main)(argv[1:]) or 0
        ns = build_parser().parse_args(argv)
        from .export.cli import cmd_export
        return {"train": cmd_train, "eval": cmd_eval, "flops": cmd_flops, "export": cmd_export}[ns.command](ns)
    except UserError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # the disk, not the code: a full disk, a read-only directory, a name too long
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exception_text(exc)}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory (a smaller --buffer-size, --batch-size or --hidden fits; the last "
              "checkpoint is intact)", file=sys.stderr)
        return 2
    except RecursionError:
        print("error: input nested too deeply (recursion limit reached)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (the last checkpoint is intact; continue with `sparserl train --resume DIR`)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
