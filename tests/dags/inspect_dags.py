"""Run in the Airflow env: load the repo's DAGs with a DagBag and print their structure as one JSON line."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def describe(dag: Any) -> dict[str, Any]:
    timetable = dag.timetable
    inner = getattr(timetable, "timetable", timetable)  # an asset-or-time schedule wraps a cron timetable
    condition = getattr(timetable, "asset_condition", None)
    assets = sorted(a.name for a in getattr(condition, "objects", [])) if condition is not None else []
    cron = getattr(inner, "expression", None)
    tasks = {}
    for t in dag.tasks:
        tasks[t.task_id] = {
            "type": type(t).__name__, "retries": t.retries, "retry_exponential_backoff":
                bool(t.retry_exponential_backoff), "execution_timeout": _seconds(t.execution_timeout),
            "pool": t.pool, "trigger_rule": str(t.trigger_rule), "owner": t.owner,
            "upstream": sorted(t.upstream_task_ids), "downstream": sorted(t.downstream_task_ids),
            "outlets": sorted(getattr(o, "name", str(o)) for o in t.outlets),
            "arguments": [str(a) for a in getattr(t, "arguments", []) or []],
            "image": getattr(t, "image", None), "on_failure_callback": len(t.on_failure_callback or []),
            "response_timeout": _seconds(getattr(t, "response_timeout", None)),
        }
    return {"dag_id": dag.dag_id, "catchup": dag.catchup, "tags": sorted(dag.tags), "doc_md": dag.doc_md or "",
            "timetable": type(timetable).__name__, "cron": cron, "assets": assets,
            "params": {k: dag.params.get_param(k).schema for k in dag.params},
            "max_active_runs": dag.max_active_runs, "on_failure_callback": len(dag.on_failure_callback or [])
            if isinstance(dag.on_failure_callback, list) else int(dag.on_failure_callback is not None),
            "tasks": tasks}


def main() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    print(json.dumps({"import_errors": {k: str(v)[-500:] for k, v in bag.import_errors.items()},
                      "dags": {d.dag_id: describe(d) for d in bag.dags.values()}}))


if __name__ == "__main__":
    sys.exit(main())
