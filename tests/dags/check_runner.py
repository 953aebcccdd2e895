"""Run in the Airflow env, print one JSON line.

- no argument: the local runner's behaviour on real ``recsys`` commands;
- ``pods``: the pod the Kubernetes runner asks the API server for (``build_pod_request_obj``, as the operator builds
  it before creating it; no cluster needed), with the runner configuration of this process's environment
  (``RECSYS_AIRFLOW_*``), serialised as the API server receives it; and what an invalid mount path gives.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from typing import Any


def outcome(op: Any) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException
    from recsys_airflow.runner import RecsysCommandError

    try:
        return {"result": op.execute({})}
    except AirflowSkipException as exc:
        return {"skipped": str(exc)}
    except RecsysCommandError as exc:
        return {"error": str(exc)}


def pods() -> None:
    from types import SimpleNamespace

    from kubernetes.client import ApiClient
    from recsys_airflow.config import RunnerConfig
    from recsys_airflow.runner import recsys_task

    config = RunnerConfig.from_env()
    op = recsys_task("replay_week", "schedule", "week", "--week", "3", config=config)
    # the task instance's labels (kubernetes_pod_operator: "True", what the NetworkPolicies select) come from the
    # context the operator gets at run time
    ti = SimpleNamespace(dag_id="ingest_and_validate", task_id="replay_week", map_index=-1, try_number=1)
    context = {"ti": ti, "run_id": "scheduled__1997-09-22T03:00:00+00:00", "dag": SimpleNamespace()}
    pod = op.build_pod_request_obj(context, dry_run=True)  # type: ignore[arg-type]
    errors: dict[str, str] = {}
    for value in ("relative/path", "/", "/tmp", "/airflow/xcom/", "/srv/ok/"):
        os.environ["RECSYS_AIRFLOW_MOUNT_PATH"] = value
        try:
            errors[value] = f"accepted: {RunnerConfig.from_env().mount_path}"
        except ValueError as exc:
            errors[value] = str(exc)
    print(json.dumps({"type": type(op).__name__, "pod": ApiClient().sanitize_for_serialization(pod),
                      "skip_on_exit_code": list(op.skip_on_exit_code), "mount_path_errors": errors}))


def main() -> None:
    from recsys_airflow import CONFIG
    from recsys_airflow.runner import RecsysOperator, child_env, drop_unset

    def op(*args: str, config: Any = CONFIG) -> RecsysOperator:
        return RecsysOperator(task_id="t", arguments=list(args), config=config)

    print(json.dumps({
        "week": outcome(op("schedule", "week", "--week", "3", "--date", "None")),
        "error": outcome(op("schedule", "week")),
        "nothing": outcome(op("monitor", "ctr")),
        "missing": outcome(op("schedule", "week", config=replace(CONFIG, recsys="/nonexistent/recsys"))),
        "command": op("train", "--as-of-week", "9", "--date", "", "--refit").command()[1:],
        "drop": drop_unset(["--date", "None", "--week", "5", "--to", "", "--flag"]),
        "env": sorted(child_env({"AIRFLOW_CONN_X": "secret", "AIRFLOW__CORE__FERNET_KEY": "k", "PYTHONPATH": "p",
                                 "RECSYS_VAR_DIR": "v", "PATH": "/bin"}, {"RECSYS_ADMIN_TOKEN": "t"})),
    }))


if __name__ == "__main__":
    sys.exit(pods() if sys.argv[1:] == ["pods"] else main())
