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
import sys
import typing
from pathlib import Path

from .config import TrainConfig, load_yaml, resolve
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UserError(f"{self.prog}: {message}")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        args = typing.get_args(kind)
        base = next((a for a in args if a is not type(None)), kind) if args else kind
        help_ = f.metadata.get("help", "").replace("%", "%%")
        choices = f.metadata.get("choices")
        default_txt = f" (default: {f.default})"
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=help_ + default_txt)
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(base) is list:
            parser.add_argument(flag, nargs="+", type=int, metavar="N", **common)
        else:
            parser.add_argument(flag, type=base, choices=choices, metavar=None if choices else base.__name__.upper(),
                                **common)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparserl", description="Train small (sparse or pruned) deep-RL agents.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train an agent", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", metavar="FILE.yaml", help="YAML file of config keys (e.g. a run's config.yaml)")
    train.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    _add_config_flags(train)

    ev = sub.add_parser("eval", help="evaluate a run's checkpoint")
    ev.add_argument("dir", help="run directory (holds checkpoint.pt)")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=12345)
    from .export.cli import add_export_parser, add_exported_argument
    add_exported_argument(ev)
    add_export_parser(sub)

    fl = sub.add_parser("flops", help="per-layer parameter and FLOP table of a run")
    fl.add_argument("dir", help="run directory (holds checkpoint.pt)")

    bench = sub.add_parser("bench", help="run an experiment grid (suite YAML)", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    report = sub.add_parser("report", help="aggregate a bench directory into tables and plots", add_help=False)
    report.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    from .methods import apply_method_defaults, load_preset
    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(ns, f.name)}
    from_file = load_yaml(ns.config) if ns.config else {}
    TrainConfig.from_dict(from_file, source=str(ns.config))  # rejects unknown keys early
    merged: dict = {}
    merged.update(from_file)
    merged.update(given)
    preset_name = merged.get("preset")
    data: dict = {}
    if preset_name:
        probe = resolve(TrainConfig.from_dict(merged))
        data.update(load_preset(preset_name, probe.algo, probe.env))
    data.update(merged)
    data = apply_method_defaults(data)
    return resolve(TrainConfig.from_dict(data))


def cmd_train(ns: argparse.Namespace) -> int:
    from . import checkpoint
    from .trainer import Trainer

    if ns.resume:
        run_dir = Path(ns.resume)
        state = checkpoint.load(run_dir / "resume.pt")
        cfg = TrainConfig.from_dict(state["config"])
        if hasattr(ns, "steps"):
            cfg.steps = ns.steps
        cfg.out = str(run_dir)
        cfg = resolve(cfg)
        if int(state["step"]) >= cfg.steps:
            raise UserError(f"run in {run_dir} already finished {state['step']} of {cfg.steps} steps; "
                            f"pass a larger --steps to continue it")
        trainer = Trainer(cfg, resume_state=state)
    else:
        trainer = Trainer(config_from_args(ns))
    summary = trainer.train()
    out = Path(trainer.cfg.out)
    print(f"final eval return: {summary['final_eval_return']:.2f} (best {summary['best_eval_return']:.2f})")
    print(f"logs:       {out / 'metrics.csv'}  (TensorBoard: {out / 'tb'})")
    print(f"plot:       {out / 'learning_curve.png'}")
    print(f"checkpoint: {out / 'checkpoint.pt'}")
    print(f"summary:    {out / 'summary.json'}")
    return 0


def load_agent(run_dir: str | Path):
    """Rebuild a run's agent (shrunk architectures included) from its checkpoint."""
    from . import checkpoint
    from .algos import make_agent
    from .envs import make_env

    state = checkpoint.load(Path(run_dir) / "checkpoint.pt")
    cfg = TrainConfig.from_dict(state["config"])
    env = make_env(cfg.env)
    agent = make_agent(cfg, env.observation_space, env.action_space, state["architecture"])
    agent.load_state_dict(state["agent"], with_training_state=False)
    return cfg, agent, env


def cmd_eval(ns: argparse.Namespace) -> int:
    import numpy as np

    from .trainer import evaluate

    if ns.episodes <= 0:
        raise UserError(f"--episodes must be a positive integer, got {ns.episodes}")
    cfg, agent, env = load_agent(ns.dir)
    if ns.exported:
        from .export.cli import evaluate_exported
        mean, std = evaluate_exported(ns.dir, ns.exported, ns.episodes, ns.seed)
        print(f"exported {ns.exported} ({cfg.algo}/{cfg.method}) on {cfg.env}: return {mean:.2f} ± {std:.2f} "
              f"over {ns.episodes} episodes")
        return 0
    env.reset(seed=ns.seed)
    mean, std = evaluate(agent, env, ns.episodes)
    print(f"{cfg.algo}/{cfg.method} on {cfg.env}: return {mean:.2f} ± {std:.2f} over {ns.episodes} episodes")
    return 0


def cmd_flops(ns: argparse.Namespace) -> int:
    from .sparse.flops import format_table, layer_flops

    cfg, agent, _ = load_agent(ns.dir)
    for name, net in agent.networks.items():
        print(f"== {name} ({cfg.algo}/{cfg.method})")
        print(format_table(layer_flops(net)))
        print()
    from .export.cli import size_section
    print(size_section(agent) + "\n")
    summary_path = Path(ns.dir) / "summary.json"
    if summary_path.exists():
        import json
        flops = json.loads(summary_path.read_text()).get("flops", {})
        if flops:
            print(f"training FLOPs: {flops['train_total']:.3e} (dense {flops['train_dense_total']:.3e}, "
                  f"ratio {flops['train_total'] / max(flops['train_dense_total'], 1):.3f})")
            print(f"inference FLOPs per action: {flops['infer_per_action']:,} (dense {flops['infer_dense_per_action']:,}, "
                  f"ratio {flops['infer_per_action'] / max(flops['infer_dense_per_action'], 1):.3f})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in ("bench", "report"):
            from . import bench
            return (bench.bench_main if argv[0] == "bench" else bench.report_main)(argv[1:]) or 0
        ns = build_parser().parse_args(argv)
        from .export.cli import cmd_export
        return {"train": cmd_train, "eval": cmd_eval, "flops": cmd_flops, "export": cmd_export}[ns.command](ns)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (the last checkpoint is intact; continue with `sparserl train --resume DIR`)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
