"""Plots people would rather look at than read.

Figures are drawn with :class:`matplotlib.figure.Figure` directly (no pyplot), so plotting
never switches the process's matplotlib backend and works headless.
"""
from __future__ import annotations

import math
from pathlib import Path

from .checkpoint import atomic_write_bytes_via


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



def size_columns(rows: list[dict]) -> tuple[list[str], list[str]]:
    """metrics.csv columns that say what a method did to the network: ``alive_<mlp>`` (neurons
    alive, structured pruning) and ``sparsity_<network>`` (weight sparsity), those with a value."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    alive = [k for k in keys if k.startswith("alive_") and _series(rows, k)[0]]
    sparsity = [k for k in keys if k.startswith("sparsity_") and _series(rows, k)[0]]
    return alive, sparsity


def learning_curve(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Evaluation return (mean +- std over episodes) against env steps; with a dynamic
    buffer, a panel shows its size, capacity and the policy distance it measured; with a
    pruning or sparse method, a panel shows neurons alive per MLP and weight sparsity, so the
    return can be read against the network size it was measured at."""
    pts = [(float(r["step"]), float(r["eval_return"]), float(r.get("eval_return_std", 0) or 0)) for r in rows
           if r.get("eval_return") not in (None, "") and not math.isnan(float(r["eval_return"]))]
    has_buffer = bool(_series(rows, "buffer_size")[0])
    alive, sparsity = size_columns(rows)
    has_size = bool(alive or sparsity)
    panels = 1 + has_buffer + has_size
    fig = new_figure((6, 4 + 2.5 * (panels - 1)))
    axes = fig.subplots(panels, 1, sharex=True, height_ratios=(3,) + (2,) * (panels - 1)) if panels > 1 \
        else [fig.subplots()]
    ax = axes[0]
    if pts:
        steps, means, stds = zip(*pts)
        ax.plot(steps, means, marker="o", ms=3)
        ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.2)
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if has_buffer:
        axb = axes[1]
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
    if has_size:
        axs = axes[-1]
        for column in alive:
            axs.plot(*_series(rows, column), marker="o", ms=3, label=column[len("alive_"):])
        axs.grid(alpha=0.3)
        if alive:
            axs.set_ylabel("hidden neurons alive")
            axs.legend(fontsize="small", loc="upper right")
        target = axs.twinx() if alive and sparsity else axs
        for column in sparsity:
            steps, values = _series(rows, column)
            target.plot(steps, [100 * v for v in values], linestyle="--", marker=".", ms=3,
                        label=f"{column[len('sparsity_'):]} sparsity")
        if sparsity:
            target.set_ylabel("weight sparsity (%)")
            target.legend(fontsize="small", loc="lower right")
    axes[-1].set_xlabel("environment steps")
    fig.tight_layout()
    # Atomic like the checkpoints: a kill while saving never leaves a truncated PNG.
    atomic_write_bytes_via(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
