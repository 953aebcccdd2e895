"""
### A/B decision

Daily (`RECSYS_AIRFLOW_AB_SCHEDULE`): the configured experiment's analysis over the logged impressions and their
attributed feedback (`recsys ab decide --apply`): the decision is written to the registry's audit log; when it is
`promote`, the treatment's version becomes `champion` through the registry's promote path (audit record,
notification), and the service reloads. `keep` or `continue` moves nothing. While no experiment splits the
traffic, the run skips (nothing to analyse).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task
from recsys_airflow import CONFIG, recsys_task
from recsys_airflow.config import REGISTRY_POOL, SERVICE_CONN, SERVICE_ENV


@dag(dag_id="ab_decision", **CONFIG.dag_args(
    schedule=CONFIG.ab_schedule,
    tags=["experiments", "registry"], doc=__doc__, timeout=timedelta(minutes=15),
))
def ab_decision() -> None:
    decide = recsys_task("decide", "ab", "decide", "--apply", "--by", "airflow", pool=REGISTRY_POOL)

    @task.short_circuit
    def promoted(result: dict[str, Any]) -> bool:
        """Only a promotion changes what the service should serve."""
        return result.get("promoted") is not None

    reload = recsys_task("reload", "service", "reload", "--expect-version",
                         "{{ ti.xcom_pull(task_ids='decide')['promoted']['to_version'] }}", connections=SERVICE_ENV,
                         requires_connection=SERVICE_CONN)
    deliver = recsys_task("deliver", "notify", "replay")
    promoted(decide.output) >> reload >> deliver


ab_decision()
