"""Registry operations the CLI and the Airflow DAGs call: list, promote, approve, reject, roll back, apply a gate.

MLflow holds where the ``champion`` alias points now; the :class:`~recsys.registry.audit.AuditLog` holds where it
pointed before. Every alias move here is followed by its audit record (if that write fails the alias is moved
back), then by the optional ``notify`` hook, whose failure is logged and never undoes anything. MLflow is reached
through an ``MlflowClient`` with an explicit tracking URI; expected failures (an unknown version, a version that
is not READY, no pending approval) raise ``ValueError`` with a message meant for the user.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, ParamSpec, TypeVar

from mlflow.entities.model_registry import ModelVersion
from mlflow.entities.model_registry.model_version_status import ModelVersionStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from recsys.registry.audit import AuditEvent, AuditLog, AuditRecord, plan_rollback, record_rollback
from recsys.registry.gate import GateDecision
from recsys.registry.tracking import (
    DATA_HASH_TAG,
    GIT_SHA_TAG,
    RUN_KEY_TAG,
    client_for,
    is_connection_error,
    reporting_unreachable,
    with_retries,
)
from recsys.schema import CHALLENGER, CHAMPION

logger = logging.getLogger(__name__)

GATE_VERDICT_TAG, GATE_REASONS_TAG, GATE_OUTCOME_TAG = "gate_verdict", "gate_reasons", "gate_outcome"
MAX_TAG_CHARS = 5000
"""MLflow's limit on a model version tag's value."""
MAX_REASON_CHARS = 4000
"""The audit log's ``reason`` column width."""
Notify = Callable[[dict[str, Any]], None]
Policy = Literal["auto", "manual"]
GateOutcome = Literal["promoted", "pending", "rejected by gate"]


class VersionRow(BaseModel):
    """One registered version as ``recsys registry list`` shows it."""

    version: int
    status: str
    aliases: list[str]
    run_id: str | None
    run_key: str | None
    created: datetime | None


P = ParamSpec("P")
R = TypeVar("R")


# -- MLflow helpers ------------------------------------------------------------------------------------------
def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"a registry version is an integer >= 1, got {version!r}")
    return version


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message.lower()


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    quoted = name.replace("'", "\\'")
    found = with_retries(lambda: client.search_model_versions(f"name = '{quoted}'"))
    return sorted(found, key=lambda v: int(v.version))


def get_version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    """The version, or ValueError naming the versions that exist."""
    _check_version(version)
    try:
        mv: ModelVersion = with_retries(lambda: client.get_model_version(name, str(version)))
    except MlflowException as exc:
        if is_connection_error(exc) or not _not_found(exc):
            raise
        known = ", ".join(str(v.version) for v in _versions(client, name)) or "none"
        raise ValueError(f"version {version} of {name!r} does not exist; versions: {known}") from None
    return mv


def _ready_version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    mv = get_version(client, name, version)
    if ModelVersionStatus.from_string(mv.status) != ModelVersionStatus.READY:
        raise ValueError(f"version {version} of {name!r} is {mv.status}, not READY: only READY versions "
                         "can become champion")
    return mv


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version holding ``alias``, or None (also when the model is not registered at all)."""
    try:
        mv: ModelVersion = with_retries(lambda: client.get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if is_connection_error(exc) or not _not_found(exc):
            raise
        return None
    return int(mv.version)


def _aliases(client: MlflowClient, name: str) -> dict[int, list[str]]:
    """Version -> its aliases (searches leave a version's aliases out; the registered model has them all)."""
    try:
        model = with_retries(lambda: client.get_registered_model(name))
    except MlflowException as exc:
        if is_connection_error(exc) or not _not_found(exc):
            raise
        return {}
    by_version: dict[int, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(int(version), []).append(alias)
    return {v: sorted(a) for v, a in by_version.items()}


def _move_champion(client: MlflowClient, name: str, version: int) -> None:
    with_retries(lambda: client.set_registered_model_alias(name, CHAMPION, str(version)))


def _restore_champion(client: MlflowClient, name: str, previous: int | None) -> None:
    """Best effort: point ``champion`` back where it was after a failed audit write."""
    try:
        if previous is None:
            with_retries(lambda: client.delete_registered_model_alias(name, CHAMPION))
        else:
            _move_champion(client, name, previous)
    except Exception:
        logger.exception("could not move %s's champion alias back to v%s", name, previous)


def _notify(notify: Notify | None, record: dict[str, Any]) -> None:
    if notify is None:
        return
    try:
        notify(record)
    except Exception:
        logger.warning("%s of %s v%s recorded, but the notification hook failed", record.get("event"),
                       record.get("model_name"), record.get("to_version"), exc_info=True)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reports_unreachable(fn: Callable[P, R]) -> Callable[P, R]:
    """An MLflow that stays unreachable through the retries fails ``fn`` with ``MlflowUnreachableError``."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with reporting_unreachable(str(kwargs.get("tracking_uri", ""))):
            return fn(*args, **kwargs)
    return wrapper


# -- operations ----------------------------------------------------------------------------------------------
def alias_version(name: str, alias: str, tracking_uri: str) -> int | None:
    """The version holding ``alias`` in MLflow, or None."""
    return _alias_version(client_for(tracking_uri), name, alias)


def current_champion(name: str, tracking_uri: str) -> int | None:
    """The version holding the ``champion`` alias in MLflow, or None."""
    return alias_version(name, CHAMPION, tracking_uri)


def gate_outcome(name: str, version: int, tracking_uri: str) -> tuple[str, int | None] | None:
    """What an earlier gate of ``version`` ended with (outcome, the version acted on), or None when it has not been
    gated to the end. A version that holds ``champion`` counts as promoted (its gate may have stopped between the
    alias move and the outcome tag)."""
    client = client_for(tracking_uri)
    tags = get_version(client, name, version).tags or {}
    recorded = tags.get(GATE_OUTCOME_TAG)
    if recorded:
        outcome, _, target = recorded.partition(":")
        return outcome, int(target) if target else None
    if _alias_version(client, name, CHAMPION) == version:
        return "promoted", version
    return None


def list_versions(name: str, tracking_uri: str) -> list[VersionRow]:
    """Every version of ``name``, oldest first: version, status, aliases, run id, run key and creation time."""
    client = client_for(tracking_uri)
    versions = _versions(client, name)
    aliases = _aliases(client, name) if versions else {}
    rows = []
    for mv in versions:
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC) if mv.creation_timestamp else None
        version = int(mv.version)
        rows.append(VersionRow(version=version, status=str(mv.status), aliases=aliases.get(version, []),
                               run_id=mv.run_id, run_key=(mv.tags or {}).get(RUN_KEY_TAG), created=created))
    return rows


@_reports_unreachable
def promote(name: str, version: int, *, actor: str | None, reason: str | None, audit: AuditLog,
            tracking_uri: str, notify: Notify | None = None,
            details: dict[str, Any] | None = None) -> AuditRecord:
    """Move ``champion`` to a READY ``version``, record it, then call ``notify``; returns the audit record.

    The version loses the ``challenger`` alias if it held it. If the audit write fails, the alias is moved
    back and the error raised.
    """
    client = client_for(tracking_uri)
    mv = _ready_version(client, name, version)
    previous = _alias_version(client, name, CHAMPION)
    if previous == version:
        raise ValueError(f"version {version} of {name!r} is already the champion")
    _move_champion(client, name, version)
    tags = mv.tags or {}
    try:
        rec = audit.record(AuditEvent.PROMOTED, name, from_version=previous, to_version=version, actor=actor,
                           reason=reason, run_id=mv.run_id, data_hash=tags.get(DATA_HASH_TAG) or None,
                           git_sha=tags.get(GIT_SHA_TAG) or None, details=details)
    except Exception:
        _restore_champion(client, name, previous)
        raise
    if CHALLENGER in _aliases(client, name).get(version, []):
        try:
            with_retries(lambda: client.delete_registered_model_alias(name, CHALLENGER))
        except MlflowException:
            logger.warning("%s v%d is champion but still holds %r", name, version, CHALLENGER, exc_info=True)
    logger.info("promoted %s v%d to %s (was %s)", name, version, CHAMPION, previous)
    _notify(notify, rec.to_dict())
    return rec


@_reports_unreachable
def rollback(name: str, *, to_version: int | None = None, actor: str | None, reason: str | None,
             audit: AuditLog, tracking_uri: str, notify: Notify | None = None) -> AuditRecord:
    """Move ``champion`` back to the previous champion of the audit history (or ``to_version``) and record it."""
    if to_version is not None:
        _check_version(to_version)
    from_version, target = plan_rollback(audit, name, to_version)
    client = client_for(tracking_uri)
    _ready_version(client, name, target)
    live = _alias_version(client, name, CHAMPION)
    if live != from_version:
        logger.warning("%s: MLflow's champion is v%s but the audit log says v%d; rolling back to v%d anyway",
                       name, live, from_version, target)
    _move_champion(client, name, target)
    try:
        rec = record_rollback(audit, name, from_version, target, actor, reason, notify=notify)
    except Exception:
        _restore_champion(client, name, live)
        raise
    logger.info("rolled %s back from v%d to v%d", name, from_version, target)
    return rec


def request_approval(name: str, version: int, decision_dict: dict[str, Any], audit: AuditLog,
                     actor: str | None) -> AuditRecord:
    """Record that ``version`` passed the gate and waits for a human's ``approve`` or ``reject``."""
    _check_version(version)
    rec = audit.record(AuditEvent.APPROVAL_PENDING, name, to_version=version, actor=actor,
                       reason="passed the promotion gate; waiting for approval", details={"decision": decision_dict})
    return rec


def _pending_versions(audit: AuditLog, name: str) -> list[int]:
    return [r.to_version for r in audit.pending_approvals(name) if r.to_version is not None]


@_reports_unreachable
def approve(name: str, version: int, *, by: str, reason: str, audit: AuditLog, tracking_uri: str,
            notify: Notify | None = None) -> AuditRecord:
    """Complete a pending approval: record ``approved``, then promote; returns the promotion's record."""
    _check_version(version)
    pending = _pending_versions(audit, name)
    if version not in pending:
        waiting = ", ".join(str(v) for v in pending) or "none"
        raise ValueError(f"version {version} of {name!r} has no pending approval; pending: {waiting}")
    client = client_for(tracking_uri)
    _ready_version(client, name, version)  # fail before recording the approval
    if _alias_version(client, name, CHAMPION) == version:
        raise ValueError(f"version {version} of {name!r} is already the champion")
    audit.record(AuditEvent.APPROVED, name, to_version=version, actor=by, reason=reason)
    return promote(name, version, actor=by, reason=reason, audit=audit, tracking_uri=tracking_uri,
                   notify=notify, details={"approved_by": by})


def reject(name: str, version: int, *, by: str, reason: str, audit: AuditLog) -> AuditRecord:
    """Record a human's rejection of ``version`` (clears its pending approval); no alias moves."""
    _check_version(version)
    return audit.record(AuditEvent.REJECTED, name, to_version=version, actor=by, reason=reason)


@_reports_unreachable
def apply_gate_decision(name: str, version: int, decision: GateDecision, *, policy: Policy, audit: AuditLog,
                        tracking_uri: str, actor: str | None, notify: Notify | None = None,
                        act_on: int | None = None) -> GateOutcome:
    """Record a gate decision about ``version`` (audit log + version tags) and act on it under ``policy``.

    The action concerns ``act_on`` when given (the refit of the evaluated ``version``), else ``version``.
    Returns ``"promoted"`` (passed, auto), ``"pending"`` (passed, manual: an approval request is recorded) or
    ``"rejected by gate"`` (failed: no alias moves).
    """
    if policy not in ("auto", "manual"):
        raise ValueError(f"policy must be 'auto' or 'manual', got {policy!r}")
    client = client_for(tracking_uri)
    target = version if act_on is None else act_on
    for v in dict.fromkeys((version, target)):
        get_version(client, name, v)
    summary = "; ".join(decision.reasons)
    for v in dict.fromkeys((version, target)):
        for key, value in ((GATE_VERDICT_TAG, decision.verdict),
                           (GATE_REASONS_TAG, _truncate(summary, MAX_TAG_CHARS))):
            with_retries(partial(client.set_model_version_tag, name, str(v), key, value))
    details = {**decision.to_dict(), "policy": policy, **({"act_on": target} if target != version else {})}
    audit.record(AuditEvent.GATE_DECISION, name, to_version=version, actor=actor,
                 reason=_truncate(summary, MAX_REASON_CHARS) or None, details=details)
    outcome: GateOutcome
    if not decision.passed:
        logger.info("%s v%d rejected by the gate: %s", name, version, summary)
        outcome = "rejected by gate"
    elif policy == "manual":
        request_approval(name, target, {**decision.to_dict(), "evaluated_version": version}, audit, actor)
        outcome = "pending"
    else:
        via = "" if target == version else f" (refit of v{version}, which passed the gate)"
        promote(name, target, actor=actor,
                reason=_truncate(f"passed the promotion gate (auto policy){via}: {summary}", MAX_REASON_CHARS),
                audit=audit, tracking_uri=tracking_uri, notify=notify,
                details={"evaluated_version": version} if via else None)
        outcome = "promoted"
    # last: what a rerun of the same gate (``gate --once``) finds and repeats instead of acting twice
    acted = "" if outcome == "rejected by gate" else str(target)
    with_retries(partial(client.set_model_version_tag, name, str(version), GATE_OUTCOME_TAG, f"{outcome}:{acted}"))
    return outcome
