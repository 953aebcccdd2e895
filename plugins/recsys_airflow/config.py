"""The DAGs' configuration, read once from the environment of the Airflow process that parses them.

===================================  ====================================================================
variable                             meaning (default)
===================================  ====================================================================
``RECSYS_AIRFLOW_RUNNER``            ``local``: a subprocess of the library env's ``recsys``; ``kubernetes``:
                                     a KubernetesPodOperator with the recsys image (``local``)
``RECSYS_AIRFLOW_RECSYS``            the library env's ``recsys`` executable (``<repo>/.venv/bin/recsys``)
``RECSYS_AIRFLOW_WORKDIR``           the subprocess's working directory: where ``data/`` and ``var/`` live
                                     (the repository)
``RECSYS_AIRFLOW_IMAGE``             the recsys image of the pods (``recsys:latest``)
``RECSYS_AIRFLOW_NAMESPACE``         the pods' namespace (``recsys``)
``RECSYS_AIRFLOW_SERVICE_ACCOUNT``   the pods' service account (``recsys-pipeline``)
``RECSYS_AIRFLOW_CONFIGMAP``         ConfigMap whose keys become the pods' environment (``recsys-env``)
``RECSYS_AIRFLOW_SECRET``            Secret whose keys become the pods' environment (``recsys-secrets``)
``RECSYS_AIRFLOW_PVC``               the PersistentVolumeClaim (ReadWriteMany) mounted into every pod, so what
                                     one task writes the next one reads (``recsys-pipeline-data``)
``RECSYS_AIRFLOW_MOUNT_PATH``        where the claim is mounted; the pods' ``RECSYS_VAR_DIR`` is this path and
                                     ``RECSYS_DATA_DIR`` its ``data`` folder (``/var/lib/recsys``)
``RECSYS_AIRFLOW_RETRIES``           retries of a task (2), with exponential backoff from
``RECSYS_AIRFLOW_RETRY_DELAY``       seconds (30)
``RECSYS_AIRFLOW_MONITOR_SCHEDULE``  cron of the ``monitor`` DAG (``*/15 * * * *``)
``RECSYS_AIRFLOW_WEEKLY_SCHEDULE``   cron of the weekly DAGs: the Monday after a replay week (``0 3 * * 1``)
``RECSYS_AIRFLOW_AB_SCHEDULE``       cron of ``ab_decision`` (``0 6 * * *``)
``RECSYS_AIRFLOW_GATE_POLICY``       ``auto`` (a pass promotes) or ``manual`` (a pass waits for approval)
``RECSYS_AIRFLOW_START``             the DAGs' start date (``1997-09-15``: the data's week 0, so a backfill
                                     over the data's dates replays its history; see docs/airflow.md)
``RECSYS_SMTP_TO``, ``_FROM``         who the failure e-mails go to and come from (the library's too)
===================================  ====================================================================

Connections (``AIRFLOW_CONN_<ID>`` JSON or the UI): ``recsys_service`` (http: host, port, password = the
service's admin token), ``recsys_slack`` (slackwebhook: password = the webhook URL), ``recsys_smtp`` (smtp).
A missing connection turns its step off (the reload is skipped, the notifier logs one line), never fails a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[2]
SERVICE_CONN, SLACK_CONN, SMTP_CONN = "recsys_service", "recsys_slack", "recsys_smtp"
SERVICE_ENV = {"RECSYS_SERVICE_URL": (SERVICE_CONN, "url"), "RECSYS_ADMIN_TOKEN": (SERVICE_CONN, "password")}
"""What ``recsys service reload`` reads, from the ``recsys_service`` connection (the token never on a command line)."""
REGISTRY_POOL = "recsys_registry"
"""A pool of one slot: the tasks that register or move aliases never run at the same time."""


def environment() -> dict[str, str]:
    """The process's environment: the one place the Airflow side reads it (as ``recsys.settings`` does for the
    library), for the settings here, the launcher and the runner's child processes."""
    return dict(os.environ)


def _env(name: str, default: str) -> str:
    value = environment().get(name, "").strip()
    return value or default


def _mount_path(value: str) -> str:
    reserved = ("", "/tmp", "/airflow/xcom")  # nosec B108: paths refused here, not a temp file used
    if not value.startswith("/") or value.rstrip("/") in reserved:
        raise ValueError(f"RECSYS_AIRFLOW_MOUNT_PATH must be an absolute path other than /, /tmp and "
                         f"/airflow/xcom (the pods' own volumes), got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class RunnerConfig:
    runner: Literal["local", "kubernetes"] = "local"
    recsys: str = str(REPO / ".venv" / "bin" / "recsys")
    workdir: str = str(REPO)
    image: str = "recsys:latest"
    namespace: str = "recsys"
    service_account: str = "recsys-pipeline"
    configmap: str = "recsys-env"
    secret: str = "recsys-secrets"
    pvc: str = "recsys-pipeline-data"
    mount_path: str = "/var/lib/recsys"
    retries: int = 2
    retry_delay: timedelta = timedelta(seconds=30)
    monitor_schedule: str = "*/15 * * * *"
    weekly_schedule: str = "0 3 * * 1"
    ab_schedule: str = "0 6 * * *"
    gate_policy: Literal["auto", "manual"] = "auto"
    start: datetime = datetime(1997, 9, 15, tzinfo=UTC)
    alert_to: list[str] = field(default_factory=list)
    alert_from: str | None = None

    @classmethod
    def from_env(cls) -> RunnerConfig:
        runner = _env("RECSYS_AIRFLOW_RUNNER", "local")
        if runner not in ("local", "kubernetes"):
            raise ValueError(f"RECSYS_AIRFLOW_RUNNER must be 'local' or 'kubernetes', got {runner!r}")
        policy = _env("RECSYS_AIRFLOW_GATE_POLICY", "auto")
        if policy not in ("auto", "manual"):
            raise ValueError(f"RECSYS_AIRFLOW_GATE_POLICY must be 'auto' or 'manual', got {policy!r}")
        start = datetime.fromisoformat(_env("RECSYS_AIRFLOW_START", "1997-09-15"))
        return cls(
            runner=runner,  # type: ignore[arg-type]
            recsys=_env("RECSYS_AIRFLOW_RECSYS", cls.recsys),
            workdir=_env("RECSYS_AIRFLOW_WORKDIR", cls.workdir),
            image=_env("RECSYS_AIRFLOW_IMAGE", cls.image),
            namespace=_env("RECSYS_AIRFLOW_NAMESPACE", cls.namespace),
            service_account=_env("RECSYS_AIRFLOW_SERVICE_ACCOUNT", cls.service_account),
            configmap=_env("RECSYS_AIRFLOW_CONFIGMAP", cls.configmap),
            secret=_env("RECSYS_AIRFLOW_SECRET", cls.secret),
            pvc=_env("RECSYS_AIRFLOW_PVC", cls.pvc),
            mount_path=_mount_path(_env("RECSYS_AIRFLOW_MOUNT_PATH", cls.mount_path)),
            retries=int(_env("RECSYS_AIRFLOW_RETRIES", "2")),
            retry_delay=timedelta(seconds=float(_env("RECSYS_AIRFLOW_RETRY_DELAY", "30"))),
            monitor_schedule=_env("RECSYS_AIRFLOW_MONITOR_SCHEDULE", cls.monitor_schedule),
            weekly_schedule=_env("RECSYS_AIRFLOW_WEEKLY_SCHEDULE", cls.weekly_schedule),
            ab_schedule=_env("RECSYS_AIRFLOW_AB_SCHEDULE", cls.ab_schedule),
            gate_policy=policy,  # type: ignore[arg-type]
            start=start if start.tzinfo else start.replace(tzinfo=UTC),
            alert_to=[a.strip() for a in _env("RECSYS_SMTP_TO", "").split(",") if a.strip()],
            alert_from=_env("RECSYS_SMTP_FROM", "") or None,
        )

    def dag_args(self, *, schedule: object, tags: list[str], doc: str | None, timeout: timedelta,
                 params: dict[str, object] | None = None) -> dict[str, object]:
        """What every DAG of this project shares: its start date, no catchup, one run at a time, the ``recsys``
        tag, its docstring as its doc, the task defaults and the DAG-level failure notifiers."""
        from recsys_airflow.notify import dag_failure_notifiers

        return {"schedule": schedule, "start_date": self.start, "catchup": False, "max_active_runs": 1,
                "tags": ["recsys", *tags], "doc_md": doc, "default_args": self.default_args(timeout=timeout),
                "on_failure_callback": dag_failure_notifiers(self), "params": params or {}}

    def default_args(self, *, timeout: timedelta) -> dict[str, object]:
        """What every task of a DAG gets: owner, retries with exponential backoff, an execution timeout, and the
        failure notifiers."""
        from recsys_airflow.notify import failure_notifiers

        return {"owner": "recsys", "retries": self.retries, "retry_delay": self.retry_delay,
                "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=10),
                "execution_timeout": timeout, "on_failure_callback": failure_notifiers(self)}


CONFIG = RunnerConfig.from_env()


def pull(task_id: str, key: str) -> str:
    """A template for one field of a task's JSON result (works with either runner: both push ``return_value``)."""
    return "{{ ti.xcom_pull(task_ids='" + task_id + "')['" + key + "'] }}"
