"""One task = one ``recsys <command> ... --json``; its typed JSON result is the task's XCom ``return_value``.

:func:`recsys_task` builds the operator the configuration names (``RECSYS_AIRFLOW_RUNNER``), so the DAG files
are the same for both:

- ``local`` (:class:`RecsysOperator`): a subprocess of the library env's ``recsys`` in the project's working
  directory. Its stderr (progress, notes) streams into the task log; on a non-zero exit the task fails with the
  command's one-line ``error: ...`` message, which the failure notifiers carry; exit code 3 ("nothing to do
  yet": no traffic logged, no champion) skips the task.
- ``kubernetes`` (:class:`RecsysPodOperator`): the same command in a pod of the recsys image, its environment
  from the ConfigMap and Secret the configuration names, the JSON written to ``/airflow/xcom/return.json`` (the
  operator's XCom sidecar pushes it); exit code 3 skips the task here too. Every pod mounts the shared claim the
  configuration names, where its ``RECSYS_VAR_DIR`` and ``RECSYS_DATA_DIR`` are, so the tasks' files outlive
  their pods, and meets Pod Security ``restricted`` (see :func:`_pod_operator`).

An option whose templated value renders empty or ``None`` (an unset param, a run without a logical date) is
left out together with its value, so ``"--date", "{{ logical_date }}"`` means "the logical date, if any".

``connections`` maps an environment variable of the command to ``(connection id, field)``: the secret goes from
Airflow's connection into the child's environment, never onto a command line (locally; on Kubernetes the same
variables come from the pod's Secret).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from recsys_airflow.config import CONFIG, RunnerConfig, environment

# what the child never sees: Airflow's own configuration and connections (secrets) and the Airflow env's paths
_DROPPED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
_DROPPED = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
_PROCESS_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "NO_COLOR": "1",
                     "PYTHONUNBUFFERED": "1"}


NOTHING_TO_DO_EXIT = 3
"""The CLI's exit code for "nothing to do yet" (no traffic logged, no champion): the task is skipped."""


class RecsysCommandError(RuntimeError):
    """The command exited non-zero; the message is its one-line error."""


UNSET = ("", "None")


def drop_unset(arguments: Sequence[object]) -> list[str]:
    """The rendered arguments without the options whose value rendered empty or ``None``."""
    args = [str(a) for a in arguments]
    kept: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--") and i + 1 < len(args) and args[i + 1] in UNSET:
            continue
        if arg in UNSET and i > 0 and args[i - 1].startswith("--"):
            continue
        kept.append(arg)
    return kept


def one_line_error(stderr_lines: Sequence[str], code: int) -> str:
    """The command's ``error: ...`` line (the CLI prints one for every expected failure), else its last words."""
    for line in reversed(stderr_lines):
        for prefix in ("error:", "nothing to do:"):
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()
    tail = [line for line in stderr_lines if line.strip()][-1:]
    return f"exit code {code}" + (f": {tail[0].strip()}" if tail else "")


def child_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)}
    for key, value in _PROCESS_DEFAULTS.items():
        env.setdefault(key, value)
    env.update(extra)
    return env


def find_connection(conn_id: str) -> Any | None:
    """The connection, or None when it is defined nowhere (environment, secrets backend, metadata DB)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def connection_env(connections: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """``{VAR: (conn_id, field)}`` -> ``{VAR: value}``; ``field`` is an attribute (``password``) or ``url`` (the
    connection as ``scheme://host:port``). A connection that does not exist is left out."""
    env: dict[str, str] = {}
    for var, (conn_id, attr) in connections.items():
        conn = find_connection(conn_id)
        if conn is None:
            continue
        if attr == "url":
            scheme = conn.schema or "http"
            value = f"{scheme}://{conn.host}" + (f":{conn.port}" if conn.port else "")
        else:
            value = getattr(conn, attr) or ""
        if value:
            env[var] = value
    return env


class RecsysOperator(BaseOperator):
    """Run ``recsys <arguments> --json`` in the library env (see the module docstring)."""

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e8f4fd"

    def __init__(self, *, arguments: Sequence[str], connections: Mapping[str, tuple[str, str]] | None = None,
                 requires_connection: str | None = None, config: RunnerConfig = CONFIG, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arguments = list(arguments)
        self.connections = dict(connections or {})
        self.requires_connection = requires_connection
        self.config = config
        self._proc: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        return [self.config.recsys, *drop_unset(self.arguments), "--json"]

    def execute(self, context: Any) -> Any:
        if self.requires_connection and find_connection(self.requires_connection) is None:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"connection {self.requires_connection} is not configured: skipped")
        cmd = self.command()
        self.log.info("running %s (in %s)", " ".join(cmd), self.config.workdir)
        env = child_env(environment(), connection_env(self.connections))
        try:
            proc = subprocess.Popen(cmd, cwd=self.config.workdir, env=env, stdout=subprocess.PIPE,  # nosec B603: the recsys CLI argv the DAG declares, no shell
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            raise RecsysCommandError(f"cannot start {cmd[0]}: {exc.strerror} (is the library env installed? "
                                     "RECSYS_AIRFLOW_RECSYS names it)") from exc
        self._proc = proc
        stderr: list[str] = []

        def drain() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                line = line.rstrip("\n")
                stderr.append(line)
                self.log.info("%s", line)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            assert proc.stdout is not None
            stdout = proc.stdout.read()  # stderr is the reader thread's: communicate() would race it for lines
            proc.wait()
        finally:
            if proc.poll() is None:  # the task was killed (timeout): take the command down with it
                self.on_kill()
        reader.join(timeout=5)
        if proc.returncode == NOTHING_TO_DO_EXIT:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"nothing to do: {one_line_error(stderr, proc.returncode)}")
        if proc.returncode != 0:
            raise RecsysCommandError(f"recsys {' '.join(str(a) for a in self.arguments[:2])}: "
                                     f"{one_line_error(stderr, proc.returncode)}")
        try:
            return json.loads(stdout)
        except json.JSONDecodeError as exc:
            raise RecsysCommandError(f"recsys {self.arguments[0]} printed no JSON result: {stdout[:200]!r}") from exc

    def on_kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


UID = 10001
"""The pipeline pods' user and group (the recsys image's, the serving and MLflow pods' too, k8s/base)."""
SCRATCH = "/tmp"  # nosec B108: the pod's own emptyDir (one per pod, not shared), not the host's /tmp
"""The pods' writable scratch (an emptyDir: the root filesystem is read-only): TMPDIR and HOME."""


def pod_environment(config: RunnerConfig) -> dict[str, str]:
    """What the runner sets in every pod on top of the ConfigMap and Secret (``env`` wins over ``envFrom``): the
    data and var dirs on the shared claim, whatever the ConfigMap says, and the scratch for tempfile and caches."""
    return {"RECSYS_VAR_DIR": config.mount_path, "RECSYS_DATA_DIR": f"{config.mount_path}/data",
            "TMPDIR": SCRATCH, "HOME": SCRATCH}


def restricted_security_context(*, read_only_root: bool = True) -> Any:
    """A container security context the Pod Security ``restricted`` profile admits."""
    from kubernetes.client import models as k8s

    return k8s.V1SecurityContext(
        run_as_non_root=True, run_as_user=UID, run_as_group=UID, allow_privilege_escalation=False,
        privileged=False, read_only_root_filesystem=read_only_root,
        capabilities=k8s.V1Capabilities(drop=["ALL"]), seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"))


def _pod_operator(task_id: str, arguments: Sequence[str], config: RunnerConfig, **kwargs: Any) -> BaseOperator:
    """The same command in a pod of the recsys image (``RECSYS_AIRFLOW_RUNNER=kubernetes``).

    The pod meets Pod Security ``restricted``: UID/GID 10001, no privilege escalation, every capability dropped,
    seccomp ``RuntimeDefault`` (pod and both containers, the XCom sidecar included), a read-only root filesystem
    with an emptyDir at ``/tmp``. The claim ``config.pvc`` is mounted at ``config.mount_path`` and holds
    ``RECSYS_VAR_DIR`` and ``RECSYS_DATA_DIR``, so the batches, the store, the bundles and the reports one task
    writes are there for the next (``fsGroup`` makes a fresh volume writable by the pod's group)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    class RecsysPodOperator(KubernetesPodOperator):
        def execute(self, context: Any) -> Any:
            self.arguments = drop_unset(self.arguments or [])
            return super().execute(context)

    kwargs.pop("connections", None)  # on Kubernetes the secrets come from the pod's Secret
    kwargs.pop("requires_connection", None)  # and the service's URL from its ConfigMap
    script = 'mkdir -p /airflow/xcom && recsys "$@" --json > /airflow/xcom/return.json'
    return RecsysPodOperator(
        task_id=task_id, name=f"recsys-{task_id.replace('_', '-')}", namespace=config.namespace,
        image=config.image, cmds=["/bin/sh", "-c", script, "recsys"], arguments=list(arguments),
        service_account_name=config.service_account, automount_service_account_token=False,
        do_xcom_push=True, get_logs=True, on_finish_action="delete_succeeded_pod",
        skip_on_exit_code=NOTHING_TO_DO_EXIT,  # "nothing to do yet" skips, as with the local runner
        env_from=[k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=config.configmap)),
                  k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=config.secret))],
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in pod_environment(config).items()],
        volumes=[k8s.V1Volume(name="data", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                     claim_name=config.pvc)),
                 k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="2Gi"))],
        volume_mounts=[k8s.V1VolumeMount(name="data", mount_path=config.mount_path),
                       k8s.V1VolumeMount(name="tmp", mount_path=SCRATCH)],
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": "1", "memory": "2Gi"},
                                                       limits={"memory": "4Gi"}),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=UID, run_as_group=UID, fs_group=UID,
            fs_group_change_policy="OnRootMismatch", seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        container_security_context=restricted_security_context(),
        xcom_sidecar_container_security_context=restricted_security_context(),
        **kwargs)


def recsys_task(task_id: str, *arguments: str, connections: Mapping[str, tuple[str, str]] | None = None,
                requires_connection: str | None = None, config: RunnerConfig = CONFIG,
                **kwargs: Any) -> BaseOperator:
    """The operator running ``recsys *arguments --json`` with the configured runner (templated arguments).

    ``requires_connection``: locally, the task is skipped when that connection is not configured (the service's
    reload without a ``recsys_service`` connection)."""
    if config.runner == "kubernetes":
        return _pod_operator(task_id, arguments, config, **kwargs)
    return RecsysOperator(task_id=task_id, arguments=arguments, connections=connections,
                          requires_connection=requires_connection, config=config, **kwargs)
