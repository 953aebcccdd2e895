"""Paired bootstrap confidence intervals for comparing two models on the same users."""

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

    ``diff`` is mean(a) - mean(b); ``rel_gain`` is mean(a) / mean(b) - 1 (NaN when mean(b) == 0).
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

    def to_dict(self) -> dict[str, float | int]:
        """Return the fields as a plain dict (e.g. for MLflow metrics or a JSON report)."""
        return dataclasses.asdict(self)


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _rel_gain(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    # Resamples whose mean(b) is 0 yield inf/NaN; that is the honest answer for a ratio.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(a, axis=axis) / np.mean(b, axis=axis) - 1.0


def _interval(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
    method: Method,
) -> tuple[float, float]:
    """Paired bootstrap CI of ``statistic``; BCa falls back to percentile when it degenerates."""
    batch = max(1, _MAX_BATCH_ELEMENTS // a.size)
    methods: list[Method] = [method] if method == "percentile" else [method, "percentile"]
    low = high = float("nan")
    for current in methods:
        with warnings.catch_warnings():
            # BCa signals degenerate data (e.g. constant resample distribution) by warning and
            # returning NaN bounds; we detect the NaN and retry with percentile instead.
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(
                (a, b),
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
) -> PairedDifference:
    """Compare per-user metric values of model A and model B with a paired bootstrap.

    ``a[i]`` and ``b[i]`` must belong to the same user. Users are resampled jointly, so the
    intervals account for the correlation between the two models. Returns CIs for
    mean(a) - mean(b) and for the relative gain mean(a) / mean(b) - 1.

    BCa (the default) needs a jackknife whose cost grows quadratically with the number of users;
    pass ``method="percentile"`` for very large evaluations. BCa falls back to percentile on
    degenerate data. Raises ValueError for mismatched lengths, n < 2 or non-finite values.
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

    mean_a, mean_b = float(x.mean()), float(y.mean())
    diff = mean_a - mean_b
    rel_gain = mean_a / mean_b - 1.0 if mean_b != 0 else float("nan")
    interval = functools.partial(
        _interval, x, y, n_resamples=n_resamples, confidence=confidence, seed=seed, method=method
    )

    differences = x - y
    if np.ptp(differences) == 0:
        # Every resample has the same mean difference; report the exact point instead of
        # letting float round-off (percentile) or NaN (BCa) leak into the interval.
        ci_low = ci_high = diff
    else:
        ci_low, ci_high = interval(_mean_diff)

    if np.isnan(rel_gain):
        rel_ci_low = rel_ci_high = float("nan")
    elif np.array_equal(x, y):
        rel_ci_low = rel_ci_high = 0.0
    else:
        rel_ci_low, rel_ci_high = interval(_rel_gain)

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
    )
