"""The live-metrics stage: catalog coverage, CTR and conversion per variant and version, the split's SRM test and
the last retrain's time, over the window up to the newest impression; written where the service exports it.

The window is on the logs' own clock (a replay's logs are on 1998 time), like the CTR monitor's. Run it
periodically (``recsys monitor live``; the Airflow monitor DAG, or a cron line beside the service): the service
re-reads ``latest.json`` within seconds of a change and exports the gauges ``recsys_catalog_coverage``,
``recsys_variant_ctr`` and the others (:class:`recsys.monitoring.metrics.LiveGauges`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.monitoring.live import LIVE_DIR, LiveConfig, LiveMetrics
from recsys.monitoring.metrics import LATEST
from recsys.settings import ServingSettings
from recsys.stages.base import SILENT, NothingToDoError, Reporter, StageError, StageResult

logger = logging.getLogger(__name__)


class LiveParams(BaseModel):
    until: datetime | None = Field(None, description="window end (UTC); default: just after the newest impression")
    catalog_items: int | None = Field(None, ge=1, description="catalog size; default: the raw data's item table")
    config: LiveConfig = Field(default_factory=LiveConfig)


class LiveResult(StageResult):
    metrics: LiveMetrics
    latest_path: Path


def _catalog_items(settings: ServingSettings) -> int:
    from recsys.data.load import load_items

    path = settings.raw_dir / "ml-100k.item"
    try:
        return len(load_items(path))
    except (OSError, ValueError) as exc:
        raise StageError(f"the catalog size comes from {path}, which could not be read ({exc}); run "
                         "`recsys data fetch` or pass --catalog-items") from exc


def last_retrain_at(settings: ServingSettings) -> datetime | None:
    """When the newest version of the model was registered; None without a registry or a version (logged)."""
    from recsys.registry.tracking import client_for

    try:
        versions = client_for(settings.mlflow_uri).search_model_versions(f"name='{settings.model_name}'")
    except Exception as exc:  # a registry outage must not stop the other metrics
        logger.warning("registry unreachable for the last retrain time: %s", exc)
        return None
    stamps = [v.creation_timestamp for v in versions if v.creation_timestamp]
    return datetime.fromtimestamp(max(stamps) / 1000, UTC) if stamps else None


def monitor_live(settings: ServingSettings, params: LiveParams, *, reporter: Reporter = SILENT) -> LiveResult:
    """Compute the live metrics over the window and write ``<var_dir>/monitoring/live/latest.json``."""
    from recsys.experiments.attribution import read_impressions
    from recsys.monitoring.live import live_metrics
    from recsys.serving.feedback import FeedbackStore
    from recsys.serving.router import Experiment

    cfg = params.config
    experiment = Experiment.configured(settings.experiment, settings.experiment_file)
    until = params.until if params.until is None or params.until.tzinfo else params.until.replace(tzinfo=UTC)
    impressions = read_impressions(settings.assignment_path, None, until)
    if not impressions:
        raise NothingToDoError(f"no impressions logged in {settings.assignment_path} (is the service running with "
                         "RECSYS_VAR_DIR pointing here?)")
    end = until or impressions[-1].ts + timedelta(microseconds=1)
    start = end - cfg.window
    earliest = start - cfg.attribution_window
    impressions = [imp for imp in impressions if imp.ts >= earliest]
    store = FeedbackStore(settings.feedback_db_url)
    try:
        events = store.between(start, end)
    finally:
        store.close()
    expected = {} if experiment.allocation == "thompson" else dict(experiment.variants)  # a bandit's split moves
    metrics = live_metrics(impressions, events, start, end,
                           catalog_items=params.catalog_items or _catalog_items(settings),
                           expected_shares=expected, config=cfg, last_retrain_at=last_retrain_at(settings),
                           checked_at=datetime.now(UTC))
    reporter.note(f"{metrics.impressions:,} impressions over {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC: "
                  f"coverage {metrics.coverage:.1%} of {metrics.catalog_items:,} items")
    latest = settings.var_dir / LIVE_DIR / LATEST
    latest.parent.mkdir(parents=True, exist_ok=True)
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(metrics.model_dump_json(indent=2))
    tmp.replace(latest)
    return LiveResult(metrics=metrics, latest_path=latest)
