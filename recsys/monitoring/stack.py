"""Run the real Prometheus and Alertmanager beside the embedded service, with this repository's configuration.

The embedded default has no container engine, so the monitoring stack runs as two local processes (Debian's
``prometheus`` and ``prometheus-alertmanager`` packages): :func:`prometheus_config` and
:func:`alertmanager_config` render the production files of ``monitoring/`` for a given target, receivers and
intervals (a test shortens them; the files in the repository keep production values), and :class:`Daemon` starts
a binary, waits for its readiness endpoint and stops it. Used by ``make monitoring``, the end-to-end alert test
and ``benchmarks/soak.py``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
"""The repository's ``monitoring/`` directory (configuration, rules, dashboards)."""
RULES_DIR = MONITORING / "prometheus" / "rules"
ALERTMANAGER_FILE = MONITORING / "alertmanager" / "alertmanager.yml"
PROMETHEUS_FILE = MONITORING / "prometheus" / "prometheus.yml"


class StackError(RuntimeError):
    """A monitoring binary is missing, or did not start (the message says which and where its log is)."""


def binary(*names: str) -> str:
    """The first of ``names`` on the PATH; StackError naming the Debian package otherwise."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise StackError(f"none of {', '.join(names)} is installed (Debian: apt-get install prometheus "
                     "prometheus-alertmanager; or `make monitoring-tools`)")


def load_rules(rules_dir: Path = RULES_DIR, *, for_overrides: Mapping[str, str] | None = None
               ) -> dict[str, dict[str, Any]]:
    """The rule files as data (file name -> document), with ``for:`` replaced for the alerts named in
    ``for_overrides`` (``"*"`` for every alert); expressions are never changed."""
    docs: dict[str, dict[str, Any]] = {}
    overrides = dict(for_overrides or {})
    for path in sorted(rules_dir.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert")
                if name is not None and (name in overrides or "*" in overrides):
                    rule["for"] = overrides.get(name, overrides.get("*"))
        docs[path.name] = doc
    return docs


def prometheus_config(targets: Sequence[str], *, rule_files: Sequence[Path], alertmanager: str | None = None,
                      scrape_interval: str = "15s", evaluation_interval: str = "15s",
                      job: str = "recsys") -> dict[str, Any]:
    """The production scrape configuration (``monitoring/prometheus/prometheus.yml``) pointed at ``targets``."""
    base = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    config = copy.deepcopy(base)
    config["global"] = {**config.get("global", {}), "scrape_interval": scrape_interval,
                        "evaluation_interval": evaluation_interval}
    scrapes = [s for s in config.get("scrape_configs", []) if s.get("job_name") == job]
    if not scrapes:
        raise StackError(f"{PROMETHEUS_FILE} has no scrape job {job!r}")
    scrape = {k: v for k, v in scrapes[0].items() if k not in ("static_configs", "scrape_interval")}
    scrape["static_configs"] = [{"targets": list(targets)}]
    config["scrape_configs"] = [scrape]
    config["rule_files"] = [str(p) for p in rule_files]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def alertmanager_config(*, smarthost: str, slack_url_file: Path, email_to: str | None = None,
                        smtp_from: str | None = None, smtp_require_tls: bool | None = None,
                        group_wait: str | None = None, group_interval: str | None = None,
                        repeat_interval: str | None = None) -> dict[str, Any]:
    """The production routing (``monitoring/alertmanager/alertmanager.yml``) with its deliveries pointed at the
    given SMTP server and Slack webhook (the URL in a file, as in production) and, optionally, other timings."""
    config = yaml.safe_load(ALERTMANAGER_FILE.read_text(encoding="utf-8"))
    glob = config.setdefault("global", {})
    glob["smtp_smarthost"] = smarthost
    glob.pop("smtp_auth_password_file", None)
    glob.pop("smtp_auth_username", None)
    if smtp_from is not None:
        glob["smtp_from"] = smtp_from
    if smtp_require_tls is not None:
        glob["smtp_require_tls"] = smtp_require_tls
    glob.pop("slack_api_url", None)
    glob["slack_api_url_file"] = str(slack_url_file)
    templates = config.get("templates") or []
    config["templates"] = [str(ALERTMANAGER_FILE.parent / t) if not os.path.isabs(t) else t for t in templates]
    for receiver in config.get("receivers", []):
        for email in receiver.get("email_configs", []):
            email.pop("auth_password_file", None)
            email.pop("auth_username", None)
            if email_to is not None:
                email["to"] = email_to
            email.pop("smarthost", None)
        for slack in receiver.get("slack_configs", []):
            slack.pop("api_url", None)
            slack.pop("api_url_file", None)
    route = config["route"]
    for key, value in (("group_wait", group_wait), ("group_interval", group_interval),
                       ("repeat_interval", repeat_interval)):
        if value is not None:
            _set_timing(route, key, value)
    return config


def _set_timing(route: dict[str, Any], key: str, value: str) -> None:
    """Set ``key`` on the root route and wherever a child route sets its own."""
    route[key] = value
    stack = list(route.get("routes") or [])
    while stack:
        child = stack.pop()
        if key in child:
            child[key] = value
        stack.extend(child.get("routes") or [])


@dataclass
class Daemon:
    """A started monitoring binary: its base URL, process and log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)


def _start(name: str, argv: list[str], url: str, workdir: Path, ready_path: str, timeout: float) -> Daemon:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    daemon = Daemon(name, url, proc, log, workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with {proc.returncode}: {daemon.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + ready_path, timeout=1).status_code == 200:
                return daemon
        time.sleep(0.2)
    daemon.stop()
    raise StackError(f"{name} was not ready at {url}{ready_path} within {timeout:.0f} s: {daemon.log_tail()}")


def start_prometheus(config: Mapping[str, Any], workdir: Path, port: int, *, rules: Mapping[str, Any] | None = None,
                     timeout: float = 30.0) -> Daemon:
    """Prometheus on ``127.0.0.1:port`` with ``config`` (rule documents in ``rules`` are written beside it and
    replace the config's ``rule_files``); TSDB under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    if rules is not None:
        paths = []
        for name, doc in rules.items():
            path = workdir / name
            path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            paths.append(str(path))
        config["rule_files"] = paths
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    argv = [binary("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn"]
    return _start("prometheus", argv, f"http://127.0.0.1:{port}", workdir, "/-/ready", timeout)


def start_alertmanager(config: Mapping[str, Any], workdir: Path, port: int, *, timeout: float = 30.0) -> Daemon:
    """Alertmanager on ``127.0.0.1:port`` with ``config`` (no cluster: a single local instance)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    argv = [binary("alertmanager", "prometheus-alertmanager"), f"--config.file={cfg}",
            f"--storage.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", "--log.level=warn"]
    return _start("alertmanager", argv, f"http://127.0.0.1:{port}", workdir, "/-/ready", timeout)


@contextlib.contextmanager
def running(*daemons: Daemon) -> Iterator[tuple[Daemon, ...]]:
    """Stop the daemons on the way out."""
    try:
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """The alerts Prometheus holds now (pending and firing), from ``/api/v1/alerts``."""
    resp = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=10)
    resp.raise_for_status()
    return list(resp.json()["data"]["alerts"])


def query(prometheus_url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query's result vector (``/api/v1/query``)."""
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = at
    resp = httpx.get(f"{prometheus_url}/api/v1/query", params=params, timeout=30)
    resp.raise_for_status()
    body = resp.json()["data"]
    return list(body["result"]) if body["resultType"] in ("vector", "matrix") else [{"value": body["result"]}]
