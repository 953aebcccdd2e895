"""Tests for recsys.evaluation.bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.evaluation.bootstrap import PairedDifference, paired_bootstrap


def test_constant_shift_gives_tight_interval() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(200)
    b = a + 0.25
    result = paired_bootstrap(a, b, n_resamples=200)
    assert result.diff == pytest.approx(-0.25)
    assert result.ci_low <= -0.25 + 1e-9 and result.ci_high >= -0.25 - 1e-9
    assert result.ci_high - result.ci_low < 1e-9


def test_exactly_constant_differences_return_point_interval() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    result = paired_bootstrap(a, a - 1.0, n_resamples=100)
    assert result.ci_low == result.ci_high == result.diff == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_clearly_better_model_interval_above_zero(method: str) -> None:
    rng = np.random.default_rng(42)
    a = rng.normal(1.0, 1.0, 500)
    b = a - 0.5 + rng.normal(0.0, 0.3, 500)
    result = paired_bootstrap(a, b, n_resamples=500, method=method)  # type: ignore[arg-type]
    assert 0.0 < result.ci_low < result.diff < result.ci_high
    assert result.rel_gain > 0 and result.rel_ci_low > 0
    assert result.ci_low < 0.5 < result.ci_high


def test_identical_arrays() -> None:
    a = np.linspace(0.0, 1.0, 50)
    result = paired_bootstrap(a, a, n_resamples=100)
    assert result.diff == 0.0
    assert result.ci_low == result.ci_high == 0.0
    assert result.rel_gain == 0.0
    assert result.rel_ci_low == result.rel_ci_high == 0.0


def test_degenerate_bca_falls_back_to_percentile() -> None:
    # a proportional to b makes every resampled ratio identical, so the BCa jackknife
    # acceleration is 0/0 and scipy returns NaN bounds.
    rng = np.random.default_rng(5)
    b = rng.random(40) + 0.1
    result = paired_bootstrap(2.0 * b, b, n_resamples=200, method="BCa")
    assert result.rel_gain == pytest.approx(1.0)
    assert result.rel_ci_low == pytest.approx(1.0) and result.rel_ci_high == pytest.approx(1.0)
    assert result.ci_low < result.diff < result.ci_high


def test_sparse_binary_values_give_finite_interval() -> None:
    a = np.zeros(30)
    a[0] = 1.0
    result = paired_bootstrap(a, np.zeros(30), n_resamples=200)
    assert np.isfinite(result.ci_low) and np.isfinite(result.ci_high)
    assert 0.0 <= result.ci_low <= result.diff <= result.ci_high <= 1.0


def test_zero_baseline_gives_nan_relative_gain() -> None:
    result = paired_bootstrap([0.5, 1.0, 0.0], [0.0, 0.0, 0.0], n_resamples=50)
    assert np.isnan(result.rel_gain) and np.isnan(result.rel_ci_low) and np.isnan(result.rel_ci_high)
    assert result.diff == pytest.approx(0.5)


def test_reproducible_and_serialisable() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(100), rng.random(100)
    first = paired_bootstrap(a, b, n_resamples=200, seed=7)
    assert first == paired_bootstrap(a, b, n_resamples=200, seed=7)
    as_dict = first.to_dict()
    assert list(as_dict) == [
        "mean_a", "mean_b", "diff", "ci_low", "ci_high",
        "rel_gain", "rel_ci_low", "rel_ci_high", "n", "confidence",
    ]  # fmt: skip
    assert as_dict["n"] == 100 and as_dict["confidence"] == 0.95
    assert isinstance(first, PairedDifference)


def test_singleton_clusters_resample_like_values() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.random(120), rng.random(120)
    plain = paired_bootstrap(a, b, n_resamples=300, method="percentile")
    clustered = paired_bootstrap(a, b, n_resamples=300, method="percentile", clusters=np.arange(120))
    assert clustered.clusters == 120 and plain.clusters is None
    assert clustered.to_dict()["clusters"] == 120 and "clusters" not in plain.to_dict()
    assert clustered.diff == plain.diff
    # the same resampled units give the same means, up to summation order
    assert clustered.ci_low == pytest.approx(plain.ci_low, abs=1e-3)
    assert clustered.ci_high == pytest.approx(plain.ci_high, abs=1e-3)


def test_correlated_rows_widen_the_clustered_interval() -> None:
    """Each user appears in 8 cuts with one shared effect: the rows are not independent, so resampling rows is
    too confident; resampling users is not."""
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(60), 8)
    effect = rng.normal(0.0, 1.0, 60)[users]
    b = rng.random(users.size)
    a = b + 0.1 + effect + rng.normal(0.0, 0.05, users.size)
    rows = paired_bootstrap(a, b, n_resamples=1000, method="percentile")
    by_user = paired_bootstrap(a, b, n_resamples=1000, method="percentile", clusters=users)
    assert by_user.diff == rows.diff and by_user.n == rows.n == 480 and by_user.clusters == 60
    assert (by_user.ci_high - by_user.ci_low) > 2.0 * (rows.ci_high - rows.ci_low)


def test_clustered_mean_weighs_every_row() -> None:
    """Clusters of unequal size: the point estimate and the interval are about the mean over rows."""
    a = np.array([1.0, 1.0, 1.0, 0.0, 0.5, 0.2])
    b = np.zeros(6)
    result = paired_bootstrap(a, b, n_resamples=500, clusters=["u", "u", "u", "v", "w", "w"])
    assert result.diff == pytest.approx(a.mean()) and result.clusters == 3
    assert 0.0 <= result.ci_low <= result.diff <= result.ci_high <= 1.0


def test_bad_clusters_raise() -> None:
    with pytest.raises(ValueError, match="one label per value"):
        paired_bootstrap([1.0, 2.0, 3.0], [0.0, 1.0, 1.0], clusters=[1, 2])
    with pytest.raises(ValueError, match="at least 2 clusters"):
        paired_bootstrap([1.0, 2.0, 3.0], [0.0, 1.0, 1.0], clusters=[7, 7, 7])


@pytest.mark.parametrize(
    ("a", "b", "kwargs"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], {}),
        ([1.0], [2.0], {}),
        ([1.0, np.nan], [1.0, 2.0], {}),
        ([1.0, 2.0], [1.0, np.inf], {}),
        ([[1.0, 2.0]], [[1.0, 2.0]], {}),
        ([1.0, 2.0], [2.0, 1.0], {"confidence": 1.5}),
        ([1.0, 2.0], [2.0, 1.0], {"n_resamples": 0}),
        ([1.0, 2.0], [2.0, 1.0], {"method": "basic"}),
    ],
)
def test_invalid_inputs_raise(a: list[float], b: list[float], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, **kwargs)  # type: ignore[arg-type]
