"""The CTR monitor stage: each serving model version's attributed CTR over a window against its baseline.

The window is on the logs' own clock (a replay's logs are on 1998 time): by default the ``ctr.window_hours`` up
to the newest impression in the assignment log. The result is also written to
``<var_dir>/monitoring/ctr/latest.json``, which the service exports as Prometheus gauges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.monitoring.ctr import CtrConfig, CtrReport
from recsys.monitoring.metrics import CTR_DIR, LATEST
from recsys.settings import ServingSettings
from recsys.stages.base import SILENT, NothingToDoError, Reporter, StageError, StageResult


class CtrParams(BaseModel):
    since: datetime | None = Field(None, description="window start (UTC); default: until - ctr.window_hours")
    until: datetime | None = Field(None, description="window end (UTC); default: the newest impression")
    config: CtrConfig = Field(default_factory=CtrConfig)


class CtrResult(StageResult):
    report: CtrReport
    performance_degraded: bool
    latest_path: Path


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def monitor_ctr(settings: ServingSettings, params: CtrParams, *, reporter: Reporter = SILENT) -> CtrResult:
    """Check every version seen in the window; ``performance_degraded`` when one of them is degraded, and then
    a ``ctr_degraded`` notification per degraded version (deduplicated per model, version and variant)."""
    from recsys import notify
    from recsys.experiments.attribution import read_impressions
    from recsys.monitoring.ctr import check_ctr
    from recsys.serving.feedback import FeedbackStore

    cfg = params.config
    sender = notify.notifier(settings)  # first: a misconfigured channel fails before any work
    until = _utc(params.until)
    impressions = read_impressions(settings.assignment_path, None, until)
    if not impressions:
        raise NothingToDoError(f"no impressions logged in {settings.assignment_path} (is the service running with "
                         "RECSYS_VAR_DIR pointing here?)")
    end = until or impressions[-1].ts + timedelta(microseconds=1)
    start = _utc(params.since) or end - timedelta(hours=cfg.window_hours)
    if start >= end:
        raise StageError(f"the window is empty: since {start.isoformat()} is not before until {end.isoformat()}")
    reporter.note(f"CTR by version over {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC "
                  f"({len(impressions):,} impressions logged up to then)")
    store = FeedbackStore(settings.feedback_db_url)
    try:
        events = store.between(None, end)
    finally:
        store.close()
    report = check_ctr(impressions, events, start, end, cfg).model_copy(update={"checked_at": datetime.now(UTC)})
    latest = settings.var_dir / CTR_DIR / LATEST
    latest.parent.mkdir(parents=True, exist_ok=True)
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(latest)
    try:
        for check in report.versions:
            if check.status == "degraded":
                sender.event("ctr_degraded", {**check.model_dump(mode="json"), "start": report.start.isoformat(),
                                              "end": report.end.isoformat()},
                             model_name=settings.model_name, version=check.version)
    finally:
        sender.close()
    return CtrResult(report=report, performance_degraded=report.performance_degraded, latest_path=latest)
