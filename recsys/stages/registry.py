"""Registry stages: promote, approve or reject a version, roll back, and read versions and the audit history.

Promote, approve and reject are one stage (:func:`release`) with an ``action``: each moves the ``champion`` alias
or records a human's decision in the audit log, then notifies. :func:`rollback` moves the alias back to the
previous champion of the audit history, in one command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from recsys.registry.audit import AuditEvent, AuditLog, AuditRecord
from recsys.registry.service import VersionRow
from recsys.settings import Settings
from recsys.stages.base import NothingToDoError, StageError, StageResult


class RegistryMove(StageResult):
    """What a registry action did: the audit record it wrote (for an alias move: from and to which version), or
    with ``already``, the record of the same decision taken before (``--once``: nothing was written)."""

    model: str
    event: AuditEvent
    from_version: int | None
    to_version: int | None
    actor: str
    record: AuditRecord
    already: bool = False


@contextlib.contextmanager
def _registry(settings: Settings) -> Iterator[tuple[str, AuditLog]]:
    audit = AuditLog(settings.audit_db_url)
    try:
        yield settings.mlflow_uri, audit
    finally:
        audit.close()


def _moved(record: AuditRecord, already: bool = False) -> RegistryMove:
    return RegistryMove(model=record.model_name, event=record.event, from_version=record.from_version,
                        to_version=record.to_version, actor=record.actor, record=record, already=already)


def _decided(audit: AuditLog, name: str, params: ReleaseParams) -> RegistryMove | None:
    """``--once``: the earlier decision on this version's approval, if one was taken (None: decide now).

    The same decision taken before is reported (an approval by its promotion); the opposite one is nothing to do.
    """
    last = audit.decision(name, params.version)
    if last is None or last.event is AuditEvent.APPROVAL_PENDING:
        return None
    wanted = AuditEvent.APPROVED if params.action == "approve" else AuditEvent.REJECTED
    if last.event is not wanted:
        raise NothingToDoError(f"v{params.version} of {name!r} was already {last.event.value} by {last.actor} at "
                               f"{last.ts:%Y-%m-%d %H:%M} UTC ({last.reason}); nothing moved")
    if wanted is AuditEvent.APPROVED:
        last = audit.following(last, AuditEvent.PROMOTED) or last
    return _moved(last, already=True)


class ReleaseParams(BaseModel):
    action: Literal["promote", "approve", "reject"]
    version: int = Field(ge=1)
    by: str | None = Field(None, description="who acts (default: the settings' actor); approve/reject need it")
    reason: str | None = Field(None, description="why; approve/reject need it")
    once: bool = Field(False, description="approve/reject: if the version's approval was already decided (on "
                                          "the CLI or in Airflow), report that decision and move nothing")


def release(settings: Settings, params: ReleaseParams) -> RegistryMove:
    """Promote a READY version, approve a pending one (and promote it), or reject it (no alias moves)."""
    from recsys import notify
    from recsys.registry import service

    if params.action != "promote" and not (params.by and params.reason):
        raise StageError(f"{params.action} needs who decides (--by) and why (--reason)")
    sender = notify.notifier(settings)
    hook = notify.registry_hook(sender)
    actor = params.by or settings.actor
    with contextlib.closing(sender), _registry(settings) as (uri, audit):
        name = settings.model_name
        if params.once and params.action != "promote" and (earlier := _decided(audit, name, params)):
            return earlier
        if params.action == "promote":
            record = service.promote(name, params.version, actor=actor, reason=params.reason, audit=audit,
                                     tracking_uri=uri, notify=hook)
        elif params.action == "approve":
            record = service.approve(name, params.version, by=actor, reason=str(params.reason), audit=audit,
                                     tracking_uri=uri, notify=hook)
        else:
            record = service.reject(name, params.version, by=actor, reason=str(params.reason), audit=audit)
            hook(record.to_dict())  # a human's rejection: the hook never raises
    return _moved(record)


class RollbackParams(BaseModel):
    to: int | None = Field(None, ge=1, description="the version to roll back to; default: the previous champion")
    by: str | None = None
    reason: str | None = None


def rollback(settings: Settings, params: RollbackParams) -> RegistryMove:
    """Move ``champion`` back to the previous champion of the audit history (or ``params.to``)."""
    from recsys import notify
    from recsys.registry import service

    sender = notify.notifier(settings)
    with contextlib.closing(sender), _registry(settings) as (uri, audit):
        record = service.rollback(settings.model_name, to_version=params.to, actor=params.by or settings.actor,
                                  reason=params.reason, audit=audit, tracking_uri=uri,
                                  notify=notify.registry_hook(sender))
    return _moved(record)


class VersionsResult(StageResult):
    model: str
    tracking_uri: str
    versions: list[VersionRow]


def versions(settings: Settings) -> VersionsResult:
    """Every version of the registered model, oldest first, with its status and aliases."""
    from recsys.registry.service import list_versions

    uri = settings.mlflow_uri
    return VersionsResult(model=settings.model_name, tracking_uri=uri,
                          versions=list_versions(settings.model_name, uri))


class VersionDetail(StageResult):
    model: str
    tracking_uri: str
    version: int
    status: str
    aliases: list[str]
    run_id: str | None
    created: datetime | None
    tags: dict[str, str] = Field(description="the run's tags, then the version's own (lineage, gate verdict)")
    metrics: dict[str, float] = Field(description="the version's training run's metrics")


def show(settings: Settings, version: int) -> VersionDetail:
    """One version: status, aliases, run id, lineage tags and its run's metrics."""
    from recsys.registry.service import get_version, list_versions
    from recsys.registry.tracking import client_for

    name, uri = settings.model_name, settings.mlflow_uri
    client = client_for(uri)
    mv = get_version(client, name, version)
    run = client.get_run(mv.run_id) if mv.run_id else None
    row = next(r for r in list_versions(name, uri) if r.version == version)
    tags: dict[str, Any] = {**(run.data.tags if run else {}), **(mv.tags or {})}
    return VersionDetail(model=name, tracking_uri=uri, version=version, status=row.status, aliases=row.aliases,
                         run_id=mv.run_id, created=row.created,
                         tags={k: str(v) for k, v in tags.items() if not k.startswith("mlflow.")},
                         metrics=dict(run.data.metrics) if run else {})


class HistoryResult(StageResult):
    model: str
    events: list[AuditRecord] = Field(description="newest first")


def history(settings: Settings, limit: int = 20) -> HistoryResult:
    """The audit log: registrations, gate decisions, approvals, promotions and rollbacks, newest first."""
    with _registry(settings) as (_, audit):
        return HistoryResult(model=settings.model_name, events=audit.history(settings.model_name, limit=limit))
