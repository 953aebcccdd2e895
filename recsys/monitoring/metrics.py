"""The latest drift and CTR verdicts as Prometheus gauges, read from the ``latest.json`` files the checks write.

The service calls :func:`export_latest` from its metrics loop (every few seconds) for each: a changed file is read
and the gauges set; a missing or unreadable file changes nothing. A drift check with too little data has no
verdict: its share is NaN and ``recsys_drift_detected`` is 0, while the check's time still moves (a stale time
means no check ran). Every worker sets the same values; ``mostrecent`` keeps the latest across worker processes.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

logger = logging.getLogger(__name__)

DRIFT_DIR = Path("monitoring") / "drift"
"""Where the drift check writes, relative to the var dir."""
LATEST = "latest.json"
CTR_DIR = Path("monitoring") / "ctr"
LIVE_DIR = Path("monitoring") / "live"
MODE: Literal["mostrecent"] = "mostrecent"


class Gauges(Protocol):
    seen: tuple[float, int] | None

    def set(self, latest: dict[str, Any]) -> None: ...


def latest_path(var_dir: Path) -> Path:
    """``<var_dir>/monitoring/drift/latest.json``: the default the stage writes and the service reads."""
    return var_dir / DRIFT_DIR / LATEST


class DriftGauges:
    """The drift gauges, registered once per process (``registry``: the default one, or a test's)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, multiprocess_mode=MODE, registry=registry)

        self.share = gauge("recsys_drift_share", "share of feature and context columns drifted in the latest check "
                                                 "(NaN: too little data for a verdict)")
        self.detected = gauge("recsys_drift_detected", "1 when the latest drift check found dataset drift")
        self.checked = gauge("recsys_drift_checked_timestamp_seconds", "wall-clock time of the latest drift check")
        self.rows = gauge("recsys_drift_window_rows", "traffic-log rows the latest drift check compared")
        by = ("column", "role")  # the bundle's feature and context columns: a bounded set
        self.column_score = Gauge("recsys_drift_column_score", "a column's distance to the reference in the latest "
                                  "drift check", by, multiprocess_mode=MODE, registry=registry)
        self.column_drifted = Gauge("recsys_drift_column_drifted", "1 when the column drifted in the latest check",
                                    by, multiprocess_mode=MODE, registry=registry)
        self.seen: tuple[float, int] | None = None

    def set(self, latest: dict[str, Any]) -> None:
        """Set the gauges from a drift result (``DriftResult`` as JSON data)."""
        from datetime import datetime

        share = latest.get("share")
        self.share.set(math.nan if share is None else float(share))
        self.detected.set(1.0 if latest.get("drift_detected") else 0.0)
        self.checked.set(datetime.fromisoformat(str(latest["checked_at"])).timestamp())
        self.rows.set(float(latest.get("rows") or 0))
        for column in latest.get("columns") or []:
            labels = (str(column["column"]), str(column["role"]))
            self.column_score.labels(*labels).set(float(column["score"]))
            self.column_drifted.labels(*labels).set(1.0 if column.get("drifted") else 0.0)


class CtrGauges:
    """The CTR check's gauges per (variant, version): CTR, baseline, relative drop; and whether one degraded."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, multiprocess_mode=MODE, registry=registry)

        by = ("variant", "version")
        self.ctr = gauge("recsys_ctr", "attributed CTR of a version over the last checked window", by)
        self.baseline = gauge("recsys_ctr_baseline", "a version's baseline CTR (its first impressions)", by)
        self.drop = gauge("recsys_ctr_relative_drop", "1 - CTR / baseline CTR over the last checked window", by)
        self.degraded = gauge("recsys_ctr_degraded", "1 when the last CTR check found a version degraded")
        self.checked = gauge("recsys_ctr_checked_timestamp_seconds", "wall-clock time of the last CTR check")
        self.seen: tuple[float, int] | None = None

    def set(self, latest: dict[str, Any]) -> None:
        """Set the gauges from a CTR check (``CtrReport`` as JSON data)."""
        from datetime import datetime

        self.degraded.set(1.0 if latest.get("performance_degraded") else 0.0)
        # a check written before checked_at existed: its window's end (the logs' clock) is all there is
        self.checked.set(datetime.fromisoformat(str(latest.get("checked_at") or latest["end"])).timestamp())
        for check in latest.get("versions", []):
            labels = (check["variant"], "none" if check["version"] is None else str(check["version"]))
            for gauge, key in ((self.ctr, "ctr"), (self.baseline, "baseline_ctr"), (self.drop, "relative_drop")):
                if check.get(key) is not None:
                    gauge.labels(*labels).set(check[key])


class LiveGauges:
    """The live recommendation metrics (:mod:`recsys.monitoring.live`): coverage, CTR and conversion per variant
    and version, assignment shares and the SRM test, the last retrain's time."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, ("window", *labels), multiprocess_mode=MODE, registry=registry)

        by = ("variant", "version")
        self.coverage = gauge("recsys_catalog_coverage", "share of the catalog's items served in the window")
        self.impressions = gauge("recsys_variant_impressions", "answers served in the window", by)
        self.ctr = gauge("recsys_variant_ctr", "impressions with an attributed click / impressions", by)
        self.conversion = gauge("recsys_variant_conversion", "impressions with an attributed watch / impressions", by)
        self.share = gauge("recsys_assignment_share", "observed share of the answers per variant", ("variant",))
        self.srm = gauge("recsys_srm_p_value", "sample-ratio-mismatch test of the split against the configured "
                                               "shares (absent with fewer than two variants)")
        self.retrain = Gauge("recsys_last_retrain_timestamp_seconds", "when the newest model version was "
                             "registered", multiprocess_mode=MODE, registry=registry)
        self.checked = Gauge("recsys_live_checked_timestamp_seconds", "wall-clock time of the latest live-metrics "
                             "computation", multiprocess_mode=MODE, registry=registry)
        self.seen: tuple[float, int] | None = None

    def set(self, latest: dict[str, Any]) -> None:
        """Set the gauges from a :class:`~recsys.monitoring.live.LiveMetrics` (as JSON data)."""
        from datetime import datetime

        window = str(latest["window"])
        self.coverage.labels(window).set(float(latest["coverage"]))
        for row in latest.get("variants", []):
            labels = (window, row["variant"], "none" if row["version"] is None else str(row["version"]))
            self.impressions.labels(*labels).set(row["impressions"])
            for gauge, key in ((self.ctr, "ctr"), (self.conversion, "conversion")):
                if row.get(key) is not None:
                    gauge.labels(*labels).set(row[key])
        for variant, share in (latest.get("shares") or {}).items():
            self.share.labels(window, variant).set(share)
        if latest.get("srm_p_value") is not None:
            self.srm.labels(window).set(latest["srm_p_value"])
        if latest.get("last_retrain_at"):
            self.retrain.set(datetime.fromisoformat(str(latest["last_retrain_at"])).timestamp())
        self.checked.set(datetime.fromisoformat(str(latest["checked_at"])).timestamp())


def export_latest(path: Path, gauges: Gauges) -> bool:
    """Set ``gauges`` from ``path`` when the file changed since the last call; whether they were set."""
    try:
        stat = path.stat()
    except OSError:
        return False
    seen = (stat.st_mtime, stat.st_size)
    if seen == gauges.seen:
        return False
    try:
        gauges.set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("monitoring result %s could not be read", path, exc_info=True)
        return False
    gauges.seen = seen
    return True
