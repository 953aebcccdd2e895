"""The latest drift verdict as Prometheus gauges, read from the ``latest.json`` that ``recsys drift`` writes.

The service calls :func:`export_latest` from its metrics loop (every few seconds): a changed file is read and the
gauges set; a missing or unreadable file changes nothing. A check with too little data has no verdict: its share
is NaN and ``recsys_drift_detected`` is 0, while the check's time still moves (a stale time means no check ran).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

logger = logging.getLogger(__name__)

DRIFT_DIR = Path("monitoring") / "drift"
"""Where the drift check writes, relative to the var dir."""
LATEST = "latest.json"


def latest_path(var_dir: Path) -> Path:
    """``<var_dir>/monitoring/drift/latest.json``: the default the stage writes and the service reads."""
    return var_dir / DRIFT_DIR / LATEST


class DriftGauges:
    """The drift gauges, registered once per process (``registry``: the default one, or a test's)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, multiprocess_mode="livemax", registry=registry)

        self.share = gauge("recsys_drift_share", "share of feature and context columns drifted in the latest check "
                                                 "(NaN: too little data for a verdict)")
        self.detected = gauge("recsys_drift_detected", "1 when the latest drift check found dataset drift")
        self.checked = gauge("recsys_drift_checked_timestamp_seconds", "wall-clock time of the latest drift check")
        self.rows = gauge("recsys_drift_window_rows", "traffic-log rows the latest drift check compared")
        self._seen: tuple[float, int] | None = None

    def set(self, latest: dict[str, Any]) -> None:
        """Set the gauges from a drift result (``DriftResult`` as JSON data)."""
        from datetime import datetime

        share = latest.get("share")
        self.share.set(math.nan if share is None else float(share))
        self.detected.set(1.0 if latest.get("drift_detected") else 0.0)
        self.checked.set(datetime.fromisoformat(str(latest["checked_at"])).timestamp())
        self.rows.set(float(latest.get("rows") or 0))


def export_latest(path: Path, gauges: DriftGauges) -> bool:
    """Set ``gauges`` from ``path`` when the file changed since the last call; whether they were set."""
    try:
        stat = path.stat()
    except OSError:
        return False
    seen = (stat.st_mtime, stat.st_size)
    if seen == gauges._seen:
        return False
    try:
        gauges.set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("drift result %s could not be read", path, exc_info=True)
        return False
    gauges._seen = seen
    return True
