"""
### Retrain, gate, promote, reload

Weekly (the Monday after a replay week, `RECSYS_AIRFLOW_WEEKLY_SCHEDULE`) **or** when the `monitor` DAG emits
`drift_detected` or `performance_degraded` (Airflow's asset-or-time schedule):

1. `plan` (`recsys schedule retrain`): the run's "now" (the week after its logical date's replay week, or after
   the newest validated batch for an asset-triggered run), the training cut `now - H` and the gate's window
   `[now - H, now)`; too early in the replay or an unvalidated week skips the rest.
2. `train` (`recsys train --reuse`): a challenger trained on the weeks the run knows, logged to MLflow and
   registered **once per run key** (same week, config and data): a rerun finds that version and trains nothing.
3. `gate` (`recsys registry gate --once`): the challenger against the champion of the time on the held-out weeks;
   a pass promotes (policy `auto`) or asks for approval (policy `manual`); a version already gated is not gated
   again, so no alias moves twice. `train` and `gate` hold the pool `recsys_registry` (one slot).
4. `approval` (manual policy only): Approve / Reject in the Airflow UI (Browse → Required actions), or
   `recsys registry approve --version V` on the CLI. `approve` / `reject` run with `--once`: after a CLI
   decision, answering in Airflow records nothing more (the same answer reports it, the opposite one skips), and
   an unanswered request is rejected after 7 days (nothing moves).
5. `reload` (`recsys service reload`): the service at the `recsys_service` connection loads the new champion now
   and proves it serves it (skipped without that connection; the service also watches the aliases).
6. `deliver` (`recsys notify replay`): any notification a channel could not take yet (the promotion, the
   approval request) is retried.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from recsys_airflow import CONFIG, pull, recsys_task
from recsys_airflow.assets import DRIFT, PERFORMANCE
from recsys_airflow.config import REGISTRY_POOL, SERVICE_CONN, SERVICE_ENV

TARGET = pull("gate", "target")


@dag(dag_id="retrain", **CONFIG.dag_args(
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(CONFIG.weekly_schedule, timezone="UTC"),
                                 assets=DRIFT | PERFORMANCE),
    tags=["training", "registry"], doc=__doc__, timeout=timedelta(minutes=20),
    params={
        "policy": Param(CONFIG.gate_policy, enum=["auto", "manual"],
                        description="auto: a gate pass promotes; manual: it waits for approval."),
        "week": Param(None, type=["null", "integer"], minimum=0,
                      description="The newest replay week the retrain sees (default: from the logical date)."),
        "refit": Param(False, type="boolean",
                       description="On a pass, retrain on every week before now and promote that refit."),
    },
))
def retrain() -> None:
    # an asset-triggered run has no logical date: its "now" is after the newest validated week
    plan = recsys_task("plan", "schedule", "retrain", "--date", "{{ dag_run.logical_date }}", "--week",
                       "{{ params.week }}")

    @task.short_circuit
    def trainable(result: dict[str, Any]) -> bool:
        """Too early in the replay, or the week is not validated: nothing to retrain."""
        return bool(result["trainable"])

    train = recsys_task("train", "train", "--as-of-week", pull("plan", "as_of_week"),
                        "--through-week", pull("plan", "through_week"), "--reuse", pool=REGISTRY_POOL)
    gate = recsys_task("gate", "registry", "gate", "--version", pull("train", "version"),
                       "--week", pull("plan", "gate_week"), "--policy", "{{ params.policy }}",
                       "{{ '--refit' if params.refit else '--no-refit' }}", "--once", "--by", "airflow",
                       pool=REGISTRY_POOL)

    @task.branch
    def route(result: dict[str, Any]) -> list[str]:
        """Promoted: reload the service; pending: ask for approval; rejected: nothing moves."""
        outcome = result["previous_outcome"] if result["outcome"] == "already gated" else result["outcome"]
        return {"promoted": ["reload"], "pending": ["approval"]}.get(outcome, ["deliver"])

    approval = HITLBranchOperator(
        task_id="approval",
        subject="Promote {{ ti.xcom_pull(task_ids='gate')['model'] }} v" + TARGET + "?",
        body=("The challenger passed the promotion gate (policy manual). Decision record: "
              "`{{ ti.xcom_pull(task_ids='gate')['report_path'] }}`. Approve moves `champion` to it."),
        options=["Approve", "Reject"], options_mapping={"Approve": "approve", "Reject": "reject"},
        defaults=["Reject"], response_timeout=timedelta(days=7), execution_timeout=None, retries=0)
    approve = recsys_task("approve", "registry", "approve", "--version", TARGET, "--by", "airflow",
                          "--reason", "approved in Airflow (run {{ run_id }})", "--once", pool=REGISTRY_POOL)
    reject = recsys_task("reject", "registry", "reject", "--version", TARGET, "--by", "airflow",
                         "--reason", "rejected in Airflow (run {{ run_id }})", "--once", pool=REGISTRY_POOL)
    reload = recsys_task("reload", "service", "reload", "--expect-version", TARGET, connections=SERVICE_ENV,
                         requires_connection=SERVICE_CONN, trigger_rule="none_failed_min_one_success")
    deliver = recsys_task("deliver", "notify", "replay", trigger_rule="none_failed")

    trainable(plan.output) >> train >> gate
    branch = route(gate.output)
    branch >> [reload, approval, deliver]
    approval >> [approve, reject]
    approve >> reload >> deliver
    reject >> deliver


retrain()
