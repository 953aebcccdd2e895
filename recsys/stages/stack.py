"""The monitoring stack of the embedded default: Prometheus and Alertmanager as local processes beside the service.

Prometheus scrapes the service and evaluates ``monitoring/prometheus/rules/``; Alertmanager routes with
``monitoring/alertmanager/alertmanager.yml`` to the same e-mail and Slack destinations as ``recsys.notify``
(``RECSYS_SMTP_*``, ``RECSYS_SLACK_WEBHOOK_URL``): one set of settings for both kinds of message. The secrets
are written to files only the current user can read, under the stack's directory, because Alertmanager reads
them from files. A destination that is not configured is left out (its receivers then deliver nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.monitoring import stack
from recsys.notify.channels import SMTP_PORTS
from recsys.settings import Settings, SettingsError
from recsys.stages.base import StageError, StageResult


class StackParams(BaseModel):
    target: str = Field("localhost:3000", description="the service to scrape (host:port)")
    prometheus_port: int = Field(9090, ge=1, le=65535)
    alertmanager_port: int = Field(9093, ge=1, le=65535)
    scrape_interval: str = Field("15s", pattern=r"^\d+(ms|s|m)$")
    workdir: Path | None = Field(None, description="data and rendered configuration; default "
                                                   "<var_dir>/monitoring/stack")


class StackResult(StageResult):
    prometheus_url: str
    alertmanager_url: str
    email: bool = Field(description="alerts are e-mailed (RECSYS_SMTP_HOST set)")
    slack: bool = Field(description="alerts are posted to Slack (RECSYS_SLACK_WEBHOOK_URL set)")
    workdir: Path


def _secret_file(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    return path


def delivery(settings: Settings, secrets: Path) -> stack.Delivery:
    """Alertmanager's destinations from the notification settings (secrets written under ``secrets``)."""
    smarthost = to = password = None
    if settings.smtp_host:
        if not settings.smtp_to:
            raise SettingsError("RECSYS_SMTP_TO: alerts are e-mailed (RECSYS_SMTP_HOST is set) but to nobody")
        smarthost = f"{settings.smtp_host}:{settings.smtp_port or SMTP_PORTS[settings.smtp_security]}"
        to = ", ".join(settings.smtp_to)
        if settings.smtp_password is not None:
            password = _secret_file(secrets / "smtp_password", settings.smtp_password.get_secret_value())
    slack = None
    if settings.slack_webhook_url is not None:
        slack = _secret_file(secrets / "slack_webhook_url", settings.slack_webhook_url.get_secret_value())
    return stack.Delivery(smarthost=smarthost, require_tls=settings.smtp_security == "starttls",
                          sender=settings.smtp_from, to=to, username=settings.smtp_user, password_file=password,
                          slack_url_file=slack)


def start_stack(settings: Settings, params: StackParams) -> tuple[StackResult, list[stack.Daemon]]:
    """Start Alertmanager, then Prometheus; the caller stops the daemons (``stack.running``)."""
    workdir = params.workdir or settings.var_dir / "monitoring" / "stack"
    try:
        route = delivery(settings, workdir / "secrets")
        manager = stack.start_alertmanager(stack.alertmanager_config(route), workdir / "alertmanager",
                                           params.alertmanager_port)
    except stack.StackError as exc:
        raise StageError(str(exc)) from exc
    try:
        config = stack.prometheus_config([params.target], rule_files=stack.rule_files(),
                                         alertmanager=manager.url.removeprefix("http://"),
                                         scrape_interval=params.scrape_interval,
                                         evaluation_interval=params.scrape_interval)
        prom = stack.start_prometheus(config, workdir / "prometheus", params.prometheus_port)
    except stack.StackError as exc:
        manager.stop()
        raise StageError(str(exc)) from exc
    result = StackResult(prometheus_url=prom.url, alertmanager_url=manager.url, email=route.smarthost is not None,
                         slack=route.slack_url_file is not None, workdir=workdir)
    return result, [prom, manager]
