"""Performance degradation: a model version's attributed CTR over a window against its own baseline.

A version's *baseline* is its CTR over its first ``baseline_impressions`` mature impressions in the assignment
log (the traffic right after it started serving; the log is the record, so no state is kept elsewhere). The
*current* CTR is over the version's mature impressions in the checked window that are not part of the
baseline. The version is *degraded* when the current window holds at least ``min_impressions``, its CTR fell by
at least ``max_relative_drop`` of the baseline, and a one-sided two-proportion z-test (statsmodels) gives
p < ``alpha`` (set ``alpha: 1`` to act on the drop alone): a drop seen on a handful of impressions, or one
within the noise, raises nothing. As in the A/B analysis, the test counts each side's impressions as the
independent trials they are worth (divided by the design effect of their users,
:func:`recsys.experiments.attribution.design_effect`): a window is often a few users with many impressions each.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recsys.experiments.attribution import Impression, attribute
from recsys.serving.feedback import FeedbackRecord


class CtrConfig(BaseModel):
    """The ``ctr:`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid")

    window_hours: float = Field(24.0, gt=0, description="default length of the checked window")
    attribution_minutes: float = Field(60.0, gt=0, description="a click counts within this long of its impression")
    baseline_impressions: int = Field(500, ge=10, description="a version's first mature impressions: its baseline")
    min_impressions: int = Field(300, ge=1, description="fewer impressions in the window: insufficient data")
    max_relative_drop: float = Field(0.3, gt=0, lt=1, description="relative CTR drop that degrades a version")
    alpha: float = Field(0.01, gt=0, le=1, description="one-sided test level of the drop (1: the drop alone)")

    @property
    def attribution_window(self) -> timedelta:
        return timedelta(minutes=self.attribution_minutes)


class VersionCheck(BaseModel):
    variant: str
    version: int | None
    status: Literal["ok", "degraded", "insufficient_data"]
    baseline_impressions: int
    baseline_ctr: float | None
    impressions: int
    ctr: float | None
    relative_drop: float | None = Field(description="1 - ctr / baseline_ctr")
    p_value: float | None = Field(description="one-sided two-proportion z-test of current < baseline")


class CtrReport(BaseModel):
    start: datetime
    end: datetime
    attribution_minutes: float
    performance_degraded: bool
    versions: list[VersionCheck]
    checked_at: datetime | None = Field(None, description="wall-clock time of the check (start/end are on the "
                                                          "logs' clock, 1998 in a replay)")


def _one_sided_p(clicked: int, n: int, base_clicked: int, base_n: int) -> float | None:
    from statsmodels.stats.proportion import proportions_ztest

    if n == 0 or base_n == 0 or clicked + base_clicked in (0, n + base_n):
        return None  # no variance: the test is undefined
    _, p = proportions_ztest([clicked, base_clicked], [n, base_n], alternative="smaller")
    return float(p)


def check_ctr(impressions: Sequence[Impression], events: Sequence[FeedbackRecord], start: datetime,
              end: datetime, cfg: CtrConfig) -> CtrReport:
    """The check of every (variant, version) with impressions in ``[start, end)`` (see the module docstring).

    ``impressions`` must hold each version's history from its first impression (the baseline) up to ``end``, and
    ``events`` the feedback up to ``end``.
    """
    window = cfg.attribution_window
    mature = [imp for imp in impressions if imp.ts < end - window]
    keys = sorted({(imp.variant, imp.version) for imp in impressions if start <= imp.ts < end},
                  key=lambda k: (k[0], k[1] or 0))
    checks = []
    for variant, version in keys:
        history = [imp for imp in mature if (imp.variant, imp.version) == (variant, version)]
        base = history[:cfg.baseline_impressions]
        base_ids = {imp.request_id for imp in base}
        current = [imp for imp in history if imp.ts >= start and imp.request_id not in base_ids]
        b = attribute(base, events, window).rates
        c = attribute(current, events, window).rates
        base_n, base_clicked, base_deff = (b[0].impressions, b[0].clicked, b[0].design_effect) if b else (0, 0, 1.0)
        n, clicked, deff = (c[0].impressions, c[0].clicked, c[0].design_effect) if c else (0, 0, 1.0)
        base_ctr = base_clicked / base_n if base_n else None
        ctr = clicked / n if n else None
        drop = None if not base_ctr or ctr is None else 1 - ctr / base_ctr
        p = _one_sided_p(round(clicked / deff), round(n / deff), round(base_clicked / base_deff),
                         round(base_n / base_deff))
        if len(base) < cfg.baseline_impressions or n < cfg.min_impressions or drop is None:
            status = "insufficient_data"
        elif drop >= cfg.max_relative_drop and (cfg.alpha >= 1 or (p is not None and p < cfg.alpha)):
            status = "degraded"
        else:
            status = "ok"
        checks.append(VersionCheck(variant=variant, version=version, status=status, baseline_impressions=base_n,
                                   baseline_ctr=base_ctr, impressions=n, ctr=ctr, relative_drop=drop, p_value=p))
    return CtrReport(start=start, end=end, attribution_minutes=cfg.attribution_minutes,
                     performance_degraded=any(ch.status == "degraded" for ch in checks), versions=checks)
