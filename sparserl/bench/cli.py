"""Command-line entry points of the benchmark harness: ``bench`` and ``report``.

For the ``sparserl`` CLI, either register both subcommands on an argparse subparsers object::

    from sparserl.bench.cli import add_bench_args
    add_bench_args(subparsers)          # adds "bench" and "report"; sets args.func
    ...
    args = parser.parse_args(argv); return args.func(args)

or dispatch the raw arguments::

    from sparserl.bench.cli import bench_main, report_main
    if argv[0] == "bench": return bench_main(argv[1:])

All user mistakes raise :class:`sparserl.errors.UserError` with a one-line message; the
functions return the process exit code (bench: 0 when every cell is done, 1 when some failed).
Without the top-level CLI: ``python -m sparserl.bench {bench,report} ...``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from sparserl.errors import UserError

from .runner import BACKENDS, dump_suite_cells, run_suite
from .suite import prefix_command_builder


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UserError(f"{self.prog}: {message}")


def configure_bench_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("suite", help="suite YAML file (see benchmarks/suites/)")
    p.add_argument("--out", required=True, help="run directory; run again with the same one to resume")
    p.add_argument("--workers", type=int, default=None,
                   help="cells run at once, one process and one torch thread each "
                        "(default: CPU count; Ray: the cluster's CPUs)")
    p.add_argument("--backend", default="local",
                   help=f"where cells run: {' or '.join(BACKENDS)} (ray needs sparserl[ray])")
    p.add_argument("--ray-address", default=None,
                   help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--command-prefix", default=None,
                   help="advanced: run 'PREFIX <train args>' instead of "
                        "'python -m sparserl train <train args>' (shell-quoted string)")
    p.add_argument("--dry-run", action="store_true",
                   help="print every cell, whether it is done, and its command; run nothing")
    p.add_argument("--report", action="store_true", help="write the report when the grid ends")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--trust-env-module", action="store_true",
                   help="allow the suite's 'module:Class' env ids (imports the module: runs its code)")
    return p


def configure_report_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("run_dir", nargs="+", help="bench run directory (the --out of sparserl bench), sparserl train "
                   "run directories, or directories holding them")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the report of sparserl train runs goes (default: the directory holding them); "
                        "a bench directory's report goes into it")
    p.add_argument("--results-md", default=None, metavar="PATH",
                   help="also insert/replace the runs' sections in this Markdown file "
                        "(e.g. docs/RESULTS.md)")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def run_bench(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    if args.backend not in BACKENDS:
        raise UserError(f"unknown backend {args.backend!r}; choose one of: {', '.join(BACKENDS)}")
    builder = None
    if args.command_prefix:
        try:
            prefix = shlex.split(args.command_prefix)
        except ValueError as exc:
            raise UserError(f"--command-prefix: {exc}") from None
        if not prefix:
            raise UserError("--command-prefix is empty")
        builder = prefix_command_builder(prefix)
    if args.dry_run:
        for item in dump_suite_cells(args.suite, args.out, builder, trust_env_module=args.trust_env_module):
            print(("done " if item["done"] else "todo ") + item["cell"] + "  "
                  + shlex.join(item["command"]))
        return 0
    command_line = "sparserl bench " + shlex.join(list(argv)) if argv is not None else None
    summary = run_suite(args.suite, args.out, workers=args.workers, backend=args.backend,
                        ray_address=args.ray_address, command_builder=builder,
                        progress=not args.no_progress, command_line=command_line,
                        trust_env_module=args.trust_env_module)
    print(f"{summary['total']} cells: {summary['skipped']} already done, "
          f"{summary['completed']} completed now, {summary['failed']} failed "
          f"({summary['elapsed_s']:.0f} s) -> {summary['out_dir']}")
    if args.report and summary["total"] > summary["failed"]:
        from .report import make_report  # noqa: PLC0415

        paths = make_report(summary["out_dir"])
        print(f"report: {paths['md']}")
    if summary["failed"]:
        print(f"error: {summary['failed']} of {summary['total']} cells failed; "
              f"see {summary['out_dir']}/failures.json", file=sys.stderr)
        return 1
    return 0


def run_report(args: argparse.Namespace) -> int:
    from .report import make_report  # noqa: PLC0415
    from .results_md import update_results_md  # noqa: PLC0415

    if args.n_boot < 100:
        raise UserError(f"--n-boot must be >= 100, got {args.n_boot}")
    bench_dirs, plain = _split_report_args(args.run_dir)
    if args.results_md and plain:
        raise UserError(f"--results-md takes bench directories (the --out of sparserl bench); "
                        f"{plain[0]} holds sparserl train runs")
    for run_dir in bench_dirs:
        paths = make_report(run_dir, n_boot=args.n_boot, plots=not args.no_plots)
        print(f"{paths['md']}  {paths['csv']}  ({len(paths['plots'])} plots)")
    if plain:
        from .report import render_tables  # noqa: PLC0415
        out = Path(args.out) if args.out else _plain_report_dir(plain)
        paths = make_report(out, n_boot=args.n_boot, plots=not args.no_plots, plain=plain)
        print(render_tables(paths["data"]))
        print(f"{paths['md']}  {paths['csv']}  ({len(paths['plots'])} plots)")
    if args.results_md:
        path = update_results_md(bench_dirs, args.results_md, n_boot=args.n_boot)
        print(f"updated {path}")
    return 0


def _split_report_args(args: Sequence[str]) -> tuple[list[str], list[Path]]:
    """Bench directories (each reported on its own) and ``sparserl train`` runs or directories
    holding them (reported together); a path that is neither is one line naming it."""
    from .report import find_plain_runs, is_bench_dir  # noqa: PLC0415
    bench_dirs, plain = [], []
    for arg in args:
        path = Path(arg)
        if not path.is_dir():
            raise UserError(f"run directory not found: {path}")
        if is_bench_dir(path):
            bench_dirs.append(arg)
        elif find_plain_runs(path):
            plain.append(path)
        else:
            raise UserError(f"no finished runs in {path}: it is neither a sparserl train run directory (with "
                            f"summary.json), nor a directory holding runs, nor a bench directory "
                            f"(*/*/*/seed*/summary.json)")
    return bench_dirs, plain


def _plain_report_dir(paths: list[Path]) -> Path:
    """Where a report of plain runs goes without --out: the directory holding them (a run
    directory itself stays untouched: its parent holds the report)."""
    import os  # noqa: PLC0415
    from .report import find_plain_runs  # noqa: PLC0415
    homes = [p.parent if find_plain_runs(p) == [p] else p for p in paths]
    return Path(os.path.commonpath([str(h.resolve()) for h in homes]))


def add_bench_args(subparsers) -> None:
    """Add the ``bench`` and ``report`` subcommands to an argparse subparsers object.

    Each sets ``func`` (call ``args.func(args)`` to get the exit code).
    """
    pb = subparsers.add_parser("bench", help="run a benchmark suite (grid of training runs)",
                               description="Run every cell of a suite as its own process; "
                                           "resumable; one crashed cell never stops the grid.")
    configure_bench_parser(pb).set_defaults(func=run_bench)
    pr = subparsers.add_parser("report", help="aggregate a bench run directory",
                               description="Tables (report.md/.csv) and plots of a bench run.")
    configure_report_parser(pr).set_defaults(func=run_report)


def bench_main(argv: Sequence[str] | None = None) -> int:
    """``sparserl bench SUITE --out DIR [...]`` given the arguments after ``bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = configure_bench_parser(_Parser(prog="sparserl bench"))
    return run_bench(parser.parse_args(argv), argv)


def report_main(argv: Sequence[str] | None = None) -> int:
    """``sparserl report DIR [...]`` given the arguments after ``report``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = configure_report_parser(_Parser(prog="sparserl report"))
    return run_report(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sparserl.bench {bench,report} ...`` (until/besides the sparserl CLI)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("bench", "report"):
        print("usage: python -m sparserl.bench {bench,report} ...", file=sys.stderr)
        return 2
    try:
        return bench_main(argv[1:]) if argv[0] == "bench" else report_main(argv[1:])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


__all__ = ["add_bench_args", "bench_main", "report_main", "run_bench", "run_report",
           "configure_bench_parser", "configure_report_parser", "main"]
