"""Airflow's CeleryExecutor: the embedded deployment with ``RECSYS_AIRFLOW_EXECUTOR=celery`` runs a DAG's tasks on a
real ``airflow celery worker`` through the machine's Redis broker, with PostgreSQL as metadata database and Celery's
result backend. Skips with a one-line reason where Redis or PostgreSQL does not answer."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.dags.harness import AIRFLOW_PY, REPO, EmbeddedAirflow, library_env, require_airflow
from tests.receivers import free_port

REDIS = ("127.0.0.1", 6379)


def require_redis() -> None:
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError as exc:
        pytest.skip(f"no Redis at {REDIS[0]}:{REDIS[1]} ({type(exc).__name__})")


@pytest.fixture
def queue() -> object:
    """A Celery queue of this test's own on the shared Redis; its keys are deleted after it."""
    import redis

    name = f"recsys-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis(*REDIS)
    keys = [k for k in client.scan_iter(match=f"*{name}*")]
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.timeout(900)
def test_a_dag_s_tasks_run_on_a_real_celery_worker(tmp_path: Path, raw_data_dir: Callable[[Path], Path],
                                                    postgres_db: str, queue: str) -> None:
    require_airflow()
    require_redis()
    raw_data_dir(tmp_path)
    extra = library_env(tmp_path, RECSYS_AIRFLOW_EXECUTOR="celery", RECSYS_AIRFLOW_QUEUE=queue,
                        RECSYS_AIRFLOW_BROKER_URL=f"redis://{REDIS[0]}:{REDIS[1]}/0",
                        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False")
    home = tmp_path / "airflow"
    with EmbeddedAirflow(home, free_port(), extra, db_url=postgres_db) as airflow:
        assert airflow.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert airflow.env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{postgres_db}"
        run_id = airflow.trigger("ingest_and_validate", {"week": 3})
        state = airflow.wait_run("ingest_and_validate", run_id, timeout=600)
        assert state == "success", airflow.logs()
        tis = airflow.api("GET", f"/dags/ingest_and_validate/dagRuns/{run_id}/taskInstances")["task_instances"]
        ran = [ti for ti in tis if ti["state"] == "success"]
        assert {ti["task_id"] for ti in ran} >= {"ingest", "validate", "publish"}
        assert all(ti["queue"] == queue for ti in tis)
        # the worker took each task from the broker (its log), and Celery recorded it in PostgreSQL
        worker_log = (home / "logs" / "celery-worker.log").read_text(errors="replace")
        assert "execute_workload" in worker_log and "succeeded" in worker_log, worker_log[-3000:]
        from sqlalchemy import create_engine, text

        engine = create_engine(postgres_db)
        deadline = time.monotonic() + 60
        while True:  # the worker records a task's end in the result backend just after Airflow sees it succeed
            with engine.connect() as conn:
                statuses = [row[0] for row in conn.execute(text("SELECT status FROM celery_taskmeta"))]
            if statuses.count("SUCCESS") >= len(ran) or time.monotonic() > deadline:
                break
            time.sleep(1)
        engine.dispose()
        assert statuses.count("SUCCESS") >= len(ran), statuses
    assert (tmp_path / "data" / "store" / "week=03").is_dir()


def test_the_celery_executor_refuses_a_sqlite_metadata_database(tmp_path: Path) -> None:
    require_airflow()
    out = subprocess.run([str(AIRFLOW_PY), "-m", "recsys_airflow.local", "--home", str(tmp_path), "--prepare-only"],
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "plugins"),
                              "RECSYS_AIRFLOW_EXECUTOR": "celery"}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: RECSYS_AIRFLOW_EXECUTOR=celery needs a server")
    assert not out.stdout.strip()
