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


BINARIES = {"prometheus": ("prometheus",), "alertmanager": ("alertmanager", "prometheus-alertmanager"),
            "promtool": ("promtool",), "amtool": ("amtool",)}
"""Each program and the names it has on the PATH (Debian calls Alertmanager ``prometheus-alertmanager``)."""


def binary(program: str) -> str:
    """The path of ``program`` (a key of :data:`BINARIES`); StackError naming the Debian packages otherwise."""
    for name in BINARIES[program]:
        found = shutil.which(name)
        if found:
            return found
    raise StackError(f"{program} is not installed (Debian: apt-get install prometheus prometheus-alertmanager; "
                     "or `make monitoring-tools`)")


def has_binary(program: str) -> bool:
    return any(shutil.which(name) for name in BINARIES[program])


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    """The repository's rule files (recording rules first)."""
    return sorted(rules_dir.glob("*.yml"), key=lambda p: (p.name != "recording.yml", p.name))


def load_rules(rules_dir: Path = RULES_DIR, *, for_overrides: Mapping[str, str] | None = None
               ) -> dict[str, dict[str, Any]]:
    """The rule files as data (file name -> document), with ``for:`` replaced for the alerts named in
    ``for_overrides`` (``"*"`` for every alert); expressions are never changed."""
    docs: dict[str, dict[str, Any]] = {}
    overrides = dict(for_overrides or {})
    for path in rule_files(rules_dir):
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
    config["global"].pop("scrape_timeout", None)  # defaults to the interval, never longer
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


@dataclass(frozen=True)
class Delivery:
    """Where Alertmanager delivers: an SMTP server (None: no e-mail) and a Slack webhook whose URL is in a file
    (None: no Slack). Secrets stay in files, as Alertmanager wants them."""

    smarthost: str | None = None
    require_tls: bool = True
    sender: str | None = None
    to: str | None = None
    username: str | None = None
    password_file: Path | None = None
    slack_url_file: Path | None = None


def alertmanager_config(delivery: Delivery, *, group_wait: str | None = None, group_interval: str | None = None,
                        repeat_interval: str | None = None) -> dict[str, Any]:
    """The production routing (``monitoring/alertmanager/alertmanager.yml``: routes, grouping, inhibition,
    templates) with its receivers delivering as ``delivery`` says and, optionally, other timings."""
    config = yaml.safe_load(ALERTMANAGER_FILE.read_text(encoding="utf-8"))
    templates = config.get("templates") or []
    config["templates"] = [t if os.path.isabs(t) else str(ALERTMANAGER_FILE.parent / t) for t in templates]
    for receiver in config.get("receivers", []):
        emails = [dict(e) for e in receiver.pop("email_configs", None) or []]
        slacks = [dict(c) for c in receiver.pop("slack_configs", None) or []]
        if delivery.smarthost and emails:
            for email in emails:
                email.update(smarthost=delivery.smarthost, require_tls=delivery.require_tls)
                for key, value in (("from", delivery.sender), ("to", delivery.to),
                                   ("auth_username", delivery.username),
                                   ("auth_password_file", delivery.password_file)):
                    if value is not None:
                        email[key] = str(value)
                    elif key.startswith("auth_"):
                        email.pop(key, None)
            receiver["email_configs"] = emails
        if delivery.slack_url_file is not None and slacks:
            for slack in slacks:
                slack.pop("api_url", None)
                slack["api_url_file"] = str(delivery.slack_url_file)
            receiver["slack_configs"] = slacks
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
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)  # nosec B603: prometheus/alertmanager argv built here, no shell
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
    workdir = workdir.resolve()  # the daemon runs in it: relative paths would point elsewhere
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
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    argv = [binary("alertmanager"), f"--config.file={cfg}",
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
