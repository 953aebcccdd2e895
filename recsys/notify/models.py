"""What a notification is, what a channel is, and what a delivery attempt tells the sender."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]
DeliveryStatus = Literal["pending", "sending", "sent", "failed", "suppressed"]
"""``pending``: not delivered yet (a replay sends it); ``sending``: claimed by a sender right now; ``sent``;
``failed``: the receiver refused it for good (a 4xx, a rejected recipient: a replay skips it unless told);
``suppressed``: a repeat of an alert sent within the dedup period."""


def new_id() -> str:
    """A notification id: unique, URL- and header-safe, sortable by creation second."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:16]}"


class Fact(BaseModel):
    """One labelled number or value (a Slack field, a row of the e-mail's table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    value: str


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    url: str

    @property
    def absolute(self) -> bool:
        return self.url.startswith(("http://", "https://"))


class Notification(BaseModel):
    """What happened, how bad it is, the numbers, and where to look; JSON-ready and stored as it is sent.

    ``id`` is stable for the life of the message (retries and replays send the same id, so a receiver can
    deduplicate); ``dedup_key`` names the alert (event, model, version, subject) for the sender's own dedup.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_id)
    event: str = Field(description="e.g. 'promoted', 'rolled_back', 'batch_quarantined'")
    severity: Severity = "info"
    title: str
    body: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    model_name: str | None = None
    version: int | None = None
    facts: list[Fact] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    dedup_key: str | None = None
    ts: datetime = Field(default_factory=lambda: datetime.now(UTC))


class Channel(Protocol):
    """Anything that delivers a notification; ``send`` raises on failure (the notifier retries and records)."""

    name: str

    def send(self, notification: Notification) -> None: ...


class DeliveryError(Exception):
    """A delivery failed; ``permanent`` when trying again cannot help (a 4xx, a refused recipient, bad login)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChannelOutcome(BaseModel):
    channel: str
    status: DeliveryStatus
    attempts: int = 0
    error: str | None = None


class SendOutcome(BaseModel):
    """What one :meth:`Notifier.send` did: stored or not, suppressed or not, and each channel's status."""

    id: str
    event: str
    stored: bool = Field(description="written to the notification store (False: the store was unreachable, "
                                     "delivery was attempted anyway but cannot be replayed)")
    suppressed_by: str | None = Field(None, description="the id of the same alert sent within the dedup period")
    channels: list[ChannelOutcome] = Field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [c.channel for c in self.channels if c.status in ("pending", "failed")]
