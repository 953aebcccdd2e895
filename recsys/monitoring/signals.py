"""The monitors' latest results as Prometheus gauges: the service's metrics loop calls :meth:`SignalGauges.sync`.

The drift and CTR stages write ``<var_dir>/monitoring/{drift,ctr}/latest.json``; every few seconds each worker
re-reads a file whose modification time changed and sets the gauges (``mostrecent`` across worker processes), so
Prometheus scrapes the latest verdicts from the service's ``/metrics`` without an exporter of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from prometheus_client import Gauge

logger = logging.getLogger(__name__)

MODE: Literal["mostrecent"] = "mostrecent"
CTR = Gauge("recsys_ctr", "attributed CTR of a version over the last checked window", ["variant", "version"],
            multiprocess_mode=MODE)
CTR_BASELINE = Gauge("recsys_ctr_baseline", "a version's baseline CTR (its first impressions)",
                     ["variant", "version"], multiprocess_mode=MODE)
CTR_DROP = Gauge("recsys_ctr_relative_drop", "1 - CTR / baseline CTR of the last checked window",
                 ["variant", "version"], multiprocess_mode=MODE)
CTR_DEGRADED = Gauge("recsys_ctr_degraded", "1 when the last CTR check found a version degraded",
                     multiprocess_mode=MODE)
CTR_CHECKED = Gauge("recsys_ctr_checked_timestamp_seconds", "log time (Unix) of the end of the last CTR check",
                    multiprocess_mode=MODE)


def _label(version: Any) -> str:
    return "none" if version is None else str(version)


def set_ctr(report: dict[str, Any]) -> None:
    """Gauges from a CTR check's JSON (:class:`~recsys.monitoring.ctr.CtrReport`)."""
    from datetime import datetime

    CTR_DEGRADED.set(1 if report.get("performance_degraded") else 0)
    CTR_CHECKED.set(datetime.fromisoformat(report["end"]).timestamp())
    for check in report.get("versions", []):
        labels = (check["variant"], _label(check["version"]))
        for gauge, key in ((CTR, "ctr"), (CTR_BASELINE, "baseline_ctr"), (CTR_DROP, "relative_drop")):
            if check.get(key) is not None:
                gauge.labels(*labels).set(check[key])


class SignalGauges:
    """Re-reads each ``latest.json`` whose modification time changed and hands it to its setter."""

    def __init__(self, files: dict[Path, Callable[[dict[str, Any]], None]]) -> None:
        self.files = files
        self._seen: dict[Path, float] = {}

    def sync(self) -> None:
        for path, setter in self.files.items():
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue  # no check has run yet
            if self._seen.get(path) == mtime:
                continue
            try:
                setter(json.loads(path.read_text(encoding="utf-8")))
                self._seen[path] = mtime
            except (OSError, ValueError, KeyError, TypeError):
                logger.warning("could not read monitoring result %s", path, exc_info=True)
