"""The registry's audit log: every registration, gate decision, approval, promotion and rollback, in one table.

MLflow keeps only where an alias points now; this log keeps where it pointed before, which is what rollback
needs. Any SQLAlchemy URL works (SQLite by default, Postgres in the compose stack). Nothing happens at import
or in ``AuditLog.__init__``: the engine, the SQLite folder and the table are made on first use.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Index, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from recsys.db import SqlStore, UTCDateTime, utcnow

logger = logging.getLogger(__name__)

class AuditEvent(StrEnum):
    REGISTERED = "registered"
    GATE_DECISION = "gate_decision"
    APPROVAL_PENDING = "approval_pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    AB_DECISION = "ab_decision"


CHAMPION_EVENTS = (AuditEvent.PROMOTED, AuditEvent.ROLLED_BACK)
"""Events after which ``to_version`` holds the champion alias."""
_NEEDS_TO_VERSION = frozenset({*CHAMPION_EVENTS, AuditEvent.APPROVAL_PENDING, AuditEvent.APPROVED,
                               AuditEvent.REJECTED})


class Base(DeclarativeBase):
    pass


class AuditRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_model_event", "model_name", "event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(255))
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(String(4000))
    run_id: Mapped[str | None] = mapped_column(String(64))
    data_hash: Mapped[str | None] = mapped_column(String(128))
    git_sha: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditRecord(BaseModel):
    """One stored event, detached from the database."""

    model_config = ConfigDict(frozen=True)

    id: int
    ts: datetime
    event: AuditEvent
    model_name: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    run_id: str | None
    data_hash: str | None
    git_sha: str | None
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditRecord:
        return cls(id=row.id, ts=row.ts, event=AuditEvent(row.event), model_name=row.model_name,
                   from_version=row.from_version, to_version=row.to_version, actor=row.actor, reason=row.reason,
                   run_id=row.run_id, data_hash=row.data_hash, git_sha=row.git_sha, details=dict(row.details or {}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``ts`` as ISO 8601 with its +00:00 offset, ``event`` as its string value."""
        out = self.model_dump()
        out["ts"] = self.ts.isoformat()
        out["event"] = self.event.value
        return out


def _jsonable(obj: Any) -> Any:
    # gate decisions carry numpy scalars and arrays; store them as plain numbers and lists
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def _check_model_name(model_name: str) -> str:
    if not model_name or not model_name.strip():
        raise ValueError("model_name must be a non-empty string")
    return model_name


def _check_event(value: AuditEvent | str) -> AuditEvent:
    try:
        return AuditEvent(value)
    except ValueError:
        allowed = ", ".join(e.value for e in AuditEvent)
        raise ValueError(f"unknown audit event {value!r}; allowed: {allowed}") from None


class AuditLog(SqlStore):
    """Append-only event log of one registry, over any SQLAlchemy URL."""

    metadata = Base.metadata
    schema_name = "audit"

    def record(self, event: AuditEvent | str, model_name: str, *, from_version: int | None = None,
               to_version: int | None = None, actor: str | None = None, reason: str | None = None,
               run_id: str | None = None, data_hash: str | None = None, git_sha: str | None = None,
               details: Mapping[str, Any] | None = None) -> AuditRecord:
        """Append one event and return it as stored (``actor`` defaults to ``"system"``)."""
        kind = _check_event(event)
        _check_model_name(model_name)
        for name, version in (("from_version", from_version), ("to_version", to_version)):
            if version is not None and version < 1:
                raise ValueError(f"{name} must be a registry version >= 1, got {version}")
        if kind in _NEEDS_TO_VERSION and to_version is None:
            raise ValueError(f"event {kind.value!r} needs to_version")
        if details is not None and not isinstance(details, Mapping):
            raise ValueError(f"details must be a mapping, got {type(details).__name__}")
        try:
            # a round trip, so the returned record equals what a later read gives (tuples -> lists, ...)
            stored = json.loads(json.dumps(dict(details or {}), default=_jsonable))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"details must be JSON-serializable: {exc}") from exc
        row = AuditRow(ts=utcnow(), event=kind.value, model_name=model_name, from_version=from_version,
                       to_version=to_version, actor=actor or "system", reason=reason,
                       run_id=run_id, data_hash=data_hash, git_sha=git_sha, details=stored)
        with Session(self._ready(), expire_on_commit=False) as session, session.begin():
            session.add(row)
            session.flush()
            return AuditRecord.from_row(row)

    def _query(self, model_name: str | None, events: tuple[AuditEvent, ...] = (), *, newest_first: bool = False,
               limit: int | None = None) -> list[AuditRecord]:
        stmt = select(AuditRow)
        if model_name is not None:
            stmt = stmt.where(AuditRow.model_name == _check_model_name(model_name))
        if events:
            stmt = stmt.where(AuditRow.event.in_([e.value for e in events]))
        # ids follow commit order of the single writer; timestamps from several hosts might not
        stmt = stmt.order_by(AuditRow.id.desc() if newest_first else AuditRow.id).limit(limit)
        with Session(self._ready()) as session:
            return [AuditRecord.from_row(row) for row in session.scalars(stmt)]

    def history(self, model_name: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """The last ``limit`` events, newest first; all models unless ``model_name`` is given."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        return self._query(model_name, newest_first=True, limit=limit)

    def decision(self, model_name: str, version: int) -> AuditRecord | None:
        """The latest approval event of ``version`` (``approval_pending``, ``approved`` or ``rejected``), or None."""
        decisions = (AuditEvent.APPROVAL_PENDING, AuditEvent.APPROVED, AuditEvent.REJECTED)
        return next((r for r in self._query(model_name, decisions, newest_first=True) if r.to_version == version),
                    None)

    def following(self, record: AuditRecord, event: AuditEvent) -> AuditRecord | None:
        """The first ``event`` of the same model and ``to_version`` after ``record`` (an approval's promotion)."""
        return next((r for r in self._query(record.model_name, (event,))
                     if r.id > record.id and r.to_version == record.to_version), None)

    def champion_versions(self, model_name: str) -> list[int]:
        """Every version that became champion (promotions and rollbacks), oldest first, repeats kept."""
        return [r.to_version for r in self._query(model_name, CHAMPION_EVENTS) if r.to_version is not None]

    def current_champion(self, model_name: str) -> int | None:
        versions = self.champion_versions(model_name)
        return versions[-1] if versions else None

    def previous_champion(self, model_name: str) -> int | None:
        """The latest champion that differs from the current one, or None.

        The walk goes backwards over the champion sequence, so after a rollback the "previous" champion is
        the version just rolled back from: a second rollback toggles between the last two champions instead
        of going further back. Use ``plan_rollback(..., to_version=V)`` to go back further.
        """
        versions = self.champion_versions(model_name)
        if not versions:
            return None
        current = versions[-1]
        return next((v for v in reversed(versions) if v != current), None)

    def pending_approvals(self, model_name: str) -> list[AuditRecord]:
        """``approval_pending`` events not followed by ``approved``/``rejected`` of the same version, oldest first."""
        decisions = (AuditEvent.APPROVAL_PENDING, AuditEvent.APPROVED, AuditEvent.REJECTED)
        pending: dict[int | None, AuditRecord] = {}
        for rec in self._query(model_name, decisions):
            if rec.event is AuditEvent.APPROVAL_PENDING:
                pending.pop(rec.to_version, None)  # a re-gated version stays pending once, at its newest request
                pending[rec.to_version] = rec
            else:
                pending.pop(rec.to_version, None)
        return list(pending.values())


def plan_rollback(log: AuditLog, model_name: str, to_version: int | None = None) -> tuple[int, int]:
    """``(from_version, to_version)`` for ``recsys registry rollback [--to V]``; moves nothing.

    From is the current champion; to is ``to_version`` (it must have been champion before) or else the
    previous champion as defined by :meth:`AuditLog.previous_champion`.
    """
    versions = log.champion_versions(model_name)
    if not versions:
        raise ValueError(f"no champion to roll back for {model_name!r}")
    current = versions[-1]
    earlier = sorted(set(versions) - {current})
    if to_version is None:
        previous = log.previous_champion(model_name)
        if previous is None:
            raise ValueError(f"no previous champion of {model_name!r} to roll back to (only v{current} ever was)")
        return current, previous
    if to_version == current:
        raise ValueError(f"version {to_version} of {model_name!r} is already the champion")
    if to_version not in earlier:
        were = ", ".join(str(v) for v in earlier) or "none"
        raise ValueError(f"version {to_version} of {model_name!r} was never champion; earlier champions: {were}")
    return current, to_version


def record_rollback(log: AuditLog, model_name: str, from_version: int, to_version: int, actor: str | None,
                    reason: str | None, notify: Callable[[dict[str, Any]], None] | None = None) -> AuditRecord:
    """Record a rollback, then tell ``notify`` (a Slack or e-mail sender) with the record's dict.

    The record is committed first: a failing hook is logged as a warning and never undoes it.
    """
    if from_version == to_version:
        raise ValueError(f"rollback from and to the same version {to_version}")
    rec = log.record(AuditEvent.ROLLED_BACK, model_name, from_version=from_version, to_version=to_version,
                     actor=actor, reason=reason)
    if notify is not None:
        try:
            notify(rec.to_dict())
        except Exception:
            logger.warning("rollback of %s v%d -> v%d recorded, but the notification hook failed",
                           model_name, from_version, to_version, exc_info=True)
    return rec
