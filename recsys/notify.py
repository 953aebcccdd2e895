"""The notification interface: registry events (promotion, rollback) and data events (a quarantined batch).

A :class:`Notification` is a small, JSON-ready message. A *channel* is anything with ``send(notification)``;
:func:`dispatch` hands a notification to every configured channel and never raises: a failing channel is logged
and the others still run, because a notification must never undo or block the action it reports.

Channels here: ``outbox`` (one JSON line per notification appended to ``<var_dir>/notifications/outbox.jsonl``,
durable and easy to inspect or tail) and ``log`` (the Python logger). ``Settings.notify`` (``RECSYS_NOTIFY``) picks
them (default ``outbox,log``; empty turns notifications off). Slack and e-mail senders register themselves in
:data:`CHANNELS` with :func:`register_channel`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from recsys.settings import Settings

logger = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]


class Notification(BaseModel):
    """What happened, how bad it is, and the record behind it."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(description="e.g. 'promoted', 'rolled_back', 'batch_quarantined'")
    severity: Severity = "info"
    title: str
    body: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    ts: datetime = Field(default_factory=lambda: datetime.now(UTC))


class Channel(Protocol):
    name: str

    def send(self, notification: Notification) -> None: ...


class OutboxChannel:
    """Appends each notification as one JSON line to a file (thread-safe within a process)."""

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


ChannelFactory = Callable[[Settings], Channel]
CHANNELS: dict[str, ChannelFactory] = {
    "outbox": lambda s: OutboxChannel(s.outbox_path),
    "log": lambda s: LogChannel(),
}


def register_channel(name: str, factory: ChannelFactory) -> None:
    """Make a channel selectable in ``RECSYS_NOTIFY`` (e.g. the Slack and e-mail senders)."""
    CHANNELS[name] = factory


def channels(settings: Settings, names: list[str] | None = None) -> list[Channel]:
    """The channels named in ``names`` (default: the settings' ``notify``); ValueError on an unknown name."""
    names = settings.notify if names is None else names
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise ValueError(f"RECSYS_NOTIFY: unknown channel(s) {unknown}; known: {sorted(CHANNELS)}")
    return [CHANNELS[n](settings) for n in names]


def dispatch(notification: Notification, channels: list[Channel]) -> list[str]:
    """Send to every channel; returns the names of the channels that failed (each failure is logged)."""
    failed = []
    for channel in channels:
        try:
            channel.send(notification)
        except Exception:
            logger.warning("notification %r via %s failed", notification.event, channel.name, exc_info=True)
            failed.append(channel.name)
    return failed


_SEVERITY = {"rolled_back": "warning", "rejected": "warning"}


def registry_hook(channels: list[Channel]) -> Callable[[dict[str, Any]], None]:
    """The ``notify`` hook the registry service calls with an audit record's dict."""

    def hook(record: dict[str, Any]) -> None:
        event = str(record.get("event", "registry"))
        frm, to = record.get("from_version"), record.get("to_version")
        moved = f"v{frm if frm is not None else '–'} → v{to if to is not None else '–'}"
        title = f"{record.get('model_name')}: {event.replace('_', ' ')} ({moved})"
        body = f"by {record.get('actor')}: {record.get('reason') or 'no reason given'}"
        dispatch(Notification(event=event, severity=_SEVERITY.get(event, "info"), title=title, body=body,
                              details=json.loads(json.dumps(record, default=str))), channels)

    return hook
