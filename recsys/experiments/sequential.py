"""An always-valid test of two proportions: the mixture sequential probability ratio test (mSPRT).

A fixed-horizon test is valid once, at the planned sample size; looked at every day and stopped at the first
p < alpha, its false-positive rate grows with the number of looks (21 % after 14 daily looks at alpha = 0.05 in
tests/unit/test_ab_stats.py).
The mSPRT (Robbins 1970) as Johari, Pekelis & Walsh apply it to A/B tests ("Always valid inference: bringing
sequential analysis to A/B testing", arXiv:1512.04922, revised 2017 as "... continuous monitoring of A/B tests")
gives a p-value that may be read at any time, as often as wanted: P(it ever falls to alpha | no difference) <= alpha.

With the difference of the two rates ``d = p_t - p_c`` asymptotically normal with variance
``V = p_c (1 - p_c) / n_c + p_t (1 - p_t) / n_t`` (the paper's normal approximation for two streams, with the
variance plugged in), and a normal mixing distribution ``N(0, tau2)`` over the true difference under the
alternative, the mixture likelihood ratio against "no difference" has the closed form

    Lambda = sqrt(V / (V + tau2)) * exp(tau2 * d**2 / (2 * V * (V + tau2)))

and the always-valid p-value after look ``n`` is ``min(1, 1 / Lambda_1, ..., 1 / Lambda_n)``: a running minimum,
so a result once significant stays so. :func:`msprt` takes the previous look's result and carries that minimum;
:func:`msprt_series` folds a whole series of cumulative looks. ``tau2`` is the prior variance of the absolute
difference: any ``tau2 > 0`` keeps the guarantee, and a value near the squared effect one hopes to detect gives
the most power there. It must be fixed before the data are seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from recsys.experiments.counts import Metric, Model, VariantCounts


class SequentialResult(Model):
    """The mSPRT after one look: the evidence at this look and the always-valid p-value over all looks so far."""

    metric: Metric
    tau2: float = Field(gt=0)
    alpha: float = Field(gt=0, lt=1)
    looks: int = Field(ge=1, description="how many looks the p-value covers (this one included)")
    control_impressions: int
    treatment_impressions: int
    abs_diff: float = Field(description="treatment rate − control rate at this look")
    likelihood_ratio_log: float = Field(description="log of the mixture likelihood ratio at this look")
    p_value_look: float = Field(description="min(1, 1 / Lambda) at this look alone")
    p_value: float = Field(description="the always-valid p-value: the minimum of p_value_look over the looks")
    ci: tuple[float, float] = Field(description="always-valid (1 − alpha) interval of the difference at this look")
    significant: bool = Field(description="p_value <= alpha")
    first_significant_look: int | None = Field(None, description="the look at which p_value first fell <= alpha")


def _variance(control: VariantCounts, treatment: VariantCounts, metric: Metric) -> tuple[float, float]:
    """(difference of the rates, its plug-in variance)."""
    pc = control.successes(metric) / control.impressions
    pt = treatment.successes(metric) / treatment.impressions
    return pt - pc, pc * (1 - pc) / control.impressions + pt * (1 - pt) / treatment.impressions


def msprt(control: VariantCounts, treatment: VariantCounts, tau2: float, alpha: float = 0.05,
          metric: Metric = "ctr", previous: SequentialResult | None = None) -> SequentialResult:
    """The mSPRT at the current look, from the cumulative counts so far.

    Pass the previous look's result as ``previous`` (it is JSON: yesterday's report can be read back) so that
    ``p_value`` is the running minimum that makes it always valid; without it, this is the first look. A daily
    analysis is then ``today = msprt(c, t, tau2, previous=yesterday)``, and stopping at the first
    ``today.significant`` keeps the false-positive rate at most ``alpha``.
    """
    if tau2 <= 0 or not math.isfinite(tau2):
        raise ValueError(f"tau2 must be a finite number > 0, got {tau2}")
    control.require_impressions()
    treatment.require_impressions()
    if previous is not None:
        if (previous.metric, previous.tau2) != (metric, tau2):
            raise ValueError(f"previous look was metric={previous.metric!r}, tau2={previous.tau2}; this one is "
                             f"metric={metric!r}, tau2={tau2}: the running minimum needs the same test")
        if (previous.control_impressions > control.impressions
                or previous.treatment_impressions > treatment.impressions):
            raise ValueError("impressions went down since the previous look: looks must be cumulative counts "
                             "since the experiment's start, not per-day counts")
    diff, var = _variance(control, treatment, metric)
    if var == 0:
        # both rates are 0 (or both 1): the data carry no evidence either way
        log_lr, half = 0.0, math.inf
    else:
        # in log space: the exponent overflows a float once the evidence is overwhelming
        log_lr = 0.5 * math.log(var / (var + tau2)) + tau2 * diff**2 / (2 * var * (var + tau2))
        # the interval is every difference theta0 whose own mixture ratio stays below 1 / alpha
        half = math.sqrt(var * (var + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((var + tau2) / var)))
    p_look = min(1.0, math.exp(-log_lr))
    p_value = p_look if previous is None else min(previous.p_value, p_look)
    looks = 1 if previous is None else previous.looks + 1
    first = previous.first_significant_look if previous is not None else None
    if first is None and p_value <= alpha:
        first = looks
    low, high = (-1.0, 1.0) if math.isinf(half) else (max(-1.0, diff - half), min(1.0, diff + half))
    return SequentialResult(metric=metric, tau2=tau2, alpha=alpha, looks=looks,
                            control_impressions=control.impressions, treatment_impressions=treatment.impressions,
                            abs_diff=diff, likelihood_ratio_log=log_lr, p_value_look=p_look, p_value=p_value,
                            ci=(low, high), significant=p_value <= alpha, first_significant_look=first)


def msprt_series(looks: Sequence[tuple[VariantCounts, VariantCounts]], tau2: float, alpha: float = 0.05,
                 metric: Metric = "ctr") -> list[SequentialResult]:
    """The mSPRT after each look of a series of cumulative ``(control, treatment)`` counts, in order."""
    results: list[SequentialResult] = []
    for control, treatment in looks:
        results.append(msprt(control, treatment, tau2, alpha, metric, results[-1] if results else None))
    return results
