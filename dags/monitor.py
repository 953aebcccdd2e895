"""
### Monitor: drift and CTR checks that trigger a retrain

Every 15 minutes (`RECSYS_AIRFLOW_MONITOR_SCHEDULE`):

1. `drift` (`recsys drift --since-last-verdict`): the served features since the last verdict against the
   champion's training reference (Evidently); on drift the library notifies `drift_detected`.
2. `ctr` (`recsys monitor ctr`): each served version's attributed CTR against its baseline.
3. `live` (`recsys monitor live`): the live recommendation metrics the service exports.
4. `signals` (`recsys monitor signals`): whether to trigger a retrain: a fresh signal, enough new traffic since
   the last trigger (`signals.min_impressions`) and outside the cooldown (`signals.cooldown_hours`: at most one
   triggered retrain per period); a trigger is recorded under `var/monitoring/signals/`.
5. Only when a signal fires does `emit_drift` / `emit_performance` send an event on the Asset `drift_detected` /
   `performance_degraded`, which schedules `retrain`; otherwise the run short-circuits.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task
from recsys_airflow import CONFIG, recsys_task
from recsys_airflow.assets import DRIFT, PERFORMANCE


@dag(dag_id="monitor", **CONFIG.dag_args(
    schedule=CONFIG.monitor_schedule,
    tags=["monitoring"], doc=__doc__, timeout=timedelta(minutes=10),
))
def monitor() -> None:
    drift = recsys_task("drift", "drift", "--since-last-verdict")
    ctr = recsys_task("ctr", "monitor", "ctr")
    live = recsys_task("live", "monitor", "live")
    signals = recsys_task("signals", "monitor", "signals", "--run-id", "{{ run_id }}", trigger_rule="all_done")

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def drift_fired(result: dict[str, Any]) -> bool:
        return bool(result["fire_drift"])

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def performance_fired(result: dict[str, Any]) -> bool:
        return bool(result["fire_performance"])

    @task(outlets=[DRIFT])
    def emit_drift(result: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        """The Asset event, carrying the drift facts the retrain run can show."""
        outlet_events[DRIFT].extra = facts = result["drift"]["facts"]
        return facts

    @task(outlets=[PERFORMANCE])
    def emit_performance(result: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        outlet_events[PERFORMANCE].extra = facts = result["performance"]["facts"]
        return facts

    [drift, ctr, live] >> signals
    drift_fired(signals.output) >> emit_drift(signals.output)
    performance_fired(signals.output) >> emit_performance(signals.output)


monitor()
