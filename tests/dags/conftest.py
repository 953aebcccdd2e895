"""Fixtures of the DAG tests: the Airflow env's structure dump, and throwaway Airflow homes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dags.harness import prepare, run_in_airflow
from tests.receivers import free_port


@pytest.fixture(scope="session")
def dag_structure(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The DagBag of the repo's dags/ (throwaway AIRFLOW_HOME, examples off) as JSON, local runner."""
    env = prepare(tmp_path_factory.mktemp("airflow-home"), free_port())
    return run_in_airflow("inspect_dags.py", env=env)


@pytest.fixture(scope="session")
def k8s_structure(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same DAG files parsed with ``RECSYS_AIRFLOW_RUNNER=kubernetes``."""
    env = prepare(tmp_path_factory.mktemp("airflow-home-k8s"), free_port(),
                  {"RECSYS_AIRFLOW_RUNNER": "kubernetes", "RECSYS_AIRFLOW_IMAGE": "registry.example/recsys:1.2.3"})
    return run_in_airflow("inspect_dags.py", env=env)


@pytest.fixture
def airflow_home(tmp_path: Path) -> Path:
    return tmp_path / "airflow"
