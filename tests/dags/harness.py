"""The tests' way to Airflow: its own venv (``.venv-airflow``, ``make airflow-setup``) driven from the library
env's pytest through subprocesses, with a throwaway ``AIRFLOW_HOME`` per test module.

- :func:`prepare` migrates a metadata database (SQLite in the home, or ``db_url``) and returns the environment of
  the embedded deployment (``plugins/recsys_airflow/local.py``, the one ``make airflow`` starts).
- :func:`run_in_airflow` runs one of this folder's scripts (``inspect_dags.py``, ``run_dag.py``) in the Airflow
  env and returns its JSON.
- :class:`EmbeddedAirflow` starts the four components (api-server, scheduler, dag-processor, triggerer) as
  ``make airflow`` does and speaks the REST API with a JWT of the admin login.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = Path(os.environ.get("RECSYS_AIRFLOW_VENV", REPO / ".venv-airflow"))
AIRFLOW_PY = AIRFLOW_VENV / "bin" / "python"
HERE = Path(__file__).resolve().parent


def require_airflow() -> None:
    if not AIRFLOW_PY.exists():
        pytest.skip(f"no Airflow env at {AIRFLOW_VENV} (make airflow-setup)")


def library_env(root: Path, **extra: str) -> dict[str, str]:
    """The RECSYS_* settings of a test's own data and var dirs (the runner's subprocesses inherit them)."""
    return {"RECSYS_DATA_DIR": str(root / "data"), "RECSYS_VAR_DIR": str(root / "var"),
            "RECSYS_PARAMS_FILE": str(REPO / "params.yaml"), "RECSYS_TEST_CACHE": os.environ.get(
                "RECSYS_TEST_CACHE", str(REPO / "data" / "cache")), **extra}


RECSYS = str(REPO / ".venv" / "bin" / "recsys")


def recsys(env: Mapping[str, str], *args: str) -> Any:
    """``recsys <args> --json`` in the library env with ``env``; its result."""
    out = subprocess.run([RECSYS, *args, "--json"], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def validated_store(env: Mapping[str, str], root: Path, weeks: int) -> None:
    """Replay and validate weeks ``0..weeks-1`` into ``root/data/store`` (what the weekly runs before did)."""
    recsys(env, "data", "replay", "--all")
    for part in (root / "data" / "batches").glob("week=*"):
        if int(part.name.split("=")[1]) >= weeks:
            shutil.rmtree(part)
    assert recsys(env, "validate", "--all")["accepted"] == weeks


def prepare(home: Path, port: int, extra: Mapping[str, str] | None = None, db_url: str | None = None,
            timeout: float = 300) -> dict[str, str]:
    """Migrate the metadata DB of ``home`` (and create the pool); the full environment of the deployment."""
    require_airflow()
    env = {**os.environ, **(extra or {}), "PYTHONPATH": str(REPO / "plugins")}
    env.pop("VIRTUAL_ENV", None)
    if db_url:
        env["RECSYS_AIRFLOW_DB_URL"] = db_url
    out = subprocess.run([str(AIRFLOW_PY), "-m", "recsys_airflow.local", "--home", str(home), "--port", str(port),
                          "--prepare-only"], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return {**env, **json.loads(out.stdout.strip().splitlines()[-1])}


def run_in_airflow(script: str, *args: str, env: Mapping[str, str], timeout: float = 600) -> dict[str, Any]:
    """Run ``tests/dags/<script>`` in the Airflow env; its last stdout line is JSON."""
    out = subprocess.run([str(AIRFLOW_PY), str(HERE / script), *args], env=dict(env), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"{script} failed ({out.returncode}):\n{out.stderr[-4000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


class EmbeddedAirflow:
    """``make airflow`` in a test: the launcher as a subprocess, stopped (all four components) on exit."""

    def __init__(self, home: Path, port: int, extra: Mapping[str, str] | None = None,
                 db_url: str | None = None) -> None:
        self.home, self.port = home, port
        self.env = prepare(home, port, extra, db_url)
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None
        self._token: str | None = None

    @property
    def password(self) -> str:
        return json.loads((self.home / "passwords.json").read_text())["admin"]

    def __enter__(self) -> EmbeddedAirflow:
        self.proc = subprocess.Popen([str(AIRFLOW_PY), "-m", "recsys_airflow.local", "--home", str(self.home),
                                      "--port", str(self.port)], env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        lines = []
        for line in self.proc.stdout:  # the launcher prints the URL and the login once Airflow is healthy
            lines.append(line)
            if line.startswith("Airflow UI"):
                # keep draining the pipe (a full one would block the launcher)
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return self
        self.proc.wait()
        raise AssertionError(f"Airflow did not start ({self.proc.returncode}):\n{''.join(lines)[-3000:]}\n"
                             f"{self.logs()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for path in sorted((self.home / "logs").glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # -- the REST API -----------------------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            r = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password},
                           timeout=30)
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(method, f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self.token()}"},
                          timeout=30, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json() if r.content else None

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50})["dag_runs"]

    def tasks(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, logical_date: str | None = None) -> str:
        body: dict[str, Any] = {"conf": dict(conf or {}), "logical_date": logical_date}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return str(state)
            time.sleep(2)
        raise AssertionError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s:\n{self.logs()}")
