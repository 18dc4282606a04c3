"""Benchmark harness: run suites of training runs as a resumable grid, and report on them.

Public API::

    run_suite(suite_path, out_dir, workers=None, backend="local", ray_address=None,
              command_builder=None) -> dict          # sparserl bench
    make_report(run_dir) -> dict of paths            # sparserl report
    update_results_md(run_dirs, "docs/RESULTS.md")  # generated RESULTS.md sections
    bench_main(argv) / report_main(argv) / add_bench_args(subparsers)   # CLI wiring

Conventions (suite format, statistics, outputs): sparserl/bench/README.md.
"""
from .cli import add_bench_args, bench_main, report_main
from .report import load_report_data, make_report
from .results_md import render_results_section, update_results_md
from .runner import run_suite
from .stats import bootstrap_ci, iqm, stratified_bootstrap_ci
from .suite import Cell, default_command, load_suite, prefix_command_builder, train_args

__all__ = [
    "run_suite", "make_report", "load_report_data", "update_results_md",
    "render_results_section", "bench_main", "report_main", "add_bench_args", "load_suite",
    "Cell", "default_command", "train_args", "prefix_command_builder", "iqm", "bootstrap_ci",
    "stratified_bootstrap_ci",
]
