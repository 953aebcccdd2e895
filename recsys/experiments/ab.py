"""A/B statistics over per-variant counts: the sample-size plan, the SRM check, the comparison and the decision.

Everything here is a pure function of counts returning a JSON-serialisable pydantic model, and every test is the
field's library function (statsmodels, scipy) rather than a formula written out again; only the always-valid
sequential test, which no library has, lives in :mod:`recsys.experiments.sequential`. :func:`analyse` runs the
whole chain for one experiment and :func:`decide` turns its parts into promote / keep / inconclusive.

The tests assume shares fixed for the whole window (``allocation: hash``): under a bandit the shares move with the
data, so neither the SRM check against the configured shares nor the pooled comparison is valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import Field
from scipy.stats import chisquare
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_effectsize, proportions_ztest

from recsys.experiments.counts import Metric, Model, VariantCounts
from recsys.experiments.sequential import SequentialResult, msprt, msprt_series
from recsys.schema import CHALLENGER, CHAMPION

__all__ = ["ABReport", "AbConfig", "Comparison", "Decision", "SampleSizePlan", "SequentialResult", "SrmCheck",
           "VariantCounts", "analyse", "compare", "decide", "msprt", "msprt_series", "sample_size", "srm_check"]

SRM_REASON = "sample ratio mismatch"
SHARE_TOLERANCE = 1e-6


class AbConfig(Model):
    """The tunables of an A/B analysis (``params.yaml`` section ``ab:``), fixed before the experiment starts."""

    alpha: float = Field(0.05, gt=0, lt=1, description="two-sided significance level of the comparisons")
    power: float = Field(0.8, gt=0, lt=1, description="the power the sample-size plan is sized for")
    mde_relative: float = Field(0.10, gt=0, description="smallest relative lift worth detecting (0.1 = +10 %)")
    baseline_ctr: float = Field(0.08, gt=0, lt=1, description="the control's CTR the plan assumes (the "
                                "replay's list-level attributed CTR is about 8 %)")
    srm_alpha: float = Field(0.001, gt=0, lt=1, description="an SRM p-value below it blocks any decision")
    sequential: bool = Field(True, description="decide on the always-valid mSPRT (peeking allowed) "
                                                "instead of the fixed-horizon z-test at the planned size")
    tau2: float | None = Field(None, gt=0, description="mSPRT mixing variance of the absolute difference; "
                                                       "None: (baseline_ctr * mde_relative) ** 2")
    min_impressions: int = Field(1000, ge=0, description="per variant, before any decision in either mode")
    metric: Metric = Field("ctr", description="the metric the decision is made on")
    unit: Literal["clustered", "impression"] = Field(
        "clustered", description="clustered: impressions count as the independent trials they are worth (divided "
                                 "by the design effect of their users, who are what the router randomises); "
                                 "impression: every impression independent (overconfident when users come back)")
    guardrail: bool = Field(True, description="a significant drop of the other metric turns promote into keep")

    def mixing_variance(self) -> float:
        return self.tau2 if self.tau2 is not None else (self.baseline_ctr * self.mde_relative) ** 2


class SampleSizePlan(Model):
    """Impressions each variant needs for a two-sided test to detect ``mde_relative`` with ``power``."""

    baseline_rate: float
    mde_relative: float
    target_rate: float
    effect_size: float = Field(description="Cohen's h of target_rate against baseline_rate")
    alpha: float
    power: float
    ratio: float = Field(description="treatment impressions per control impression")
    control: int
    treatment: int


class SrmCheck(Model):
    """Chi-square goodness of fit of the observed per-variant counts to the configured shares."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float | None = Field(description="None when a zero-share variant was observed (p is then 0)")
    p_value: float
    alpha: float
    ok: bool


class Comparison(Model):
    """Treatment against control on one metric, fixed-horizon: z-test and intervals at level ``1 - alpha``."""

    metric: Metric
    control: str
    treatment: str
    control_impressions: int
    treatment_impressions: int
    control_rate: float
    treatment_rate: float
    abs_diff: float = Field(description="treatment rate − control rate")
    abs_diff_ci: tuple[float, float]
    relative_lift: float | None = Field(description="treatment / control − 1; None when the control rate is 0")
    relative_lift_ci: tuple[float, float] | None
    z: float
    p_value: float
    alpha: float
    significant: bool


class Decision(Model):
    decision: Literal["promote", "keep", "inconclusive"]
    mode: Literal["fixed", "sequential"]
    metric: Metric
    reasons: list[str]


class ABReport(Model):
    """Everything an experiment's analysis found, in one JSON document (pass it back as ``previous`` next time)."""

    control: str
    treatment: str
    variants: list[VariantCounts]
    rates: dict[str, dict[Metric, float | None]]
    srm: SrmCheck | None
    plan: SampleSizePlan
    ctr: Comparison | None
    conversion: Comparison | None
    sequential_ctr: SequentialResult | None = None
    sequential_conversion: SequentialResult | None = None
    decision: Decision
    config: AbConfig


def sample_size(baseline_ctr: float, mde_relative: float, alpha: float = 0.05, power: float = 0.8,
                ratio: float = 1.0) -> SampleSizePlan:
    """The planned impressions per variant, so the test runs to a size fixed in advance rather than until luck."""
    target = baseline_ctr * (1 + mde_relative)
    if not 0 < baseline_ctr < 1 or not 0 < target < 1 or mde_relative == 0:
        raise ValueError(f"baseline {baseline_ctr} and lift {mde_relative} must give two distinct rates in (0, 1)")
    # Cohen's h (arcsine scale), on which the variance of a rate does not depend on the rate
    h = float(proportion_effectsize(target, baseline_ctr))
    n = float(NormalIndPower().solve_power(effect_size=abs(h), alpha=alpha, power=power, ratio=ratio,
                                           alternative="two-sided"))
    return SampleSizePlan(baseline_rate=baseline_ctr, mde_relative=mde_relative, target_rate=target, effect_size=h,
                          alpha=alpha, power=power, ratio=ratio, control=math.ceil(n),
                          treatment=math.ceil(n * ratio))


def srm_check(observed: Mapping[str, int], expected_shares: Mapping[str, float], alpha: float = 0.001) -> SrmCheck:
    """Whether the traffic split matches the configured shares; a mismatch means the assignment or the logging is
    broken, and then no comparison of the variants can be trusted."""
    if set(observed) != set(expected_shares):
        raise ValueError(f"observed variants {sorted(observed)} differ from the configured {sorted(expected_shares)}")
    if any(s < 0 for s in expected_shares.values()) or abs(math.fsum(expected_shares.values()) - 1) > SHARE_TOLERANCE:
        raise ValueError(f"expected shares must be >= 0 and sum to 1, got {dict(expected_shares)}")
    total = sum(observed.values())
    if total <= 0:
        raise ValueError("no observations to check the sample ratio of")
    names = sorted(observed)
    expected = {v: total * expected_shares[v] for v in names}
    served = [v for v in names if expected_shares[v] > 0]
    statistic: float | None
    if any(observed[v] > 0 for v in names if expected_shares[v] == 0):
        statistic, p = None, 0.0  # traffic reached a variant configured to get none
    elif len(served) < 2:
        statistic, p = 0.0, 1.0  # a single served variant cannot be mismatched
    else:
        res = chisquare([observed[v] for v in served], [expected[v] for v in served])
        statistic, p = float(res.statistic), float(res.pvalue)
    return SrmCheck(observed=dict(sorted(observed.items())), expected=expected, statistic=statistic, p_value=p,
                    alpha=alpha, ok=p >= alpha)


def compare(control: VariantCounts, treatment: VariantCounts, metric: Metric = "ctr",
            alpha: float = 0.05) -> Comparison:
    """The fixed-horizon comparison: a pooled two-proportion z-test, a Newcombe interval of the difference and a
    log-adjusted interval of the ratio (minus 1: the relative lift). ValueError naming a variant without
    impressions."""
    control.require_impressions()
    treatment.require_impressions()
    xc, nc, xt, nt = control.successes(metric), control.impressions, treatment.successes(metric), treatment.impressions
    pc, pt = xc / nc, xt / nt
    if xc + xt in (0, nc + nt):
        z, p = 0.0, 1.0  # both rates 0 (or both 1): no variance, nothing to test
    else:
        # treatment first in every call, so that a positive z, difference or ratio - 1 means a lift
        z_raw, p_raw = proportions_ztest(np.array([xt, xc]), np.array([nt, nc]), alternative="two-sided")
        z, p = float(z_raw), float(p_raw)
    low, high = confint_proportions_2indep(xt, nt, xc, nc, compare="diff", alpha=alpha)
    lift = lift_ci = None
    if xc > 0:
        lift = pt / pc - 1
        r_low, r_high = confint_proportions_2indep(xt, nt, xc, nc, compare="ratio", alpha=alpha)
        lift_ci = (float(r_low) - 1, float(r_high) - 1)
    return Comparison(metric=metric, control=control.variant, treatment=treatment.variant,
                      control_impressions=nc, treatment_impressions=nt, control_rate=pc,
                      treatment_rate=pt, abs_diff=pt - pc, abs_diff_ci=(float(low), float(high)),
                      relative_lift=lift, relative_lift_ci=lift_ci, z=z, p_value=p, alpha=alpha,
                      significant=p < alpha)


def decide(srm: SrmCheck, plan: SampleSizePlan, primary: Comparison, config: AbConfig, *,
           sequential: SequentialResult | None = None,
           guardrail: Comparison | SequentialResult | None = None) -> Decision:
    """Promote the treatment, keep the control, or wait: a pure function of the analysis' parts, in this order.

    A failed SRM check blocks everything (the counts themselves are suspect). Below ``min_impressions`` nothing is
    decided. In fixed mode (``config.sequential`` false) the z-test is read only once the plan's size is reached,
    since reading it earlier is peeking; in sequential mode the always-valid ``sequential`` result may decide at
    any size. A significant lift promotes, a significant drop keeps, anything else is inconclusive; a
    ``guardrail`` (the other metric, same mode) that dropped significantly turns a promote into a keep.
    """
    mode: Literal["fixed", "sequential"] = "sequential" if config.sequential else "fixed"

    def verdict(decision: Literal["promote", "keep", "inconclusive"], *reasons: str) -> Decision:
        return Decision(decision=decision, mode=mode, metric=primary.metric, reasons=list(reasons))

    # first: with a broken split the counts are biased, and every later number with them
    if not srm.ok:
        return verdict("inconclusive", f"{SRM_REASON}: p = {srm.p_value:.3g} < {srm.alpha} for observed "
                                       f"{srm.observed} against expected {_rounded(srm.expected)}")
    if config.sequential and sequential is None:
        raise ValueError("sequential mode needs the mSPRT result (sequential=...)")
    n_c, n_t = primary.control_impressions, primary.treatment_impressions
    if min(n_c, n_t) < config.min_impressions:
        return verdict("inconclusive", f"too few impressions: {n_c} control, {n_t} treatment, "
                                       f"min_impressions {config.min_impressions}")
    short = f"below the plan: {n_c} of {plan.control} control, {n_t} of {plan.treatment} treatment impressions"
    planned = n_c >= plan.control and n_t >= plan.treatment
    test: Comparison | SequentialResult
    if sequential is not None and config.sequential:
        # the always-valid p may be read at any size; the plan only says when the fixed test may be read
        test = sequential
    elif not planned:
        return verdict("inconclusive", f"too few impressions, {short}")
    else:
        test = primary
    kind = "always-valid p" if isinstance(test, SequentialResult) else "p"
    rates = f"{primary.control_rate:.4g} -> {primary.treatment_rate:.4g}"
    summary = f"{primary.metric} {rates} ({kind} = {test.p_value:.3g})"
    if not test.significant:
        return verdict("inconclusive", f"no significant difference: {summary}", *([short] if not planned else []))
    if test.abs_diff < 0:
        return verdict("keep", f"treatment significantly worse: {summary}")
    if guardrail is not None and guardrail.significant and guardrail.abs_diff < 0:
        return verdict("keep", f"treatment significantly better: {summary}",
                       f"but guardrail {guardrail.metric} significantly worse (p = {guardrail.p_value:.3g})")
    return verdict("promote", f"treatment significantly better: {summary}")


def analyse(counts: Sequence[VariantCounts], expected_shares: Mapping[str, float], config: AbConfig | None = None,
            control: str = CHAMPION, treatment: str = CHALLENGER, previous: ABReport | None = None,
            assigned: Mapping[str, int] | None = None) -> ABReport:
    """The whole analysis of one experiment from its cumulative counts: SRM over every variant, the plan, both
    metrics compared, the mSPRT (carried on from ``previous``, the last report) and the decision.

    A variant without impressions gives an inconclusive decision saying so, not an error. ``assigned`` are the
    randomised units per variant for the SRM check (default: the counts' impressions).
    """
    config = config or AbConfig()
    by_name = {c.variant: c for c in counts}
    if len(by_name) != len(counts):
        raise ValueError(f"a variant is counted twice: {[c.variant for c in counts]}")
    for name in (control, treatment):
        if name not in by_name:
            raise ValueError(f"variant {name!r} is not among the counted {sorted(by_name)}")
    if previous is not None and (previous.control, previous.treatment) != (control, treatment):
        raise ValueError(f"previous report compared {previous.treatment!r} to {previous.control!r}")
    c, t = by_name[control], by_name[treatment]
    # the configured baseline, not the observed control rate: a plan that moved with the data would be peeking too
    ratio = expected_shares.get(treatment, 0) / expected_shares[control] if expected_shares.get(control) else 1.0
    plan = sample_size(config.baseline_ctr, config.mde_relative, config.alpha, config.power, ratio or 1.0)
    impressions = dict(assigned) if assigned is not None else {name: v.impressions for name, v in by_name.items()}
    srm = srm_check(impressions, expected_shares, config.srm_alpha) if sum(impressions.values()) else None
    rates = {name: {m: v.rate(m) for m in ("ctr", "conversion")} for name, v in sorted(by_name.items())}
    base = {"control": control, "treatment": treatment, "variants": sorted(counts, key=lambda v: v.variant),
            "rates": rates, "srm": srm, "plan": plan, "config": config}
    mode: Literal["fixed", "sequential"] = "sequential" if config.sequential else "fixed"
    empty = [v.variant for v in (c, t) if v.impressions == 0]
    if empty or srm is None:
        # yesterday's running minimum is kept: a day without traffic must not reset the sequential test
        keep_seq = {"sequential_ctr": previous.sequential_ctr if previous else None,
                    "sequential_conversion": previous.sequential_conversion if previous else None}
        why = f"no impressions yet for variant(s) {empty}" if empty else "no impressions yet"
        return ABReport(**base, ctr=None, conversion=None, **keep_seq,
                        decision=Decision(decision="inconclusive", mode=mode, metric=config.metric, reasons=[why]))
    fixed = {m: compare(c, t, m, config.alpha) for m in ("ctr", "conversion")}
    tau2 = config.mixing_variance()
    seq = {m: msprt(c, t, tau2, config.alpha, m, getattr(previous, f"sequential_{m}") if previous else None)
           for m in ("ctr", "conversion")}
    other: Metric = "conversion" if config.metric == "ctr" else "ctr"
    # the guardrail is read by the same test as the primary metric, so peeking at it is as safe
    guard = (seq if config.sequential else fixed)[other] if config.guardrail else None
    decision = decide(srm, plan, fixed[config.metric], config, sequential=seq[config.metric], guardrail=guard)
    return ABReport(**base, ctr=fixed["ctr"], conversion=fixed["conversion"], sequential_ctr=seq["ctr"],
                    sequential_conversion=seq["conversion"], decision=decision)


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in values.items()}
