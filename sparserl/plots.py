"""Plots people would rather look at than read.

Figures are drawn with :class:`matplotlib.figure.Figure` directly (no pyplot), so plotting
never switches the process's matplotlib backend and works headless.
"""
from __future__ import annotations

import math
from pathlib import Path


def new_figure(figsize=(6, 4)):
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def learning_curve(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Evaluation return (mean +- std over episodes) against env steps."""
    pts = [(float(r["step"]), float(r["eval_return"]), float(r.get("eval_return_std", 0) or 0)) for r in rows
           if r.get("eval_return") not in (None, "") and not math.isnan(float(r["eval_return"]))]
    fig = new_figure((6, 4))
    ax = fig.subplots()
    if pts:
        steps, means, stds = zip(*pts)
        ax.plot(steps, means, marker="o", ms=3)
        ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
