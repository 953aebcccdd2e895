"""The embedded Airflow: this project's DAGs on one machine (``make airflow``; the tests start the same).

``python -m recsys_airflow.local --home var/airflow --port 8080`` (in the Airflow env, ``plugins/`` on the path)
writes the configuration into the environment of four processes (api-server, scheduler, dag-processor,
triggerer), migrates the metadata database (SQLite in ``--home`` unless ``RECSYS_AIRFLOW_DB_URL`` names another,
e.g. PostgreSQL), creates the registry pool of one slot, starts them with their logs in ``<home>/logs/``, waits
until the API answers, prints the URL and the login, and stops them all on Ctrl-C or SIGTERM.

``RECSYS_AIRFLOW_EXECUTOR=celery`` runs the tasks on Airflow's CeleryExecutor instead of the LocalExecutor: a fifth
process, ``airflow celery worker``, takes them from the broker ``RECSYS_AIRFLOW_BROKER_URL`` (default the machine's
Redis, ``redis://127.0.0.1:6379/0``; the tests run it there) on the queue ``RECSYS_AIRFLOW_QUEUE``
(default ``default``), and writes task states to the metadata database as Celery's result backend, so that must be
a server database (PostgreSQL: ``RECSYS_AIRFLOW_DB_URL``). More workers on more machines only need the same
environment and ``airflow celery worker``.

Auth stays on: Airflow's SimpleAuthManager with one admin, ``admin``, whose password is ``RECSYS_AIRFLOW_PASSWORD``
or generated once into ``<home>/passwords.json`` (mode 0600); the JWT secret shared by the components is generated
once into ``<home>/jwt_secret``. The DAGs' connections come from the library's settings (one set of variables for
both): ``RECSYS_SERVICE_URL`` + ``RECSYS_ADMIN_TOKEN`` → ``recsys_service``, ``RECSYS_SLACK_WEBHOOK_URL`` →
``recsys_slack``, ``RECSYS_SMTP_*`` → ``recsys_smtp``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from recsys_airflow.config import REGISTRY_POOL, REPO, SERVICE_CONN, SLACK_CONN, SMTP_CONN, environment

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
CELERY_WORKER = "celery worker"
USER = "admin"


def _secret_file(path: Path, make: str) -> str:
    """The secret kept in ``path`` (created 0600 with ``make`` the first time)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make)
    return path.read_text().strip()


def password(home: Path, env: Mapping[str, str] | None = None) -> str:
    """The admin's password: ``RECSYS_AIRFLOW_PASSWORD``, else the one generated into ``<home>/passwords.json``."""
    path = home / "passwords.json"
    wanted = (environment() if env is None else env).get("RECSYS_AIRFLOW_PASSWORD", "").strip()
    if wanted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({USER: wanted}))
        path.chmod(0o600)
        return wanted
    return json.loads(_secret_file(path, json.dumps({USER: secrets.token_urlsafe(12)})))[USER]


def connections(env: Mapping[str, str]) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` JSON for the connections the library's settings describe (unset ones are left out)."""
    conns: dict[str, dict[str, object]] = {}
    url, token = env.get("RECSYS_SERVICE_URL", "").strip(), env.get("RECSYS_ADMIN_TOKEN", "").strip()
    if url and token:
        scheme, _, rest = url.partition("://")
        host, _, port = rest.rstrip("/").partition(":")
        conns[SERVICE_CONN] = {"conn_type": "http", "host": host, "schema": scheme,
                               "port": int(port) if port else None, "password": token}
    if webhook := env.get("RECSYS_SLACK_WEBHOOK_URL", "").strip():
        conns[SLACK_CONN] = {"conn_type": "slackwebhook", "password": webhook}
    if host := env.get("RECSYS_SMTP_HOST", "").strip():
        security = env.get("RECSYS_SMTP_SECURITY", "starttls").strip() or "starttls"
        default_port = {"starttls": 587, "ssl": 465, "none": 25}.get(security, 587)
        conns[SMTP_CONN] = {
            "conn_type": "smtp", "host": host, "port": int(env.get("RECSYS_SMTP_PORT") or default_port),
            "login": env.get("RECSYS_SMTP_USER") or None, "password": env.get("RECSYS_SMTP_PASSWORD") or None,
            "extra": {"from_email": env.get("RECSYS_SMTP_FROM") or "recsys@localhost",
                      "disable_tls": security != "starttls", "disable_ssl": security != "ssl", "timeout": 10}}
    return {f"AIRFLOW_CONN_{cid.upper()}": json.dumps({k: v for k, v in c.items() if v is not None})
            for cid, c in conns.items()}


def airflow_env(home: Path, port: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every Airflow process of the embedded deployment (see the module docstring)."""
    base = environment() if base is None else dict(base)
    home = home.resolve()
    db_url = base.get("RECSYS_AIRFLOW_DB_URL", "").strip() or f"sqlite:///{home / 'airflow.db'}"
    password(home, base)
    env = {
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": base.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret_file(home / "jwt_secret", secrets.token_urlsafe(32)),
        "AIRFLOW__API__SECRET_KEY": _secret_file(home / "api_secret_key", secrets.token_urlsafe(32)),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": base.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "30"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(port + 1),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port + 2),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port + 3),
        "PYTHONPATH": str(REPO / "plugins"),
        "OPENBLAS_NUM_THREADS": base.get("OPENBLAS_NUM_THREADS", "1"),
        "OMP_WAIT_POLICY": base.get("OMP_WAIT_POLICY", "PASSIVE"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.update(connections(base))
    if celery(base):
        if db_url.startswith("sqlite"):
            raise ValueError("RECSYS_AIRFLOW_EXECUTOR=celery needs a server metadata database (Celery keeps its "
                             "results there): set RECSYS_AIRFLOW_DB_URL, e.g. postgresql://…")
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": base.get("RECSYS_AIRFLOW_BROKER_URL", "").strip()
            or "redis://127.0.0.1:6379/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue(base),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": base.get("AIRFLOW__CELERY__WORKER_CONCURRENCY", "2"),
        })
    return env


def celery(env: Mapping[str, str]) -> bool:
    executor = env.get("RECSYS_AIRFLOW_EXECUTOR", "local").strip().lower() or "local"
    if executor not in ("local", "celery"):
        raise ValueError(f"RECSYS_AIRFLOW_EXECUTOR must be local or celery, got {executor!r}")
    return executor == "celery"


def queue(env: Mapping[str, str]) -> str:
    return env.get("RECSYS_AIRFLOW_QUEUE", "").strip() or "default"


def components(env: Mapping[str, str]) -> tuple[str, ...]:
    """The processes of this deployment: the four, plus a Celery worker on the CeleryExecutor."""
    return COMPONENTS + ((CELERY_WORKER,) if env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor" else ())


def airflow(env: Mapping[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One ``airflow`` CLI command of this env (the one this Python runs in)."""
    exe = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run([exe, *args], env=dict(env), check=check, text=True, capture_output=True)  # nosec B603: the venv's airflow executable, argv from this module, no shell


def prepare(env: Mapping[str, str]) -> None:
    """Migrate the metadata database and create the registry pool (idempotent)."""
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", REGISTRY_POOL, "1", "recsys: registrations and alias moves, one at a time")


def prepared(env: Mapping[str, str]) -> bool:
    """:func:`prepare`, with a failing ``airflow`` command said in one line on stderr (False)."""
    try:
        prepare(env)
    except subprocess.CalledProcessError as exc:
        print(f"error: airflow {' '.join(exc.cmd[1:])} failed: {(exc.stderr or '').strip()[-400:]}",
              file=sys.stderr)
        return False
    return True


def start(env: Mapping[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    """Start the components (logs in ``logs``): the four, and the Celery worker on the CeleryExecutor."""
    logs.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).with_name("airflow"))
    procs = []
    for component in components(env):
        out = (logs / f"{component.replace(' ', '-')}.log").open("ab")
        args = component.split()
        if component == CELERY_WORKER:
            args += ["--queues", env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]]
        procs.append(subprocess.Popen([exe, *args], env=dict(env), stdout=out, stderr=subprocess.STDOUT,  # nosec B603: the venv's airflow executable and a component name, no shell
                                      start_new_session=True))
    return procs


def wait_healthy(url: str, procs: list[subprocess.Popen[bytes]], names: tuple[str, ...] = COMPONENTS,
                 timeout: float = 180) -> dict[str, object]:
    """Wait until the API server's health says the metadata DB and the scheduler are healthy."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        for proc, component in zip(procs, names, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {component} exited with {proc.returncode} (see its log)")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as r:  # nosec B310: http URL of the local Airflow this tool started
                health = json.load(r)
            if all(health.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")):
                return health
            last = json.dumps(health)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(1)
    raise TimeoutError(f"Airflow at {url} was not healthy within {timeout:.0f} s: {last}")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_airflow.local", description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=REPO / "var" / "airflow", help="AIRFLOW_HOME")
    parser.add_argument("--port", type=int, default=8080,
                        help="the API server's (and UI's) port; the next three serve the scheduler's health check "
                             "and the task and trigger logs")
    parser.add_argument("--prepare-only", action="store_true",
                        help="migrate the metadata database, create the pool, print the environment as JSON, exit")
    args = parser.parse_args(argv)
    try:
        env = airflow_env(args.home, args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    url = env["AIRFLOW__API__BASE_URL"]
    print(f"preparing Airflow in {env['AIRFLOW_HOME']} (metadata DB: "
          f"{env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].split('://')[0]}) …", file=sys.stderr, flush=True)
    if not prepared(env):
        return 1
    if args.prepare_only:
        print(json.dumps({k: v for k, v in env.items() if k.startswith(("AIRFLOW", "PYTHONPATH"))}), flush=True)
        return 0
    procs = start(env, args.home / "logs")
    signal.signal(signal.SIGTERM, lambda *_: (stop(procs), sys.exit(0)))
    try:
        wait_healthy(url, procs, components(env))
        print(f"Airflow UI       {url}   login: {USER} / {password(args.home)}  (DAGs unpaused; logs: "
              f"{args.home / 'logs'})", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        failed = [c for p, c in zip(procs, components(env), strict=True) if p.poll() is not None]
        print(f"error: airflow {', '.join(failed)} stopped (see {args.home / 'logs'})", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(procs)


if __name__ == "__main__":
    sys.exit(main())
