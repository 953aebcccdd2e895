"""The local runner on real ``recsys`` commands (in the Airflow env): the JSON result is the task's return value,
a failure carries the command's one-line error, "nothing to do" skips, unset options are left out, and the child
sees neither Airflow's configuration nor its connections. And the Kubernetes runner's pod, built by the operator
without a cluster: the shared claim holds the data and var dirs, and pod and containers meet Pod Security
``restricted`` (tests/deploy/test_k8s.py checks the same pod against the manifests)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.dags.harness import REPO, library_env, prepare, require_airflow, run_in_airflow
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


# -- the Kubernetes runner's pod ---------------------------------------------------------------------------------
def airflow_pods(home: Path, **settings: str) -> dict[str, Any]:
    """``check_runner.py pods`` with ``settings`` as the Airflow process's ``RECSYS_AIRFLOW_*`` (no metadata DB and
    no cluster needed to build the pod)."""
    require_airflow()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_AIRFLOW_") and k != "VIRTUAL_ENV"}
    env |= {"AIRFLOW_HOME": str(home), "PYTHONPATH": str(REPO / "plugins"), **settings}
    return run_in_airflow("check_runner.py", "pods", env=env)


@pytest.fixture(scope="module")
def configured_pod(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return airflow_pods(tmp_path_factory.mktemp("pods"), RECSYS_AIRFLOW_RUNNER="kubernetes",
                        RECSYS_AIRFLOW_PVC="other-claim", RECSYS_AIRFLOW_MOUNT_PATH="/srv/recsys/")


def test_the_pod_mounts_the_configured_claim_and_points_the_data_and_var_dirs_into_it(
        configured_pod: dict[str, Any]) -> None:
    assert configured_pod["type"] == "RecsysPodOperator"
    spec = configured_pod["pod"]["spec"]
    base = next(c for c in spec["containers"] if c["name"] == "base")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in base["volumeMounts"]}
    assert volumes[mounts["/srv/recsys"]]["persistentVolumeClaim"] == {"claimName": "other-claim"}
    env = {e["name"]: e["value"] for e in base["env"]}
    assert env["RECSYS_VAR_DIR"] == "/srv/recsys" and env["RECSYS_DATA_DIR"] == "/srv/recsys/data"
    # the read-only root filesystem's one writable scratch, for tempfile and the libraries' caches
    assert "emptyDir" in volumes[mounts["/tmp"]] and env["TMPDIR"] == env["HOME"] == "/tmp"
    assert base["envFrom"] == [{"configMapRef": {"name": "recsys-env"}}, {"secretRef": {"name": "recsys-secrets"}}]


RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def test_the_pod_and_both_containers_carry_the_restricted_security_context(configured_pod: dict[str, Any]) -> None:
    spec = configured_pod["pod"]["spec"]
    assert {c["name"] for c in spec["containers"]} == {"base", "airflow-xcom-sidecar"}
    for container in spec["containers"]:
        assert container["securityContext"] == RESTRICTED_CONTAINER, container["name"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"] == "recsys-pipeline"


def test_a_mount_path_that_would_shadow_the_pods_own_volumes_is_rejected(configured_pod: dict[str, Any]) -> None:
    errors = configured_pod["mount_path_errors"]
    assert errors.pop("/srv/ok/") == "accepted: /srv/ok"
    assert set(errors) == {"relative/path", "/", "/tmp", "/airflow/xcom/"}
    for value, error in errors.items():
        assert error.startswith("RECSYS_AIRFLOW_MOUNT_PATH must be an absolute path") and repr(value) in error


def test_nothing_to_do_skips_the_pods_task_too(configured_pod: dict[str, Any]) -> None:
    """The CLI's exit code 3 ("nothing to do yet", the local runner's skip above) skips a pod's task as well,
    instead of failing it (and alerting) every monitor run while no traffic is logged."""
    assert configured_pod["skip_on_exit_code"] == [3]
