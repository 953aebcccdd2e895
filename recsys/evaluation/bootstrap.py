"""Paired bootstrap confidence intervals for comparing two models on the same users.

With ``clusters`` the resampled unit is a cluster (a user's rows over several backtest cuts): rows of one user are
not independent, so resampling them one by one would make the interval too narrow (a cluster bootstrap, as in
Field & Welsh 2007). The statistics are then ratios of cluster sums: the mean over the rows of the resampled
clusters.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

Method = Literal["BCa", "percentile"]

# Upper bound on resample elements materialised per vectorised call: BCa's jackknife would
# otherwise allocate an n x (n - 1) array, which is gigabytes for a few tens of thousands of users.
_MAX_BATCH_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class PairedDifference:
    """Point estimates and confidence intervals for model A versus model B.

    ``diff`` is mean(a) - mean(b); ``rel_gain`` is mean(a) / mean(b) - 1 (NaN when mean(b) == 0); ``n`` counts the
    paired values and ``clusters`` the resampled clusters (None: the values were resampled).
    """

    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    rel_gain: float
    rel_ci_low: float
    rel_ci_high: float
    n: int
    confidence: float
    clusters: int | None = None

    def to_dict(self) -> dict[str, float | int]:
        """Return the fields as a plain dict (e.g. for MLflow metrics or a JSON report); ``clusters`` only when
        clusters were resampled."""
        out = dataclasses.asdict(self)
        if self.clusters is None:
            del out["clusters"]
        return out


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _rel_gain(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    # Resamples whose mean(b) is 0 yield inf/NaN; that is the honest answer for a ratio.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(a, axis=axis) / np.mean(b, axis=axis) - 1.0


def _cluster_diff(a: np.ndarray, b: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
    return (np.sum(a, axis=axis) - np.sum(b, axis=axis)) / np.sum(n, axis=axis)


def _cluster_rel_gain(a: np.ndarray, b: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(a, axis=axis) / np.sum(b, axis=axis) - 1.0


def _interval(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
    method: Method,
) -> tuple[float, float]:
    """Paired bootstrap CI of ``statistic``; BCa falls back to percentile when it degenerates."""
    batch = max(1, _MAX_BATCH_ELEMENTS // samples[0].size)
    methods: list[Method] = [method] if method == "percentile" else [method, "percentile"]
    low = high = float("nan")
    for current in methods:
        with warnings.catch_warnings():
            # BCa signals degenerate data (e.g. constant resample distribution) by warning and
            # returning NaN bounds; we detect the NaN and retry with percentile instead.
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(
                samples,
                statistic,
                n_resamples=n_resamples,
                batch=batch,
                vectorized=True,
                paired=True,
                confidence_level=confidence,
                method=current,
                # Same seed for both statistics so they share the same resampled users.
                rng=np.random.default_rng(seed),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            break
    return low, high


def paired_bootstrap(
    a: ArrayLike,
    b: ArrayLike,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: Method = "BCa",
    clusters: ArrayLike | None = None,
) -> PairedDifference:
    """Compare per-user metric values of model A and model B with a paired bootstrap.

    ``a[i]`` and ``b[i]`` must belong to the same user. Users are resampled jointly, so the
    intervals account for the correlation between the two models. Returns CIs for
    mean(a) - mean(b) and for the relative gain mean(a) / mean(b) - 1.

    BCa (the default) needs a jackknife whose cost grows quadratically with the number of users;
    pass ``method="percentile"`` for very large evaluations. BCa falls back to percentile on
    degenerate data. ``clusters[i]`` (optional) names the cluster of row i (for example its user, whose rows over
    several backtest cuts are correlated): whole clusters are resampled, and ``n`` counts the clusters. Raises
    ValueError for mismatched lengths, n < 2 or non-finite values.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"a and b must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.size != y.size:
        raise ValueError(f"a and b must have the same length, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"need at least 2 paired values, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("a and b must contain only finite values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")

    samples: tuple[np.ndarray, ...] = (x, y)
    diff_stat: Callable[..., np.ndarray] = _mean_diff
    rel_stat: Callable[..., np.ndarray] = _rel_gain
    n_clusters = None
    if clusters is not None:
        labels = np.asarray(clusters)
        if labels.shape != x.shape:
            raise ValueError(f"clusters must have one label per value, got shape {labels.shape} for {x.size} values")
        codes = np.unique(labels, return_inverse=True)[1].ravel()
        n_clusters = int(codes.max()) + 1
        if n_clusters < 2:
            raise ValueError(f"need at least 2 clusters, got {n_clusters}")
        samples = (np.bincount(codes, x), np.bincount(codes, y), np.bincount(codes).astype(float))
        diff_stat, rel_stat = _cluster_diff, _cluster_rel_gain

    mean_a, mean_b = float(x.mean()), float(y.mean())
    diff = mean_a - mean_b
    rel_gain = mean_a / mean_b - 1.0 if mean_b != 0 else float("nan")
    interval = functools.partial(
        _interval, samples, n_resamples=n_resamples, confidence=confidence, seed=seed, method=method
    )

    differences = x - y
    if np.ptp(differences) == 0:
        # Every resample has the same mean difference; report the exact point instead of
        # letting float round-off (percentile) or NaN (BCa) leak into the interval.
        ci_low = ci_high = diff
    else:
        ci_low, ci_high = interval(diff_stat)

    if np.isnan(rel_gain):
        rel_ci_low = rel_ci_high = float("nan")
    elif np.array_equal(x, y):
        rel_ci_low = rel_ci_high = 0.0
    else:
        rel_ci_low, rel_ci_high = interval(rel_stat)

    return PairedDifference(
        mean_a=mean_a,
        mean_b=mean_b,
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        rel_gain=rel_gain,
        rel_ci_low=rel_ci_low,
        rel_ci_high=rel_ci_high,
        n=int(x.size),
        confidence=float(confidence),
        clusters=n_clusters,
    )
