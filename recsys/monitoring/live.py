"""Live recommendation metrics over a recent window of served traffic: what a dashboard of the product shows.

From the assignment log (every answer: variant, model version, the items shown) and the feedback store
(attributed with :mod:`recsys.experiments.attribution`): the catalog coverage of the served items, impressions,
CTR and conversion per (variant, version), the assignment shares against the experiment's configured ones with a
sample-ratio-mismatch test, and when the newest model version was registered (the last successful retrain).

The result goes to ``<var_dir>/monitoring/live/latest.json``; the service exports it as gauges
(:class:`recsys.monitoring.metrics.LiveGauges`), so Prometheus sees it without a second exporter process. Every
label is bounded: the window's name, the experiment's variants and the model versions serving them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from recsys.experiments.attribution import Impression, attribute
from recsys.monitoring.metrics import LIVE_DIR
from recsys.serving.feedback import FeedbackRecord

__all__ = ["LIVE_DIR", "LiveConfig", "LiveMetrics", "VariantLive", "live_metrics", "window_label"]


class LiveConfig(BaseModel):
    """How the live metrics are computed (``recsys monitor live``)."""

    model_config = ConfigDict(extra="forbid")

    window: timedelta = Field(timedelta(hours=1), gt=timedelta(0), description="the window, up to its end")
    attribution_window: timedelta = Field(timedelta(minutes=30), gt=timedelta(0),
                                          description="feedback within this time after an impression is "
                                                      "attributed to it")
    srm_alpha: float = Field(0.001, gt=0, lt=1, description="p-value under which the split is a mismatch")


def window_label(window: timedelta) -> str:
    """A window as a short label value: ``1h``, ``30m``, ``90s``, ``2d``."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class VariantLive(BaseModel):
    """One (variant, version)'s attributed rates over the window's *mature* impressions: those at least the
    attribution window old (a younger one may still get its click)."""

    variant: str
    version: int | None
    impressions: int
    clicked: int
    converted: int
    ctr: float | None = Field(description="impressions with an attributed click / impressions")
    conversion: float | None = Field(description="impressions with an attributed watch / impressions")


class LiveMetrics(BaseModel):
    """The window's metrics (see the module docstring)."""

    window: str = Field(description="the window as a label, e.g. 1h")
    start: datetime
    end: datetime
    impressions: int
    users: int
    catalog_items: int
    served_items: int = Field(description="distinct items shown in the window")
    coverage: float = Field(description="served_items / catalog_items")
    variants: list[VariantLive] = Field(description="per (variant, version)")
    assignments: dict[str, int] = Field(description="answers per variant in the window")
    assigned_users: dict[str, int] = Field(description="distinct users per variant in the window (the unit the "
                                                       "router randomises)")
    expected_shares: dict[str, float] = Field(description="the experiment's configured shares")
    shares: dict[str, float] = Field(description="observed share of the answers per variant")
    srm_p_value: float | None = Field(description="chi-square test of the users' split (answers of one user are not "
                                                  "independent); null with fewer than two variants configured")
    srm_ok: bool | None
    last_retrain_at: datetime | None = Field(description="when the newest registered model version was created")
    checked_at: datetime


def live_metrics(impressions: Sequence[Impression], events: Sequence[FeedbackRecord], start: datetime,
                 end: datetime, *, catalog_items: int, expected_shares: Mapping[str, float], config: LiveConfig,
                 last_retrain_at: datetime | None, checked_at: datetime) -> LiveMetrics:
    """The metrics of the impressions in ``[start, end)`` (earlier ones only let early feedback be attributed)."""
    from recsys.experiments.ab import srm_check

    if catalog_items < 1:
        raise ValueError(f"catalog_items must be >= 1, got {catalog_items}")
    shown = [imp for imp in impressions if start <= imp.ts < end]
    items = {item for imp in shown for item in imp.items}
    attribution = attribute(impressions, events, config.attribution_window, start, end)
    variants = [VariantLive(variant=r.variant, version=r.version, impressions=r.impressions, clicked=r.clicked,
                            converted=r.converted, ctr=r.ctr, conversion=r.conversion) for r in attribution.rates]
    assignments = Counter(imp.variant for imp in shown)
    total = sum(assignments.values())
    names = sorted(set(expected_shares) | set(assignments))
    observed = {v: assignments.get(v, 0) for v in names}
    users = {v: len({imp.user_id for imp in shown if imp.variant == v}) for v in names}
    p_value: float | None = None
    ok: bool | None = None
    if len([s for s in expected_shares.values() if s > 0]) >= 2 and total > 0:
        shares = {v: float(expected_shares.get(v, 0.0)) for v in names}
        check = srm_check(users, shares, config.srm_alpha)
        p_value, ok = check.p_value, check.ok
    return LiveMetrics(
        window=window_label(config.window), start=start, end=end, impressions=len(shown),
        users=len({imp.user_id for imp in shown}), catalog_items=catalog_items, served_items=len(items),
        coverage=len(items) / catalog_items, variants=variants, assignments=observed, assigned_users=users,
        expected_shares=dict(expected_shares),
        shares={v: (n / total if total else 0.0) for v, n in observed.items()}, srm_p_value=p_value, srm_ok=ok,
        last_retrain_at=last_retrain_at, checked_at=checked_at)
