"""Render docs/RESULTS.md sections from bench run directories (never typed by hand).

Each run directory becomes one section between ``<!-- BEGIN sparserl-bench: ID -->`` and
``<!-- END sparserl-bench: ID -->`` markers, ID = ``<suite>/<run dir name>``.  Updating the file
replaces the sections with the same ID in place, appends new ones, and keeps all other text.
Every section states the command, date, machine (platform, CPU count), budgets and seeds.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterable

from . import stats
from .report import load_report_data, render_header, render_tables
from .suite import is_safe_name

FILE_HEADER = """# Results

Sections below are generated, never typed: grid sections by
`sparserl report DIR --results-md docs/RESULTS.md` (or `sparserl.bench.update_results_md([...])`),
the throughput and sparse-overhead sections by `benchmarks/throughput.py` and
`benchmarks/sparse_overhead.py`. Each states its command, date, machine and seeds; re-run the
command to refresh a section.
Statistical conventions: `sparserl/bench/README.md`.
"""


def section_id(run_dir: str | Path, suite: str | None = None) -> str:
    run_dir = Path(run_dir)
    return f"{suite or 'suite'}/{run_dir.resolve().name}"


def render_results_section(run_dir: str | Path, n_boot: int = stats.DEFAULT_BOOT,
                           plots_dir: str | Path | None = None) -> tuple[str, str]:
    """Return ``(id, markdown)`` for one run directory's RESULTS.md section.

    With ``plots_dir`` (a folder next to the Markdown file), the run's report plots are
    copied there and shown in the section, so the document does not point into ``runs/``."""
    data = load_report_data(run_dir, n_boot=n_boot)
    suite = data.manifest.get("suite") or data.run_dir.name
    if not is_safe_name(suite):  # the manifest is data: its name must not steer where plots are copied
        suite = data.run_dir.name
    sid = section_id(data.run_dir, suite)
    date = (data.manifest.get("finished_at") or data.manifest.get("started_at") or "")[:10]
    images = []
    if plots_dir is not None:
        dest = Path(plots_dir) / suite
        for png in sorted((data.run_dir / "plots").glob("*.png")):
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, dest / png.name)
            images.append(f"![{png.stem}]({Path(plots_dir).name}/{suite}/{png.name})")
    body = [
        f"<!-- BEGIN sparserl-bench: {sid} -->",
        f"## Suite `{suite}`" + (f" — {date}" if date else ""),
        "",
        render_header(data),
        render_tables(data),
        *(["", *images, ""] if images else []),
        f"<!-- END sparserl-bench: {sid} -->",
    ]
    return sid, "\n".join(body)


def benchmark_header(title: str, argv: list[str], setup: str, load_note: str = "") -> list[str]:
    """Opening lines of a benchmark script's RESULTS.md section: title, the exact command,
    date, machine (platform, CPUs, torch) with the run's ``setup`` words, and the load average
    (other processes on the machine make timings noisier, so the section says how busy it was)."""
    import datetime
    import os
    import platform

    import torch

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"## {title}",
        "",
        f"Command: `python {' '.join(argv)}`  ",
        f"Date: {datetime.date.today()}  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} (1 thread){setup}  ",
        f"Load average at the end (1/5/15 min): {load}{load_note}  ",
    ]


def upsert_section(path: str | Path, sid: str, body: str) -> Path:
    """Insert or replace the section ``sid`` (between BEGIN/END markers) in a Markdown file,
    keeping every other line; ``body`` is the section's text without the markers."""
    path = Path(path)
    text = path.read_text() if path.exists() else FILE_HEADER
    begin, end = f"<!-- BEGIN sparserl-bench: {sid} -->", f"<!-- END sparserl-bench: {sid} -->"
    if body.startswith(begin):  # already wrapped (render_results_section output)
        section = body
    else:
        section = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(rf"{re.escape(begin)}.*?{re.escape(end)}", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def update_results_md(run_dirs: Iterable[str | Path], path: str | Path = "docs/RESULTS.md",
                      n_boot: int = stats.DEFAULT_BOOT) -> Path:
    """Insert or replace the sections of ``run_dirs`` in the Markdown file at ``path``."""
    path = Path(path)
    for run_dir in run_dirs:
        sid, section = render_results_section(run_dir, n_boot=n_boot, plots_dir=path.parent / "plots")
        upsert_section(path, sid, section)
    return path
