"""Feedback events (click, watch, dismiss) from the serving API, stored durably and exactly once per ``event_id``.

A client may retry a POST whose answer it never saw, so :meth:`FeedbackStore.record` is idempotent: the
``event_id`` the client chose is unique in the table, and a second event with the same id is dropped without an
error (``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and Postgres; a caught unique violation elsewhere).

An event is acknowledged only after its transaction has committed. On SQLite the file runs in WAL mode with
``synchronous=FULL``: the WAL is fsynced at every commit, so an acknowledged event survives ``kill -9`` of the
process and a power loss of the host. Any SQLAlchemy URL works (SQLite by default, Postgres in the compose stack).
Nothing happens at import or in ``FeedbackStore.__init__``: the engine, the SQLite folder and the table are made
on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Index, Insert, String, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from recsys.db import SqlStore, UTCDateTime, utcnow
from recsys.serving.schemas import NO_NUL, EventTime, ItemId

logger = logging.getLogger(__name__)

FeedbackKind = Literal["click", "watch", "dismiss"]

class FeedbackEvent(BaseModel):
    """One user reaction to a recommended item, as the client sends it.

    ``event_id`` is chosen by the client and makes retries safe. ``ts`` is when it happened: a naive datetime is
    taken as UTC, an aware one is converted to UTC, and a missing or null one becomes the server's time now. In JSON,
    ``ts`` is an RFC 3339 date-time (an offset-less one is taken as UTC) not dated 0001-01-01 or 9999-12-31.
    Validation is strict: ids are JSON integers (``7`` or ``7.0``), never strings or booleans.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
                          description="client-chosen idempotency key")
    request_id: str | None = Field(None, min_length=1, max_length=128, pattern=NO_NUL,
                                   description="the recommendation request the item was shown in")
    user_id: ItemId
    item_id: ItemId
    event: FeedbackKind
    ts: EventTime = Field(default_factory=utcnow, description="when it happened (RFC 3339; UTC when it has no "
                                                              "offset; default: now)")
    variant: str | None = Field(None, min_length=1, max_length=64, pattern=NO_NUL,
                                description="the A/B variant (registry alias) that served the item")


class Base(DeclarativeBase):
    pass


class FeedbackRow(Base):
    __tablename__ = "feedback_events"
    __table_args__ = (Index("ix_feedback_events_user_ts", "user_id", "ts"), Index("ix_feedback_events_ts", "ts"))

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[int]
    item_id: Mapped[int]
    event: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str | None] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


@dataclass(frozen=True)
class FeedbackRecord:
    """One stored event, detached from the database: the client's fields plus the row id and arrival time."""

    id: int
    event_id: str
    request_id: str | None
    user_id: int
    item_id: int
    event: FeedbackKind
    variant: str | None
    ts: datetime
    received_at: datetime

    @classmethod
    def from_row(cls, row: FeedbackRow) -> FeedbackRecord:
        return cls(row.id, row.event_id, row.request_id, row.user_id, row.item_id, cast(FeedbackKind, row.event),
                   row.variant, row.ts, row.received_at)

    def to_event(self) -> FeedbackEvent:
        return FeedbackEvent(event_id=self.event_id, request_id=self.request_id, user_id=self.user_id,
                             item_id=self.item_id, event=self.event, ts=self.ts, variant=self.variant)


class FeedbackStore(SqlStore):
    """Append-only, idempotent store of feedback events over any SQLAlchemy URL.

    Thread-safe: one engine (a connection pool) per store, and one short session per call. On SQLite every commit
    is fsynced (``durable``): an acknowledged event survives ``kill -9`` and power loss.
    """

    metadata = Base.metadata
    schema_name = "feedback"
    durable = True

    def _insert(self, dialect: str) -> Insert | None:
        """An INSERT that skips a duplicate ``event_id``, where the dialect has one; else None."""
        if dialect == "sqlite":
            return sqlite.insert(FeedbackRow).on_conflict_do_nothing(index_elements=["event_id"])
        if dialect == "postgresql":
            return postgresql.insert(FeedbackRow).on_conflict_do_nothing(index_elements=["event_id"])
        return None

    def record(self, event: FeedbackEvent) -> bool:
        """Store one event; True if it is new, False if its ``event_id`` was already stored (nothing changes).

        Returns only after the commit, so a True or False answer means the event is durably stored.
        """
        if not isinstance(event, FeedbackEvent):
            raise TypeError(f"record() takes a FeedbackEvent, got {type(event).__name__}")
        values = {**event.model_dump(), "received_at": utcnow()}
        engine = self._ready()
        stmt = self._insert(engine.dialect.name)
        if stmt is not None:
            with engine.begin() as conn:
                inserted = conn.execute(stmt, values).rowcount
            return bool(inserted)
        try:
            with Session(engine) as session, session.begin():
                session.add(FeedbackRow(**values))
        except IntegrityError:
            if self.get(event.event_id) is None:
                raise  # another constraint failed, not the duplicate id
            return False
        return True

    def get(self, event_id: str) -> FeedbackRecord | None:
        """The stored event with this id, or None."""
        with Session(self._ready()) as session:
            row = session.scalars(select(FeedbackRow).where(FeedbackRow.event_id == event_id)).one_or_none()
            return None if row is None else FeedbackRecord.from_row(row)

    def count(self) -> int:
        """How many distinct events are stored."""
        with Session(self._ready()) as session:
            return int(session.scalar(select(func.count()).select_from(FeedbackRow)) or 0)

    def between(self, start: datetime | None = None, end: datetime | None = None) -> list[FeedbackRecord]:
        """The stored events with ``start <= ts < end`` (either bound may be None), in ``ts`` then id order."""
        query = select(FeedbackRow).order_by(FeedbackRow.ts, FeedbackRow.id)
        if start is not None:
            query = query.where(FeedbackRow.ts >= start)
        if end is not None:
            query = query.where(FeedbackRow.ts < end)
        with Session(self._ready()) as session:
            return [FeedbackRecord.from_row(row) for row in session.scalars(query)]
