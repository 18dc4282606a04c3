"""Plots people would rather look at than read (matplotlib, headless)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .checkpoint import atomic_write_bytes_via  # noqa: E402


def learning_curve(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Evaluation return (mean +- std over episodes) against env steps."""
    pts = [(float(r["step"]), float(r["eval_return"]), float(r.get("eval_return_std", 0) or 0)) for r in rows
           if r.get("eval_return") not in (None, "") and not math.isnan(float(r["eval_return"]))]
    fig, ax = plt.subplots(figsize=(6, 4))
    if pts:
        steps, means, stds = zip(*pts)
        ax.plot(steps, means, marker="o", ms=3)
        ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Atomic like the checkpoints: a kill while saving never leaves a truncated PNG.
    atomic_write_bytes_via(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)
