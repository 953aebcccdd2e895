"""The DAGs as Airflow loads them: no import errors, and the structure the orchestration promises (tasks and
their order, retries with backoff and timeouts on every task, schedules and Assets, the registry pool, params,
docs, owners, tags), with either runner."""

from __future__ import annotations

from typing import Any

import pytest

DAGS = {"ingest_and_validate", "retrain", "monitor", "ab_decision", "rollback"}
REGISTRY_POOL = "recsys_registry"


def test_dagbag_imports_every_dag_without_errors(dag_structure: dict[str, Any]) -> None:
    assert dag_structure["import_errors"] == {}
    assert set(dag_structure["dags"]) == DAGS


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_every_dag_is_documented_owned_and_guarded(dag_structure: dict[str, Any], dag_id: str) -> None:
    dag = dag_structure["dags"][dag_id]
    assert dag["doc_md"].strip().startswith("###"), "the docstring is the DAG's doc in the UI"
    assert "recsys" in dag["tags"] and not dag["catchup"] and dag["max_active_runs"] == 1
    assert dag["on_failure_callback"] >= 1, "a failed run is notified"
    for task_id, task in dag["tasks"].items():
        assert task["owner"] == "recsys", task_id
        assert task["on_failure_callback"] >= 1, f"{task_id}: its final failure is notified"
        if task["type"] == "HITLBranchOperator":  # waits for a person: bounded by its response timeout instead
            assert task["response_timeout"] and task["response_timeout"] > 0
            continue
        assert task["execution_timeout"] and task["execution_timeout"] > 0, task_id
        if task_id not in ("validate", "rollback"):  # a rejected batch or a refused rollback stays so: no retry
            assert task["retries"] >= 1 and task["retry_exponential_backoff"], task_id


def test_ingest_and_validate_ingests_then_validates_then_publishes_the_asset(dag_structure: dict[str, Any]) -> None:
    dag = dag_structure["dags"]["ingest_and_validate"]
    tasks = dag["tasks"]
    assert (dag["timetable"], dag["cron"]) == ("CronTriggerTimetable", "0 3 * * 1")
    assert tasks["replay_week"]["downstream"] == ["in_timeline"]
    assert tasks["in_timeline"]["downstream"] == ["ingest"]
    assert tasks["ingest"]["downstream"] == ["validate"]
    assert tasks["validate"]["downstream"] == ["publish"]
    assert tasks["validate"]["retries"] == 0, "bad data is not retried"
    assert tasks["publish"]["outlets"] == ["validated_interactions"]
    assert tasks["ingest"]["arguments"][:3] == ["data", "replay", "--week"]
    assert dag["params"]["week"]["type"] == ["null", "integer"]


def test_retrain_runs_weekly_or_on_either_signal_and_serialises_registry_writes(
        dag_structure: dict[str, Any]) -> None:
    dag = dag_structure["dags"]["retrain"]
    tasks = dag["tasks"]
    assert dag["timetable"] == "AssetOrTimeSchedule" and dag["cron"] == "0 3 * * 1"
    assert dag["assets"] == ["drift_detected", "performance_degraded"]
    assert tasks["plan"]["downstream"] == ["trainable"]
    assert tasks["trainable"]["downstream"] == ["train"]
    assert tasks["train"]["downstream"] == ["gate"]
    assert tasks["gate"]["downstream"] == ["route"]
    assert tasks["route"]["downstream"] == ["approval", "deliver", "reload"]
    assert tasks["approval"]["downstream"] == ["approve", "reject"]
    assert tasks["approve"]["downstream"] == ["reload"]
    assert tasks["reload"]["downstream"] == ["deliver"]
    for task_id in ("train", "gate", "approve", "reject"):
        assert tasks[task_id]["pool"] == REGISTRY_POOL, task_id
    for task_id in ("gate", "approve", "reject"):
        assert "--once" in tasks[task_id]["arguments"], f"{task_id}: a rerun (or a CLI decision) is not repeated"
    assert "--reuse" in tasks["train"]["arguments"], "a rerun does not train (and register) twice"
    assert tasks["reload"]["trigger_rule"].endswith("NONE_FAILED_MIN_ONE_SUCCESS")
    assert dag["params"]["policy"]["enum"] == ["auto", "manual"]
    assert dag["params"]["refit"]["type"] == "boolean"


def test_monitor_emits_each_asset_only_behind_its_short_circuit(dag_structure: dict[str, Any]) -> None:
    dag = dag_structure["dags"]["monitor"]
    tasks = dag["tasks"]
    assert dag["cron"] == "*/15 * * * *"
    assert sorted(tasks["signals"]["upstream"]) == ["ctr", "drift", "live"]
    assert tasks["signals"]["trigger_rule"].endswith("ALL_DONE"), "one failed check does not silence the other"
    assert tasks["drift_fired"]["type"] == "_ShortCircuitDecoratedOperator"
    assert tasks["drift_fired"]["downstream"] == ["emit_drift"]
    assert tasks["performance_fired"]["downstream"] == ["emit_performance"]
    assert tasks["emit_drift"]["outlets"] == ["drift_detected"]
    assert tasks["emit_performance"]["outlets"] == ["performance_degraded"]
    emitting = {t for t, task in tasks.items() if task["outlets"]}
    assert emitting == {"emit_drift", "emit_performance"}


def test_ab_decision_and_rollback_move_aliases_through_the_registry_pool(dag_structure: dict[str, Any]) -> None:
    ab, rollback = dag_structure["dags"]["ab_decision"], dag_structure["dags"]["rollback"]
    assert ab["cron"] == "0 6 * * *"
    assert ab["tasks"]["decide"]["arguments"][:3] == ["ab", "decide", "--apply"]
    assert ab["tasks"]["decide"]["pool"] == REGISTRY_POOL
    assert rollback["timetable"] == "NullTimetable", "manual only"
    assert rollback["tasks"]["rollback"]["pool"] == REGISTRY_POOL
    assert rollback["tasks"]["rollback"]["downstream"] == ["reload"]
    assert rollback["params"]["reason"]["minLength"] >= 1 and "null" in rollback["params"]["to"]["type"]


def test_the_kubernetes_runner_runs_the_same_commands_in_pods_of_the_recsys_image(
        dag_structure: dict[str, Any], k8s_structure: dict[str, Any]) -> None:
    assert k8s_structure["import_errors"] == {}
    for dag_id, dag in dag_structure["dags"].items():
        pods = k8s_structure["dags"][dag_id]["tasks"]
        assert set(pods) == set(dag["tasks"]), dag_id
        for task_id, task in dag["tasks"].items():
            if task["type"] != "RecsysOperator":
                assert pods[task_id]["type"] == task["type"]
                continue
            assert pods[task_id]["type"] == "RecsysPodOperator", (dag_id, task_id)
            assert pods[task_id]["image"] == "registry.example/recsys:1.2.3"
            assert pods[task_id]["arguments"] == task["arguments"], "the same command, the DAG file unchanged"
            assert pods[task_id]["downstream"] == task["downstream"]
