"""What a run prints while it trains and when it ends.

Three outputs, because a run is watched in three ways:

* ``bar``: a tqdm progress bar, for a person at a terminal (stdout and stderr are TTYs);
* ``lines``: one plain line per evaluation (step, return, steps/s, ETA and what the method
  is doing to the network), for a log file, a pipe, CI or ``--no-progress``: a bar written
  to a file is a stream of ``\\r`` frames nobody can read, and printing nothing until the
  end hides a run that is going wrong;
* ``none``: silence (the Python API's default, as SB3's ``verbose=0``).

The final lines (:func:`network_lines`) say what the network became, so that a pruning run
states its result where the user is already looking ("q: 256x256 -> 18x18, 93% of neurons
removed") instead of only in ``summary.json``.
"""
from __future__ import annotations

import math
import sys

OUTPUTS = ("bar", "lines", "none")


def choose_output(progress: bool, stream=None) -> str:
    """``bar`` when a progress bar is wanted and both stdout and stderr are terminals (tqdm
    draws on stderr, the lines go to stdout), else ``lines``."""
    if not progress:
        return "lines"
    streams = (sys.stdout, sys.stderr) if stream is None else (stream,)
    try:
        tty = all(s.isatty() for s in streams)
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    return "bar" if tty else "lines"


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: short enough for a log line, unambiguous."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def method_parts(row: dict, neurons: dict | None = None) -> list[str]:
    """What the method is doing, from a metrics row: neurons alive per pruned MLP (with the
    original count where the pruner's summary is given) and weight sparsity per network."""
    parts = []
    neurons = neurons or {}
    for key, value in row.items():
        if key.startswith("alive_") and _finite(value):
            path = key[len("alive_"):]
            total = (neurons.get(path) or {}).get("neurons_total")
            parts.append(f"{path} {int(value)}/{int(total)} neurons" if total else f"{path} {int(value)} neurons")
        elif key.startswith("sparsity_") and _finite(value):
            parts.append(f"{key[len('sparsity_'):]} {100 * float(value):.1f}% sparse")
    return parts


def eval_line(row: dict, total_steps: int, sps: float, neurons: dict | None = None) -> str:
    """One line per evaluation: ``step 2000/10000 | return -812.4 ± 40.2 | 950 steps/s |
    ETA 8s | q 300/512 neurons``. The ETA is the remaining steps at the latest interval's speed."""
    step = int(row["step"])
    mean, std = float(row["eval_return"]), float(row.get("eval_return_std", 0.0) or 0.0)
    eta = (total_steps - step) / sps if sps > 0 else float("nan")
    parts = [f"step {step}/{total_steps}", f"return {mean:.2f} ± {std:.2f}", f"{sps:,.0f} steps/s",
             f"ETA {format_duration(eta)}"]
    if row.get("eval_collision_rate") is not None and _finite(row.get("eval_collision_rate")):
        parts.append(f"collision rate {float(row['eval_collision_rate']):.2f}")
    parts += method_parts(row, neurons)
    return " | ".join(parts)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _widths(widths) -> str:
    return "x".join(str(int(w)) for w in widths) if widths else "no hidden layer"


def network_lines(summary: dict) -> list[str]:
    """What each network became, from ``summary.json``: for structured pruning the hidden widths
    before and after and the share of neurons removed; for weight-sparse methods each network's
    weight sparsity (nothing for a dense run, whose network is what was asked for)."""
    lines = []
    for path, block in (summary.get("neurons") or {}).items():
        if not isinstance(block, dict):
            continue
        now = block.get("architecture") or []
        before = block.get("original_architecture")
        removed = block.get("neurons_removed_frac")
        text = f"{path}: {_widths(before)} -> {_widths(now)}" if before else f"{path}: {_widths(now)}"
        if _finite(removed):
            events = int(block.get("prune_events", 0))
            text += f", {100 * float(removed):.0f}% of neurons removed ({events} prune event{'s' * (events != 1)})"
        lines.append(text)
    if lines or summary.get("method") in (None, "dense", "tiny"):
        return lines
    params = summary.get("params") or {}
    for name, sparsity in (summary.get("sparsity") or {}).items():
        count = params.get(name) or {}
        if _finite(sparsity) and count.get("total"):
            lines.append(f"{name}: {100 * float(sparsity):.1f}% of weights are zero "
                         f"({int(count['nonzero']):,} of {int(count['total']):,} nonzero)")
    return lines
