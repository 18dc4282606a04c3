"""Aggregate statistics used by reports: IQM and percentile-bootstrap confidence intervals.

Conventions (exact, so that numbers can be recomputed by hand):

* **IQM** (interquartile mean, as rliable's ``metrics.aggregate_iqm``, i.e.
  ``scipy.stats.trim_mean(x, 0.25)`` on the flattened scores): sort the ``n`` scores, drop
  ``k = floor(0.25 * n)`` from each end, and average the remaining ``n - 2k``.  With ``n < 4``
  nothing is dropped (plain mean).
* **Percentile bootstrap** of a statistic over runs: ``rng = numpy.random.default_rng(seed)``;
  draw one index matrix ``rng.integers(0, n, size=(n_boot, n))``; evaluate the statistic on
  every resample (row); the CI is ``numpy.percentile(stats, [50 - ci/2, 50 + ci/2])`` with the
  default linear interpolation.  Identical values give a degenerate interval.
* **Stratified bootstrap** (rliable's ``StratifiedBootstrap``, used for the IQM across envs):
  runs are resampled with replacement *within each env* (stratum), in sorted env order, one
  ``rng.integers(0, n_env, size=(n_boot, n_env))`` draw per env; the resampled strata are
  concatenated and the statistic (IQM) is taken over the pooled runs.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

DEFAULT_BOOT = 10_000


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: mean after trimming ``floor(n/4)`` values from each end."""
    x = np.sort(np.asarray(values, dtype=float).ravel())
    n = x.size
    if n == 0:
        return float("nan")
    k = int(0.25 * n)
    return float(x[k:n - k].mean())


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of each row of a 2-D array (vectorised)."""
    x = np.sort(x, axis=1)
    n = x.shape[1]
    k = int(0.25 * n)
    return x[:, k:n - k].mean(axis=1)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def bootstrap_ci(values: Sequence[float], statistic: str | Callable = "mean",
                 n_boot: int = DEFAULT_BOOT, ci: float = 95.0, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of ``statistic`` ("mean", "iqm", or ``f(2-D array) -> 1-D``
    applied row-wise) over the runs in ``values``.  NaN for no values."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        return float("nan"), float("nan")
    fn = _row_stat(statistic)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    stats = fn(x[idx])
    lo, hi = np.percentile(stats, [50.0 - ci / 2.0, 50.0 + ci / 2.0])
    return float(lo), float(hi)


def stratified_bootstrap_ci(groups: Mapping[str, Sequence[float]], statistic: str | Callable = "iqm",
                            n_boot: int = DEFAULT_BOOT, ci: float = 95.0,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of ``statistic`` over pooled runs, resampling within each group."""
    arrays = [np.asarray(groups[k], dtype=float).ravel() for k in sorted(groups)]
    arrays = [a for a in arrays if a.size]
    if sum(a.size for a in arrays) < 2:  # no interval from one run (see mean_ci)
        return float("nan"), float("nan")
    fn = _row_stat(statistic)
    rng = np.random.default_rng(seed)
    parts = [a[rng.integers(0, a.size, size=(n_boot, a.size))] for a in arrays]
    stats = fn(np.concatenate(parts, axis=1))
    lo, hi = np.percentile(stats, [50.0 - ci / 2.0, 50.0 + ci / 2.0])
    return float(lo), float(hi)


def _row_stat(statistic: str | Callable) -> Callable[[np.ndarray], np.ndarray]:
    if callable(statistic):
        return statistic
    if statistic == "mean":
        return _mean_rows
    if statistic == "iqm":
        return _iqm_rows
    raise ValueError(f"unknown statistic {statistic!r} (mean, iqm, or a callable)")


def mean_ci(values: Sequence[float], n_boot: int = DEFAULT_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(mean, CI low, CI high) over runs; NaN triple for no values, and NaN bounds for one value
    (resampling a single run gives a zero-width interval, which would read as certainty)."""
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan"), float("nan")
    lo, hi = bootstrap_ci(x, "mean", n_boot=n_boot, seed=seed)
    return float(x.mean()), lo, hi
