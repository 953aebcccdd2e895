"""Notification stages: send a test message to every channel, replay what is pending, list recent messages."""

from __future__ import annotations

import uuid

from pydantic import Field

from recsys.notify import ReplayOutcome, StoredNotification, notifier
from recsys.notify.models import ChannelOutcome
from recsys.notify.store import NotificationStore
from recsys.settings import Settings
from recsys.stages.base import StageError, StageResult


class NotifyTestResult(StageResult):
    id: str
    ok: bool = Field(description="every channel delivered the test message")
    channels: list[ChannelOutcome]
    store: str


def send_test(settings: Settings, actor: str | None = None) -> NotifyTestResult:
    """One test message to each configured channel (never deduplicated); which channels delivered it."""
    if not settings.notify:
        raise StageError("RECSYS_NOTIFY is empty: no channel to test (e.g. RECSYS_NOTIFY=outbox,log,slack,email)")
    sender = notifier(settings)
    try:
        outcome = sender.event("test", {"actor": actor or settings.actor, "nonce": uuid.uuid4().hex})
    finally:
        sender.close()
    assert outcome is not None
    return NotifyTestResult(id=outcome.id, ok=all(c.status == "sent" for c in outcome.channels),
                            channels=outcome.channels, store=_store_name(settings))


class NotifyReplayResult(StageResult):
    outcome: ReplayOutcome
    remaining: dict[str, int] = Field(description="deliveries per status after the replay")
    store: str


def replay(settings: Settings, include_failed: bool = False) -> NotifyReplayResult:
    """Send every pending (message, channel) again with the configured channels (each claimed first)."""
    sender = notifier(settings)
    try:
        outcome = sender.replay(include_failed=include_failed)
        assert sender.store is not None
        remaining = sender.store.counts()
    finally:
        sender.close()
    return NotifyReplayResult(outcome=outcome, remaining=remaining, store=_store_name(settings))


class NotifyListResult(StageResult):
    notifications: list[StoredNotification]
    store: str


def recent(settings: Settings, limit: int = 20, pending: bool = False) -> NotifyListResult:
    """The newest messages with each channel's delivery state (``pending``: only those not delivered yet)."""
    store = NotificationStore(settings.notify_db_url)
    try:
        rows = store.recent(limit=limit, pending=pending)
    finally:
        store.close()
    return NotifyListResult(notifications=rows, store=_store_name(settings))


def _store_name(settings: Settings) -> str:
    from recsys.settings import masked

    return masked(settings.notify_db_url)
