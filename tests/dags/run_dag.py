"""Run in the Airflow env: ``dag.test()`` one of the repo's DAGs and print one JSON line: the run's state, each
task's state and XCom result, the Asset events of the run and what they queued.

``python run_dag.py DAG_ID [--logical-date ISO] [--conf JSON]`` (the metadata DB must be migrated).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dag_id")
    parser.add_argument("--logical-date", type=datetime.fromisoformat)
    parser.add_argument("--conf", type=json.loads, default={})
    args = parser.parse_args()

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(args.dag_id)
    kwargs: dict[str, Any] = {"run_conf": args.conf}
    if args.logical_date is not None:
        kwargs["logical_date"] = args.logical_date
    run = dag.test(**kwargs)
    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == args.dag_id,
                                                         TaskInstance.run_id == run.run_id)).all()
        states = {ti.task_id: None if ti.state is None else str(ti.state) for ti in tis}
        xcoms = {}
        for row in session.scalars(select(XComModel).where(XComModel.dag_id == args.dag_id,
                                                           XComModel.run_id == run.run_id,
                                                           XComModel.key == "return_value")).all():
            xcoms[row.task_id] = XComModel.deserialize_value(row)
        events = [{"asset": name, "extra": extra} for name, extra in session.execute(
            select(AssetModel.name, AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == args.dag_id, AssetEvent.source_run_id == run.run_id))]
        queued = sorted({dag_id for (dag_id,) in session.execute(select(AssetDagRunQueue.target_dag_id))})
    print(json.dumps({"run_id": run.run_id, "state": str(run.state), "tasks": states, "xcom": xcoms,
                      "asset_events": events, "queued": queued}, default=str))


if __name__ == "__main__":
    sys.exit(main())
