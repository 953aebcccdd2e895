"""The Assets that connect the DAGs: a validated week, and the two signals that trigger a retrain."""

from __future__ import annotations

from airflow.sdk import Asset

VALIDATED = Asset(name="validated_interactions", uri="recsys://store/validated_interactions", group="recsys")
"""A week's batch passed validation and joined the training store (``ingest_and_validate``)."""
DRIFT = Asset(name="drift_detected", uri="recsys://monitor/drift_detected", group="recsys")
"""The served features drifted from the champion's training reference (``monitor``)."""
PERFORMANCE = Asset(name="performance_degraded", uri="recsys://monitor/performance_degraded", group="recsys")
"""A served version's attributed CTR dropped below its baseline (``monitor``)."""
