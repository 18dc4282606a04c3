"""Plots people would rather look at than read.

Figures are drawn with :class:`matplotlib.figure.Figure` directly (no pyplot), so plotting
never switches the process's matplotlib backend and works headless.
"""
from __future__ import annotations

import math
from pathlib import Path

from .atomic import atomic_write


def new_figure(figsize=(6, 4)):
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)

#: metrics.csv columns of the dynamic buffer's latest check (see buffers.DynamicCapacity)
BUFFER_COLUMNS = ("buffer_size", "buffer_capacity", "policy_distance")


def _series(rows: list[dict], column: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows where ``column`` holds a finite number."""
    steps, values = [], []
    for r in rows:
        try:
            v = float(r.get(column, ""))
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            steps.append(float(r["step"]))
            values.append(v)
    return steps, values



def learning_curve(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Evaluation return (mean +- std over episodes) against env steps; with a dynamic
    buffer, a second panel shows its size, capacity and the policy distance it measured."""
    pts = [(float(r["step"]), float(r["eval_return"]), float(r.get("eval_return_std", 0) or 0)) for r in rows
           if r.get("eval_return") not in (None, "") and not math.isnan(float(r["eval_return"]))]
    has_buffer = bool(_series(rows, "buffer_size")[0])
    if has_buffer:
        fig = new_figure((6, 6.5))
        ax, axb = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    else:
        fig = new_figure((6, 4))
        ax = fig.subplots()
    if pts:
        steps, means, stds = zip(*pts)
        ax.plot(steps, means, marker="o", ms=3)
        ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.2)
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if has_buffer:
        axb.plot(*_series(rows, "buffer_size"), marker="o", ms=3, label="size")
        axb.plot(*_series(rows, "buffer_capacity"), linestyle="--", label="capacity")
        axb.set_ylabel("replay buffer (transitions)")
        axb.grid(alpha=0.3)
        dist = _series(rows, "policy_distance")
        if dist[0]:
            axd = axb.twinx()
            axd.plot(*dist, color="tab:red", marker=".", ms=3, linewidth=1, label="policy distance")
            axd.set_ylabel("policy distance (latest check)", color="tab:red")
        axb.legend(fontsize="small", loc="lower left")
        axb.set_xlabel("environment steps")
    else:
        ax.set_xlabel("environment steps")
    fig.tight_layout()
    # Atomic like the checkpoints: a kill while saving never leaves a truncated PNG.
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
