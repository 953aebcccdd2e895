"""The channels: ``outbox`` (a JSON-lines file), ``log``, ``slack`` (an incoming webhook) and ``email`` (SMTP).

A channel's ``send`` makes one attempt and raises on failure: a :class:`~recsys.notify.models.DeliveryError`
marked ``permanent`` when trying again cannot help (a 4xx answer, a refused recipient, a bad login), anything else
is retried by the notifier. Every message carries its notification id (a Slack field and the
``X-Recsys-Notification-Id`` header; the e-mail's ``Message-ID`` and the same header), so a receiver can drop a
repeat. Channels that need settings check them at construction and name the missing variable.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any, ClassVar

from recsys.notify import templates
from recsys.notify.models import Channel, DeliveryError, Notification
from recsys.settings import Settings, SettingsError

logger = logging.getLogger("recsys.notify")

ID_HEADER = "X-Recsys-Notification-Id"
SLACK_TEXT_LIMIT = 2900
"""Slack rejects a section whose text exceeds 3,000 characters."""


class OutboxChannel:
    """Appends each notification as one JSON line to a file (thread-safe within a process): a local view to tail."""

    name = "outbox"
    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, notification: Notification) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = notification.model_dump_json()
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


class LogChannel:
    name = "log"
    _levels: ClassVar[dict[str, int]] = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}

    def send(self, notification: Notification) -> None:
        logger.log(self._levels[notification.severity], "[%s] %s: %s", notification.event, notification.title,
                   notification.body)


def _missing(channel: str, variable: str) -> SettingsError:
    return SettingsError(f"RECSYS_NOTIFY includes {channel!r}, but {variable} is not set")


# -- Slack ---------------------------------------------------------------------------------------------------
def _mrkdwn_link(label: str, url: str) -> str:
    return f"<{url}|{label}>" if url.startswith(("http://", "https://")) else f"{label}: `{url}`"


def slack_payload(n: Notification) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` (notifications and old clients) and Block Kit ``blocks``."""
    emoji = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}[n.severity]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": n.title[:150], "emoji": True}}]
    if n.body:
        body = n.body if len(n.body) <= SLACK_TEXT_LIMIT else n.body[:SLACK_TEXT_LIMIT] + "…"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    fields = [{"type": "mrkdwn", "text": f"*{f.label}*\n{f.value[:1900]}"} for f in n.facts]
    for start in range(0, len(fields), 10):  # at most 10 fields per section
        blocks.append({"type": "section", "fields": fields[start:start + 10]})
    context = [_mrkdwn_link(link.label, link.url) for link in n.links]
    context.append(f"{n.event} · {n.severity} · <!date^{int(n.ts.timestamp())}^{{date_short_pretty}} {{time}}|"
                   f"{n.ts.isoformat()}> · id `{n.id}`")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)[:3000]}]})
    return {"text": f"{emoji} {n.title}", "blocks": blocks,
            "metadata": {"event_type": "recsys_notification",
                         "event_payload": {"notification_id": n.id, "event": n.event, "severity": n.severity,
                                           "model_name": n.model_name, "version": n.version,
                                           "dedup_key": n.dedup_key}}}


class SlackChannel:
    """Posts to a Slack incoming webhook (httpx), one request per attempt."""

    name = "slack"

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackChannel:
        if settings.slack_webhook_url is None or not settings.slack_webhook_url.get_secret_value():
            raise _missing("slack", "RECSYS_SLACK_WEBHOOK_URL")
        return cls(settings.slack_webhook_url.get_secret_value(), settings.notify_timeout)

    def send(self, notification: Notification) -> None:
        import httpx

        response = httpx.post(self.url, json=slack_payload(notification), timeout=self.timeout,
                              headers={ID_HEADER: notification.id})
        if response.status_code < 300:
            return
        retryable = response.status_code in (408, 425, 429) or response.status_code >= 500
        raise DeliveryError(f"Slack answered {response.status_code}: {response.text[:200]}",
                            permanent=not retryable)


# -- e-mail --------------------------------------------------------------------------------------------------
SMTP_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
"""The SMTP port of each security mode when ``RECSYS_SMTP_PORT`` is unset (Alertmanager's routing uses it too)."""


class EmailChannel:
    """Sends a plain-text + HTML e-mail over SMTP (``starttls``, ``ssl`` or ``none``; login when a user is set)."""

    name = "email"

    def __init__(self, *, host: str, port: int, security: str, sender: str, to: list[str], timeout: float,
                 user: str | None = None, password: str | None = None, ca_file: Path | None = None) -> None:
        self.host, self.port, self.security, self.sender, self.to = host, port, security, sender, to
        self.timeout, self.user, self.password, self.ca_file = timeout, user, password, ca_file

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        for variable, value in (("RECSYS_SMTP_HOST", settings.smtp_host), ("RECSYS_SMTP_FROM", settings.smtp_from),
                                ("RECSYS_SMTP_TO", settings.smtp_to)):
            if not value:
                raise _missing("email", variable)
        if settings.smtp_user and settings.smtp_password is None:
            raise SettingsError("RECSYS_SMTP_USER is set, but RECSYS_SMTP_PASSWORD is not")
        if settings.smtp_ca_file is not None and not settings.smtp_ca_file.is_file():
            raise SettingsError(f"RECSYS_SMTP_CA_FILE: {settings.smtp_ca_file} is not a file")
        assert settings.smtp_host is not None and settings.smtp_from is not None
        return cls(host=settings.smtp_host, port=settings.smtp_port or SMTP_PORTS[settings.smtp_security],
                   security=settings.smtp_security, sender=settings.smtp_from, to=list(settings.smtp_to),
                   timeout=settings.notify_timeout, user=settings.smtp_user,
                   password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                   ca_file=settings.smtp_ca_file)

    def message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        tag = {"info": "", "warning": "[warning] ", "critical": "[CRITICAL] "}[n.severity]
        msg["Subject"] = f"{tag}{n.title}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(n.ts.timestamp(), usegmt=True)
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "recsys"
        msg["Message-ID"] = f"<{n.id}@{domain}>"
        msg[ID_HEADER] = n.id
        msg.set_content(templates.text(n))
        msg.add_alternative(templates.html(n), subtype="html")
        return msg

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def send(self, notification: Notification) -> None:
        msg = self.message(notification)
        try:
            smtp: smtplib.SMTP
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self._context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(msg, to_addrs=self.to)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}", permanent=True) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"SMTP refused every recipient: {exc.recipients}",
                                permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP answered {exc.smtp_code} {exc.smtp_error!r}",
                                permanent=exc.smtp_code >= 500) from exc
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or AUTH offered: a configuration error
            raise DeliveryError(f"SMTP: {exc}", permanent=True) from exc
        if refused:
            logger.warning("notification %s: SMTP refused %s (delivered to the others)", notification.id, refused)


# -- the registry of channels -------------------------------------------------------------------------------
ChannelFactory = Callable[[Settings], Channel]
CHANNELS: dict[str, ChannelFactory] = {
    "outbox": lambda s: OutboxChannel(s.outbox_path),
    "log": lambda s: LogChannel(),
    "slack": SlackChannel.from_settings,
    "email": EmailChannel.from_settings,
}


def register_channel(name: str, factory: ChannelFactory) -> None:
    """Make a channel selectable in ``RECSYS_NOTIFY``."""
    CHANNELS[name] = factory


def channels(settings: Settings, names: list[str] | None = None) -> list[Channel]:
    """The channels named in ``names`` (default: the settings' ``notify``).

    ValueError on an unknown name; :class:`~recsys.settings.SettingsError` naming the variable a selected channel
    needs and lacks.
    """
    names = settings.notify if names is None else names
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise ValueError(f"RECSYS_NOTIFY: unknown channel(s) {unknown}; known: {sorted(CHANNELS)}")
    return [CHANNELS[n](settings) for n in dict.fromkeys(names)]

