"""IQM and bootstrap CIs against hand / independent numpy computations."""
import numpy as np
import pytest

from sparserl.bench.stats import bootstrap_ci, iqm, mean_ci, stratified_bootstrap_ci


def test_iqm_by_hand():
    # n = 8: drop floor(8/4) = 2 from each end; sorted 1 2 | 3 4 5 7 | 10 100
    assert iqm([10, 1, 7, 3, 100, 4, 5, 2]) == pytest.approx((3 + 4 + 5 + 7) / 4)
    # n = 10: drop floor(2.5) = 2 from each end -> 3..8
    assert iqm(list(range(10, 0, -1))) == pytest.approx(5.5)
    # n = 5: drop 1 from each end
    assert iqm([0, 50, 60, 70, 1000]) == pytest.approx(60.0)
    # n < 4: nothing dropped
    assert iqm([1, 2, 9]) == pytest.approx(4.0)
    assert np.isnan(iqm([]))


def test_bootstrap_brackets_mean_and_is_deterministic():
    x = [95.0, 101.0, 88.0, 104.0, 99.0, 92.0, 110.0, 97.0]
    lo, hi = bootstrap_ci(x, "mean", n_boot=5000, seed=7)
    assert lo < np.mean(x) < hi
    assert (lo, hi) == bootstrap_ci(x, "mean", n_boot=5000, seed=7)
    m, lo2, hi2 = mean_ci(x, n_boot=5000, seed=7)
    assert (m, lo2, hi2) == (pytest.approx(np.mean(x)), lo, hi)


def test_bootstrap_identical_values_is_degenerate():
    assert bootstrap_ci([42.0] * 6, "mean", n_boot=1000) == (42.0, 42.0)
    assert bootstrap_ci([3.5], "iqm", n_boot=1000) == (3.5, 3.5)
    assert all(np.isnan(bootstrap_ci([], "mean")))


def test_bootstrap_matches_independent_numpy_percentile_bootstrap():
    x = np.array([3.0, 7.0, 1.0, 9.0, 4.0, 6.0, 2.0])
    n_boot, seed = 4000, 123
    rng = np.random.default_rng(seed)
    resamples = x[rng.integers(0, len(x), size=(n_boot, len(x)))]
    expected_mean = np.percentile(resamples.mean(axis=1), [2.5, 97.5])
    assert bootstrap_ci(x, "mean", n_boot=n_boot, seed=seed) == pytest.approx(tuple(expected_mean))
    # IQM statistic: trim floor(7/4) = 1 from each end of each sorted resample
    srt = np.sort(resamples, axis=1)
    expected_iqm = np.percentile(srt[:, 1:6].mean(axis=1), [2.5, 97.5])
    assert bootstrap_ci(x, "iqm", n_boot=n_boot, seed=seed) == pytest.approx(tuple(expected_iqm))


def test_stratified_bootstrap_matches_independent_numpy():
    groups = {"b_env": [90.0, 95.0, 100.0], "a_env": [80.0, 120.0, 100.0, 110.0]}
    n_boot, seed = 3000, 5
    rng = np.random.default_rng(seed)
    parts = []
    for env in sorted(groups):  # strata in sorted order, one draw each
        a = np.array(groups[env])
        parts.append(a[rng.integers(0, len(a), size=(n_boot, len(a)))])
    pooled = np.sort(np.concatenate(parts, axis=1), axis=1)  # 7 runs -> trim 1 each end
    expected = np.percentile(pooled[:, 1:6].mean(axis=1), [2.5, 97.5])
    got = stratified_bootstrap_ci(groups, "iqm", n_boot=n_boot, seed=seed)
    assert got == pytest.approx(tuple(expected))
    all_runs = groups["a_env"] + groups["b_env"]
    assert got[0] <= iqm(all_runs) <= got[1]
