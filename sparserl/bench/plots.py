"""Report plots (matplotlib, Agg backend): learning curves with CI bands, return vs sparsity,
dynamic-buffer size and policy distance."""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .report_data import LATE_WINDOW, ci_columns, method_sort_key, read_metrics


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save(plt, fig, path: Path) -> Path:
    """Lay out, write and close one report figure (every report plot is saved the same way)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def read_curve(cell_dir: Path, column: str = "eval_return", warn: bool = True) -> pd.Series | None:
    """``column`` (default ``eval_return``) indexed by ``step`` from a run's metrics.csv
    (None if unusable or absent)."""
    path = cell_dir / "metrics.csv"
    try:
        df = read_metrics(path, warn=False)  # the report's read of the same file warns once
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    if "step" not in df.columns or column not in df.columns:
        if warn:
            print(f"warning: {path} lacks step/{column} columns", file=sys.stderr)
        return None
    df = df[["step", column]].apply(pd.to_numeric, errors="coerce").dropna()
    if df.empty:
        return None
    return df.groupby("step")[column].last()


def curve_band(curves: list[pd.Series], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean and percentile-bootstrap 95 % CI over seeds at each step (seeds present there)."""
    mat = pd.concat(curves, axis=1).sort_index()
    rows = []
    for step, vals in mat.iterrows():
        v = vals.dropna().to_numpy(float)
        lo, hi = stats.bootstrap_ci(v, "mean", n_boot=n_boot, seed=seed)
        rows.append({"step": step, "mean": v.mean(), "low": lo, "high": hi, "n": v.size})
    return pd.DataFrame(rows)


def plot_learning_curves(data, out_dir: Path, n_boot: int = 2000) -> list[Path]:
    """One figure per (algo, env): a line per method with its 95 % CI band over seeds."""

    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    runs = data.runs
    for (algo, env), grp in runs.groupby(["algo", "env"], sort=True):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        drawn = False
        for label in sorted(set(grp["label"]), key=method_sort_key):
            curves = [c for c in (read_curve(data.run_dir / d)
                                  for d in grp.loc[grp["label"] == label, "dir"]) if c is not None]
            if not curves:
                continue
            band = curve_band(curves, n_boot=n_boot)
            line, = ax.plot(band["step"], band["mean"], label=f"{label} (n={len(curves)})")
            ax.fill_between(band["step"], band["low"], band["high"], color=line.get_color(),
                            alpha=0.2, linewidth=0)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        _label(ax, f"{algo.upper()} on {env}", "environment steps", "evaluation return (mean, 95% CI)")
        paths.append(_save(plt, fig, out_dir / f"learning_curves_{_safe(algo)}_{_safe(env)}.png"))
    return paths


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    """The figures' shared look: title, axis labels, a light grid and a small legend."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def _ci_errors(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """matplotlib's (2, n) yerr from a CI; a missing or inverted bound draws no bar."""
    err = np.vstack([y - lo, hi - y])
    return np.where(np.isfinite(err), np.maximum(err, 0.0), 0.0)


def plot_return_vs_sparsity(data, out_dir: Path) -> list[Path]:
    """One figure per algo: % of dense vs sparsity (1 - size ratio), a series per env."""
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    t = data.table
    for algo, ta in t.groupby("algo", sort=True):
        ta = ta[np.isfinite(ta["pct_of_dense"].astype(float))
                & np.isfinite(ta["size_ratio"].astype(float))]
        if ta.empty:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for env, te in ta.groupby("env", sort=True):
            x = 1.0 - te["size_ratio"].to_numpy(float)
            y = te["pct_of_dense"].to_numpy(float)
            err = _ci_errors(y, te["pct_ci_low"].to_numpy(float), te["pct_ci_high"].to_numpy(float))
            ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=env)
            for xi, yi, lab in zip(x, y, te["label"]):
                if math.isfinite(xi) and math.isfinite(yi):
                    ax.annotate(lab, (xi, yi), textcoords="offset points", xytext=(4, 4),
                                fontsize=7)
        ax.axhline(100.0, color="gray", linestyle="--", linewidth=1)
        _label(ax, f"{algo.upper()}: return vs sparsity",
               "sparsity = 1 - size ratio (nonzero / dense weights)", "final return, % of dense (95% CI)")
        paths.append(_save(plt, fig, out_dir / f"return_vs_sparsity_{_safe(algo)}.png"))
    return paths


def tradeoff_points(te: pd.DataFrame) -> pd.DataFrame | None:
    """The points of one env's trade-off curve, by neurons removed: its dense baseline's row at 0
    (100 % by definition, its CI the dense seeds' own spread) and every structured-pruning row;
    ``None`` unless the pruned rows remove at least two different fractions of the neurons (a
    point is not a curve, nor is a sweep of schedules at one target)."""
    pruned = te[np.isfinite(te["neurons_removed"].astype(float))
                & np.isfinite(te["pct_of_dense"].astype(float))].sort_values("neurons_removed")
    if pruned["neurons_removed"].astype(float).round(3).nunique() < 2:
        return None
    dense = te[te["label"] == pruned["baseline"].iloc[0]]
    return pd.concat([dense.assign(neurons_removed=0.0), pruned])


def plot_return_vs_neurons_removed(data, out_dir: Path, within: float = 95.0) -> list[Path]:
    """Structured pruning's trade-off, one figure per (algo, env) with at least two pruned
    configurations: % of dense (95% CI; final evaluation and, where the table has it, late return)
    against the fraction of hidden neurons removed, the dense
    baseline at 0 and a line at ``within`` % of dense (the paper's "slight loss", 5 %), so where a
    target fraction stops paying is read off directly rather than from a table."""

    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    t = data.table
    if "neurons_removed" not in t:
        return paths
    for (algo, env), te in t.groupby(["algo", "env"], sort=True):
        points = tradeoff_points(te)
        if points is None:
            continue
        x = 100.0 * points["neurons_removed"].to_numpy(float)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        measures = [("pct_of_dense", "final evaluation")]
        if {"pct_late_of_dense", *ci_columns("pct_late_of_dense")} <= set(points.columns):
            measures.append(("pct_late_of_dense", f"late return (evaluations in the last {LATE_WINDOW} of the steps)"))
        for i, (value, name) in enumerate(measures):
            y = points[value].to_numpy(float)
            err = _ci_errors(y, *(points[c].to_numpy(float) for c in ci_columns(value)))
            # the second measure nudged right so that the error bars stay apart
            ax.errorbar(x + 0.6 * i, y, yerr=err, fmt="o-" if i == 0 else "s--", capsize=3, color=f"C{i}",
                        label=name)
        for xi, yi, lab in zip(x, points["pct_of_dense"].to_numpy(float), points["label"]):
            ax.annotate(lab, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(100.0, color="gray", linestyle="--", linewidth=1)
        ax.axhline(within, color="C3", linestyle=":", linewidth=1, label=f"{within:g} % of dense")
        _label(ax, f"{algo.upper()} {env}: return vs neurons removed", "hidden neurons removed (%)",
               "return, % of dense (95% CI)")
        paths.append(_save(plt, fig, out_dir / f"return_vs_neurons_{_safe(algo)}_{_safe(env)}.png"))
    return paths


def plot_buffer_curves(data, out_dir: Path) -> list[Path]:
    """One figure per (algo, env) whose runs logged a dynamic buffer (metrics.csv columns
    ``buffer_size``, ``buffer_capacity``, ``policy_distance``: the latest check at each
    evaluation): buffer size and capacity, and the measured policy distance, against env
    steps, a line per method (mean over seeds)."""

    plt = _plt()
    paths = []
    for (algo, env), grp in data.runs.groupby(["algo", "env"], sort=True):
        series = {}
        for label in sorted(set(grp["label"]), key=method_sort_key):
            dirs = grp.loc[grp["label"] == label, "dir"]
            per_column = {}
            for column in ("buffer_size", "buffer_capacity", "policy_distance"):
                curves = [c for c in (read_curve(data.run_dir / d, column, warn=False) for d in dirs)
                          if c is not None]
                if curves:
                    per_column[column] = (pd.concat(curves, axis=1).sort_index().mean(axis=1), len(curves))
            if "buffer_size" in per_column:
                series[label] = per_column
        if not series:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        fig, (ax_size, ax_dist) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
        for label, per_column in series.items():
            size, n = per_column["buffer_size"]
            line, = ax_size.plot(size.index, size.to_numpy(float), label=f"{label} (n={n})")
            if "buffer_capacity" in per_column:
                cap, _ = per_column["buffer_capacity"]
                ax_size.plot(cap.index, cap.to_numpy(float), color=line.get_color(), linestyle="--",
                             linewidth=1)
            if "policy_distance" in per_column:
                dist, _ = per_column["policy_distance"]
                ax_dist.plot(dist.index, dist.to_numpy(float), color=line.get_color())
        ax_size.set_title(f"{algo.upper()} on {env}: dynamic replay buffer")
        ax_size.set_ylabel("size (solid), capacity (dashed)")
        ax_dist.set_ylabel("policy distance")
        ax_dist.set_xlabel("environment steps")
        for ax in (ax_size, ax_dist):
            ax.grid(alpha=0.3)
        ax_size.legend(fontsize="small")
        paths.append(_save(plt, fig, out_dir / f"buffer_{_safe(algo)}_{_safe(env)}.png"))
    return paths
