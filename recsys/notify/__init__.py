"""Notifications: registry events (promotion, rollback, gate decisions, approvals), data events (a quarantined
batch) and monitoring events (drift, a CTR drop, a failed model swap), delivered to Slack, e-mail, a local file
and the log.

Every notification is built from its event's template (:mod:`recsys.notify.templates`: the facts, the numbers,
the links), stored first in the notification store (:mod:`recsys.notify.store`, ``RECSYS_NOTIFY_URL``), then
sent to every channel of ``RECSYS_NOTIFY`` at once with short bounded retries (:mod:`recsys.notify.notifier`).
A channel that keeps failing leaves the message pending for that channel only (``recsys notify replay`` sends
it later); the same alert within ``RECSYS_NOTIFY_DEDUP_SECONDS`` is stored as suppressed, not sent. Nothing here
raises into the caller: a notification must never undo or block the action it reports.

For a caller outside the pipeline (the service's model-swap thread)::

    from recsys import notify
    notify.notify(settings, "model_swap_failed", model_name="content-ranker", version=7,
                  details={"error": str(exc), "serving": 6})
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from recsys.notify.channels import (
    CHANNELS,
    ID_HEADER,
    EmailChannel,
    LogChannel,
    OutboxChannel,
    SlackChannel,
    channels,
    register_channel,
    slack_payload,
)
from recsys.notify.models import Channel, DeliveryError, Fact, Link, Notification, SendOutcome, Severity
from recsys.notify.notifier import Notifier, ReplayOutcome, dispatch
from recsys.notify.store import NotificationStore, StoredNotification
from recsys.notify.templates import RUNBOOKS, Bases, build
from recsys.settings import Settings

__all__ = [
    "CHANNELS", "ID_HEADER", "RUNBOOKS", "Bases", "Channel", "DeliveryError", "EmailChannel", "Fact", "Link",
    "LogChannel", "Notification", "NotificationStore", "Notifier", "OutboxChannel", "ReplayOutcome", "SendOutcome",
    "Severity", "SlackChannel", "StoredNotification", "build", "channels", "dispatch", "notifier", "notify",
    "register_channel", "registry_hook", "slack_payload",
]

logger = logging.getLogger(__name__)


def notifier(settings: Settings, channels: Sequence[Channel] | None = None) -> Notifier:
    """The configured notifier: ``channels`` (default: ``RECSYS_NOTIFY``'s) over the notification store.

    Raises ValueError on an unknown channel and :class:`~recsys.settings.SettingsError` naming a variable a
    selected channel needs: build it before the work whose outcome it reports.
    """
    return Notifier.from_settings(settings, channels)


def notify(settings: Settings, event: str, *, model_name: str | None = None, version: int | None = None,
           details: dict[str, Any] | None = None, severity: Severity | None = None) -> SendOutcome | None:
    """Build and send one notification with the configured channels; never raises (a misconfiguration is logged).

    Safe from any thread. It takes at most about ``RECSYS_NOTIFY_RETRIES * RECSYS_NOTIFY_TIMEOUT`` plus the
    backoff (channels are sent in parallel): 16.5 s with the defaults when a receiver hangs, milliseconds when
    they answer. Returns what was done, or None when nothing could be (bad settings).
    """
    try:
        sender = Notifier.from_settings(settings)
    except Exception:
        logger.warning("notification %r not sent: the notification settings are invalid", event, exc_info=True)
        return None
    try:
        return sender.event(event, details, model_name=model_name or settings.model_name, version=version,
                            severity=severity)
    finally:
        sender.close()


def registry_hook(target: Notifier | Sequence[Channel],
                  extra: dict[str, Any] | None = None) -> Callable[[dict[str, Any]], None]:
    """The ``notify`` hook the registry service calls with an audit record's dict (``extra`` is merged into the
    details, e.g. the gate decision behind a promotion)."""
    sender = target if isinstance(target, Notifier) else Notifier(target)

    def hook(record: dict[str, Any]) -> None:
        details = {**json.loads(json.dumps(record, default=str)), **(extra or {})}
        sender.event(str(record.get("event", "registry")), details, model_name=record.get("model_name"),
                     version=record.get("to_version"))

    return hook
