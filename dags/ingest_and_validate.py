"""
### Ingest and validate one replay week

Every Monday at 03:00 UTC (`RECSYS_AIRFLOW_WEEKLY_SCHEDULE`) this DAG takes the replay week that ended before the
run's logical date (`recsys schedule week`; week 0 starts on `RECSYS_REPLAY_START`, by default the data's own
1997-09-15, see docs/airflow.md), writes its batch (`recsys data replay`) and validates it with Great Expectations
(`recsys validate`).

- **Accepted**: the batch joins the training store and the Asset `validated_interactions` gets an event.
- **Rejected**: the batch is quarantined with its report (`data/quarantine/week=WW/`), the library notifies
  `batch_quarantined`, the task and the run fail (no retry: bad data stays bad) and the failure notifiers alert
  Slack and e-mail with the failed checks.

Trigger with the param `week` to (re)validate one week; the run is idempotent (a rerun overwrites the partition).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from recsys_airflow import CONFIG, pull, recsys_task
from recsys_airflow.assets import VALIDATED


@dag(dag_id="ingest_and_validate", **CONFIG.dag_args(
    schedule=CONFIG.weekly_schedule,
    tags=["data"], doc=__doc__, timeout=timedelta(minutes=10),
    params={"week": Param(None, type=["null", "integer"], minimum=0,
                          description="The replay week to ingest (default: the week before the logical date).")},
))
def ingest_and_validate() -> None:
    # a run triggered without a logical date stands for the time it was triggered
    week = recsys_task("replay_week", "schedule", "week", "--date", "{{ dag_run.logical_date or dag_run.run_after }}",
                       "--week", "{{ params.week }}")

    @task.short_circuit
    def in_timeline(result: dict[str, Any]) -> bool:
        """Past the replay's last week there is nothing to ingest: the rest is skipped."""
        return bool(result["in_range"])

    ingest = recsys_task("ingest", "data", "replay", "--week", pull("replay_week", "week"))
    validate = recsys_task("validate", "validate", "--week", pull("replay_week", "week"), retries=0)

    @task(outlets=[VALIDATED])
    def publish(result: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        """The Asset event, with what the batch brought."""
        outcome = result["outcomes"][0]
        extra = {"week": outcome["week"], "rows": outcome["rows"], "new_users": outcome["new_users"],
                 "new_items": outcome["new_items"]}
        outlet_events[VALIDATED].extra = extra
        return extra

    in_timeline(week.output) >> ingest >> validate
    publish(validate.output)


ingest_and_validate()
