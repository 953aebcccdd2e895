"""The notification store: every notification, stored before it is sent, with its delivery state per channel.

Three tables over any SQLAlchemy URL (SQLite by default, fsynced at every commit; PostgreSQL in the compose
stack): ``notifications`` (the message as sent, JSON), ``notification_deliveries`` (one row per message and
channel: status, attempts, last error, who holds it) and ``notification_dedup`` (per alert key, the last message
sent and when).

Delivery rows are *claimed* before a send: an ``UPDATE ... WHERE status = 'pending'`` (or a ``sending`` row
whose claim is older than the lease: its sender died) that sets a fresh claim token; only the sender whose
update changed the row sends, and only the holder of the token can mark the row sent. So two replays running at
once never send the same (message, channel) twice. A crash between the receiver's answer and the commit can
still repeat a message on the next replay: that is what the notification id in every message is for.

The dedup check is one atomic upsert on the alert key: it takes the key when the key is new or its last
message is older than the period; otherwise the new message is stored as ``suppressed`` (visible, not sent).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, ForeignKey, Index, Insert, String, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from recsys.db import SqlStore, UTCDateTime, utcnow
from recsys.notify.models import DeliveryStatus, Notification

LEASE = timedelta(minutes=15)
"""A ``sending`` claim older than this is taken to be a dead sender's and may be claimed again: longer than any
one send (at most ``retries * (timeout + backoff cap)``: 16.5 s with the defaults, 11 min at the settings.
limits), and a replay claims each row just before sending it."""
MAX_ERROR = 2000


class Base(DeclarativeBase):
    pass


class NotificationRow(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_created", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[int | None]
    title: Mapped[str] = mapped_column(String(1000))
    dedup_key: Mapped[str | None] = mapped_column(String(255), index=True)
    suppressed_by: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeliveryRow(Base):
    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_status", "status"),)

    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR))
    claim: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DedupRow(Base):
    __tablename__ = "notification_dedup"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    notification_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Delivery(BaseModel):
    channel: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    updated_at: datetime


class StoredNotification(BaseModel):
    """A stored message with each channel's state (what ``recsys notify list`` shows)."""

    id: str
    created_at: datetime
    event: str
    severity: str
    model_name: str | None
    version: int | None
    title: str
    dedup_key: str | None
    suppressed_by: str | None
    deliveries: list[Delivery]


def _key(text: str) -> str:
    """Keys longer than the column are hashed (still one key per alert)."""
    return text if len(text) <= 255 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class NotificationStore(SqlStore):
    """The durable outbox of notifications (see the module docstring). Thread-safe; one short session per call."""

    metadata = Base.metadata
    schema_name = "notifications"
    durable = True

    # -- writing a new message ------------------------------------------------------------------------------
    def _take_key(self, session: Session, key: str, notification_id: str, at: datetime,
                  period: float) -> str | None:
        """Take the dedup key for this message; the id of the message holding it within the period, else None."""
        cutoff = at - timedelta(seconds=period)
        dialect = session.get_bind().dialect.name
        stmt: Insert | None = None
        if dialect == "sqlite":
            stmt = sqlite.insert(DedupRow)
        elif dialect == "postgresql":
            stmt = postgresql.insert(DedupRow)
        values = {"key": key, "notification_id": notification_id, "at": at}
        if stmt is not None:
            upsert = stmt.values(values).on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["key"], set_={"notification_id": notification_id, "at": at},
                where=DedupRow.at <= cutoff)
            if session.execute(upsert).rowcount:  # type: ignore[attr-defined]
                return None
        else:  # another backend: a locked read, then write
            row = session.get(DedupRow, key, with_for_update=True)
            if row is None:
                session.add(DedupRow(**values))
                return None
            if row.at <= cutoff:
                row.notification_id, row.at = notification_id, at
                return None
        holder = session.get(DedupRow, key)
        return holder.notification_id if holder is not None else None

    def add(self, n: Notification, channels: list[str], dedup_seconds: float = 0.0) -> tuple[str | None, str | None]:
        """Store ``n`` with a delivery row per channel; returns ``(claim, suppressed_by)``.

        Not a repeat: the rows are ``sending`` under the returned claim (this sender delivers them). A repeat of
        an alert sent within ``dedup_seconds``: the rows are ``suppressed`` and ``suppressed_by`` is that id.
        """
        claim = uuid.uuid4().hex
        now = utcnow()
        with Session(self._ready()) as session, session.begin():
            holder = None
            if n.dedup_key and dedup_seconds > 0:
                holder = self._take_key(session, _key(n.dedup_key), n.id, n.ts, dedup_seconds)
            session.add(NotificationRow(id=n.id, created_at=n.ts, event=n.event, severity=n.severity,
                                        model_name=n.model_name, version=n.version, title=n.title[:1000],
                                        dedup_key=_key(n.dedup_key) if n.dedup_key else None,
                                        suppressed_by=holder, payload=n.model_dump(mode="json")))
            session.flush()  # the message before its deliveries (the foreign key)
            for channel in channels:
                session.add(DeliveryRow(notification_id=n.id, channel=channel,
                                        status="suppressed" if holder else "sending", attempts=0,
                                        claim=None if holder else claim, claimed_at=None if holder else now,
                                        updated_at=now))
        return (None if holder else claim), holder

    # -- claiming and settling ------------------------------------------------------------------------------
    def _claimable(self, include_failed: bool, now: datetime) -> Any:
        statuses = ["pending", "failed"] if include_failed else ["pending"]
        return or_(DeliveryRow.status.in_(statuses),
                   and_(DeliveryRow.status == "sending", DeliveryRow.claimed_at < now - LEASE))

    def claimable(self, *, include_failed: bool = False, limit: int = 1000) -> list[tuple[str, str]]:
        """(notification id, channel) pairs a replay may try to claim, oldest first."""
        stmt = (select(DeliveryRow.notification_id, DeliveryRow.channel)
                .join(NotificationRow, NotificationRow.id == DeliveryRow.notification_id)
                .where(self._claimable(include_failed, utcnow()))
                .order_by(NotificationRow.created_at, DeliveryRow.notification_id, DeliveryRow.channel).limit(limit))
        with Session(self._ready()) as session:
            return [(row[0], row[1]) for row in session.execute(stmt)]

    def claim(self, notification_id: str, channel: str, *, include_failed: bool = False) -> str | None:
        """Claim one delivery for sending; the claim token, or None when another sender has it (or it is done)."""
        token, now = uuid.uuid4().hex, utcnow()
        stmt = (update(DeliveryRow)
                .where(DeliveryRow.notification_id == notification_id, DeliveryRow.channel == channel,
                       self._claimable(include_failed, now))
                .values(status="sending", claim=token, claimed_at=now, updated_at=now))
        with self._ready().begin() as conn:
            return token if conn.execute(stmt).rowcount == 1 else None

    def settle(self, notification_id: str, channel: str, claim: str, status: DeliveryStatus, attempts: int,
               error: str | None = None) -> bool:
        """Record the outcome of a claimed send (sent, pending again, failed); False if the claim was lost."""
        now = utcnow()
        stmt = (update(DeliveryRow)
                .where(DeliveryRow.notification_id == notification_id, DeliveryRow.channel == channel,
                       DeliveryRow.claim == claim, DeliveryRow.status == "sending")
                .values(status=status, attempts=DeliveryRow.attempts + attempts, updated_at=now, claim=None,
                        last_error=None if error is None else error[:MAX_ERROR],
                        **({"sent_at": now} if status == "sent" else {})))
        with self._ready().begin() as conn:
            return conn.execute(stmt).rowcount == 1

    # -- reading --------------------------------------------------------------------------------------------
    def get(self, notification_id: str) -> Notification | None:
        with Session(self._ready()) as session:
            row = session.get(NotificationRow, notification_id)
            return None if row is None else Notification.model_validate(row.payload)

    def recent(self, *, limit: int = 20, pending: bool = False) -> list[StoredNotification]:
        """The newest ``limit`` messages (with ``pending``: those with a delivery not sent yet), newest first."""
        stmt = select(NotificationRow).order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc())
        if pending:
            waiting = select(DeliveryRow.notification_id).where(DeliveryRow.status.in_(["pending", "sending"]))
            stmt = stmt.where(NotificationRow.id.in_(waiting))
        with Session(self._ready()) as session:
            rows = list(session.scalars(stmt.limit(limit)))
            ids = [r.id for r in rows]
            by_id: dict[str, list[Delivery]] = {i: [] for i in ids}
            if ids:
                for d in session.scalars(select(DeliveryRow).where(DeliveryRow.notification_id.in_(ids))
                                         .order_by(DeliveryRow.channel)):
                    by_id[d.notification_id].append(Delivery(
                        channel=d.channel, status=d.status, attempts=d.attempts,
                        last_error=d.last_error, sent_at=d.sent_at, updated_at=d.updated_at))
            return [StoredNotification(id=r.id, created_at=r.created_at, event=r.event, severity=r.severity,
                                       model_name=r.model_name, version=r.version, title=r.title,
                                       dedup_key=r.dedup_key, suppressed_by=r.suppressed_by,
                                       deliveries=by_id[r.id]) for r in rows]

    def counts(self) -> dict[str, int]:
        """Deliveries per status."""
        from sqlalchemy import func

        stmt = select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
        with Session(self._ready()) as session:
            return {str(status): int(n) for status, n in session.execute(stmt)}
