"""Run in the Airflow env: the local runner's behaviour on real ``recsys`` commands, as one JSON line."""

from __future__ import annotations

import json
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
    sys.exit(main())
