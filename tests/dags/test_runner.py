"""The local runner on real ``recsys`` commands (in the Airflow env): the JSON result is the task's return value,
a failure carries the command's one-line error, "nothing to do" skips, unset options are left out, and the child
sees neither Airflow's configuration nor its connections."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.dags.harness import library_env, prepare, run_in_airflow
from tests.receivers import free_port


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory, raw_data_dir: Callable[[Path], Path]) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("runner")
    raw_data_dir(root)
    env = prepare(root / "airflow", free_port(), library_env(root))
    return run_in_airflow("check_runner.py", env=env)


def test_the_json_result_is_the_return_value(checked: dict[str, Any]) -> None:
    week = checked["week"]["result"]
    assert week["week"] == 3 and week["in_range"] and week["logical_date"] is None  # --date None was left out


def test_a_failure_carries_the_commands_one_line_error(checked: dict[str, Any]) -> None:
    assert checked["error"] == {"error": "recsys schedule week: give the run's logical date or the week"}
    assert "cannot start /nonexistent/recsys" in checked["missing"]["error"]
    assert "RECSYS_AIRFLOW_RECSYS" in checked["missing"]["error"]


def test_nothing_to_do_skips_the_task(checked: dict[str, Any]) -> None:
    assert checked["nothing"]["skipped"].startswith("nothing to do: no impressions logged")


def test_unset_options_are_left_out(checked: dict[str, Any]) -> None:
    assert checked["drop"] == ["--week", "5", "--flag"]
    assert checked["command"] == ["train", "--as-of-week", "9", "--refit", "--json"]


def test_the_child_gets_no_airflow_configuration_or_connections(checked: dict[str, Any]) -> None:
    env = set(checked["env"])
    assert {"RECSYS_VAR_DIR", "PATH", "RECSYS_ADMIN_TOKEN", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY"} <= env
    assert not env & {"AIRFLOW_CONN_X", "AIRFLOW__CORE__FERNET_KEY", "PYTHONPATH"}
