"""
### Rollback (manual)

Trigger with a reason (and optionally the version to go back to): `champion` moves back to the previous champion
of the audit history, or to `to` (`recsys registry rollback`, one audit record, a `rolled_back` notification),
then the service reloads and proves it serves that version. The CLI equivalent is
`recsys registry rollback --reason TEXT`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag
from recsys_airflow import CONFIG, pull, recsys_task
from recsys_airflow.config import REGISTRY_POOL, SERVICE_CONN, SERVICE_ENV


@dag(dag_id="rollback", **CONFIG.dag_args(
    schedule=None,
    tags=["registry"], doc=__doc__, timeout=timedelta(minutes=5),
    params={
        "reason": Param(type="string", minLength=3, description="Why (kept in the audit log)."),
        "to": Param(None, type=["null", "integer"], minimum=1,
                    description="The version to roll back to (it must have been champion); default: the previous."),
        "by": Param("airflow", type="string", minLength=1, description="Who acts."),
    },
))
def rollback() -> None:
    move = recsys_task("rollback", "registry", "rollback", "--to", "{{ params.to }}", "--reason",
                       "{{ params.reason }}", "--by", "{{ params.by }}", pool=REGISTRY_POOL, retries=0)
    reload = recsys_task("reload", "service", "reload", "--expect-version", pull("rollback", "to_version"),
                         connections=SERVICE_ENV, requires_connection=SERVICE_CONN)
    deliver = recsys_task("deliver", "notify", "replay")
    move >> reload >> deliver


rollback()
