"""The registry audit log on a real SQLite file and a real PostgreSQL database: history, champion sequence,
rollback plans, approvals."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.registry.audit import (
    AuditEvent,
    AuditLog,
    plan_rollback,
    record_rollback,
)
from recsys.settings import Settings
from tests.conftest import url_of

MODEL = "content-ranker"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "registry" / "audit.db"  # the folder does not exist yet: the log must make it


@pytest.fixture
def audit(store_url: str) -> Iterator[AuditLog]:
    log = AuditLog(store_url)
    yield log
    log.close()


def promote(log: AuditLog, *versions: int, model: str = MODEL) -> None:
    previous = log.current_champion(model)
    for v in versions:
        log.record(AuditEvent.PROMOTED, model, from_version=previous, to_version=v)
        previous = v


def test_default_url_lives_under_var_dir_and_nothing_is_made_before_use(tmp_path: Path) -> None:
    url = Settings(var_dir=tmp_path / "var").audit_db_url
    assert url == f"sqlite:///{tmp_path}/var/registry/audit.db"
    log = AuditLog(url)
    assert not (tmp_path / "var").exists()
    log.record("registered", MODEL, to_version=1)
    assert (tmp_path / "var" / "registry" / "audit.db").is_file()
    log.close()


def test_sqlite_file_is_in_wal_mode(db_path: Path) -> None:
    audit = AuditLog(f"sqlite:///{db_path}")
    audit.create()
    audit.close()
    with sqlite3.connect(db_path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_is_idempotent(audit: AuditLog) -> None:
    audit.create()
    audit.create()
    assert audit.history() == []


def test_record_and_history_newest_first(audit: AuditLog) -> None:
    before = datetime.now(UTC)
    reg = audit.record(AuditEvent.REGISTERED, MODEL, to_version=1, run_id="r1", data_hash="d" * 64, git_sha="abc",
                       actor="alice")
    gate = audit.record("gate_decision", MODEL, to_version=1, reason="ci lower bound 0.01 >= 0")
    prom = audit.record(AuditEvent.PROMOTED, MODEL, to_version=1, actor="bob", reason="auto")
    after = datetime.now(UTC)

    history = audit.history()
    assert history == [prom, gate, reg]
    assert [r.event for r in history] == [AuditEvent.PROMOTED, AuditEvent.GATE_DECISION, AuditEvent.REGISTERED]
    assert (reg.run_id, reg.data_hash, reg.git_sha, reg.to_version, reg.from_version) == ("r1", "d" * 64, "abc", 1,
                                                                                        None)
    assert reg.actor == "alice" and prom.actor == "bob"
    assert prom.reason == "auto" and reg.reason is None and reg.details == {}
    for rec in history:
        assert rec.ts.tzinfo is not None and rec.ts.utcoffset() == timedelta(0)
        assert before <= rec.ts <= after
    assert len({r.id for r in history}) == 3


def test_actor_defaults_to_system(audit: AuditLog) -> None:
    assert audit.record("registered", MODEL, to_version=1).actor == "system"


def test_the_settings_actor_is_recsys_actor_then_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_ACTOR", raising=False)
    monkeypatch.setenv("USER", "alice")
    assert Settings().actor == "alice"
    monkeypatch.setenv("RECSYS_ACTOR", "airflow")
    assert Settings().actor == "airflow"
    monkeypatch.delenv("RECSYS_ACTOR")
    monkeypatch.delenv("USER")
    assert Settings().actor == "system"


def test_history_filters_by_model_and_limits(audit: AuditLog) -> None:
    for v in range(1, 6):
        audit.record("registered", MODEL, to_version=v)
    audit.record("registered", "other", to_version=1)
    assert [r.to_version for r in audit.history(MODEL, limit=2)] == [5, 4]
    assert audit.history(limit=1)[0].model_name == "other"
    assert len(audit.history()) == 6
    with pytest.raises(ValueError, match="limit"):
        audit.history(limit=0)


def test_details_round_trip_as_json(audit: AuditLog) -> None:
    details = {"verdict": "pass", "ndcg_diff": {"lo": 0.012, "hi": 0.031}, "slices": ["warm", "cold"],
               "reasons": [], "note": "überprüft ✓", "ok": True, "none": None, "p95_ms": np.float64(3.5),
               "per_user": np.array([1, 2]), "window": (12, 16)}
    rec = audit.record("gate_decision", MODEL, to_version=2, details=details)
    expected = {**details, "p95_ms": 3.5, "per_user": [1, 2], "window": [12, 16]}
    assert rec.details == expected
    reread = AuditLog(url_of(audit))
    assert reread.history()[0].details == expected
    reread.close()
    json.dumps(rec.to_dict())  # what notification hooks receive is plain JSON


def test_unserialisable_details_are_refused(audit: AuditLog) -> None:
    with pytest.raises(ValueError, match="JSON-serializable"):
        audit.record("gate_decision", MODEL, to_version=1, details={"x": object()})
    assert audit.history() == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"event": "deployed", "model_name": MODEL}, "allowed: registered, gate_decision, approval_pending, approved, "
                                                 "rejected, promoted, rolled_back"),
    ({"event": "registered", "model_name": ""}, "model_name"),
    ({"event": "registered", "model_name": "  "}, "model_name"),
    ({"event": "promoted", "model_name": MODEL}, "needs to_version"),
    ({"event": "registered", "model_name": MODEL, "to_version": 0}, "to_version"),
])
def test_invalid_records_are_refused(audit: AuditLog, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        audit.record(**kwargs)


def test_champion_sequence_through_promote_promote_rollback(audit: AuditLog) -> None:
    promote(audit, 1, 2)
    audit.record("registered", MODEL, to_version=3)  # not a champion event
    assert audit.champion_versions(MODEL) == [1, 2]
    record_rollback(audit, MODEL, 2, 1, actor="oncall", reason="ctr dropped")
    assert audit.champion_versions(MODEL) == [1, 2, 1]
    assert audit.current_champion(MODEL) == 1
    assert audit.previous_champion(MODEL) == 2
    assert audit.current_champion("other") is None


@pytest.mark.parametrize(("sequence", "previous"), [
    ([], None),
    ([1], None),
    ([1, 1], None),
    ([1, 2], 1),
    ([1, 2, 2], 1),
    ([1, 2, 3], 2),
    ([1, 2, 1], 2),  # after a rollback, "previous" is the version rolled back from: rollbacks toggle
    ([1, 2, 3, 2], 3),
])
def test_previous_champion_table(audit: AuditLog, sequence: list[int], previous: int | None) -> None:
    promote(audit, *sequence)
    assert audit.previous_champion(MODEL) == previous


def test_plan_rollback_default_and_to(audit: AuditLog) -> None:
    promote(audit, 1, 2, 3)
    assert plan_rollback(audit, MODEL) == (3, 2)
    assert plan_rollback(audit, MODEL, to_version=1) == (3, 1)
    assert audit.current_champion(MODEL) == 3  # planning moves nothing


def test_plan_rollback_errors(audit: AuditLog) -> None:
    with pytest.raises(ValueError, match="no champion to roll back"):
        plan_rollback(audit, MODEL)
    promote(audit, 1)
    with pytest.raises(ValueError, match="no previous champion"):
        plan_rollback(audit, MODEL)
    promote(audit, 2, 3)
    with pytest.raises(ValueError, match="never champion; earlier champions: 1, 2"):
        plan_rollback(audit, MODEL, to_version=7)
    with pytest.raises(ValueError, match="already the champion"):
        plan_rollback(audit, MODEL, to_version=3)


def test_pending_approvals_resolved_by_approved_and_rejected(audit: AuditLog) -> None:
    audit.record("approved", MODEL, to_version=4)  # an approval before the request does not resolve it
    for v in (2, 3, 4):
        audit.record("approval_pending", MODEL, to_version=v)
    audit.record("approval_pending", "other", to_version=3)
    assert [r.to_version for r in audit.pending_approvals(MODEL)] == [2, 3, 4]
    audit.record("approved", MODEL, to_version=2, actor="lead", reason="looks good")
    audit.record("rejected", "other", to_version=3)  # another model's decision
    assert [r.to_version for r in audit.pending_approvals(MODEL)] == [3, 4]
    audit.record("rejected", MODEL, to_version=3)
    audit.record("approved", MODEL, to_version=4)
    assert audit.pending_approvals(MODEL) == []
    assert [r.to_version for r in audit.pending_approvals("other")] == []


def test_records_survive_across_instances(audit: AuditLog) -> None:
    promote(audit, 1, 2)
    audit.close()
    second = AuditLog(url_of(audit))
    assert second.champion_versions(MODEL) == [1, 2]
    assert second.history() == audit.history()
    second.close()


def test_concurrent_writers_on_a_fresh_database_all_land(store_url: str) -> None:
    logs = [AuditLog(store_url) for _ in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(log: AuditLog, writer: int) -> None:
        try:
            start.wait()
            for i in range(50):
                log.record("gate_decision", MODEL, to_version=1, details={"writer": writer, "i": i})
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(log, w)) for w, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = logs[0].history(limit=1000)
    assert len(rows) == 100 and len({r.id for r in rows}) == 100
    assert {(r.details["writer"], r.details["i"]) for r in rows} == {(w, i) for w in range(2) for i in range(50)}
    for log in logs:
        log.close()


def test_rollback_notifies_with_the_records_dict(audit: AuditLog) -> None:
    promote(audit, 1, 2)
    received: list[dict[str, Any]] = []
    rec = record_rollback(audit, MODEL, *plan_rollback(audit, MODEL), actor="oncall", reason="bad canary",
                          notify=received.append)
    assert received == [rec.to_dict()]
    sent = received[0]
    assert (sent["event"], sent["from_version"], sent["to_version"]) == ("rolled_back", 2, 1)
    assert (sent["actor"], sent["reason"], sent["model_name"]) == ("oncall", "bad canary", MODEL)
    assert datetime.fromisoformat(sent["ts"]) == rec.ts


def test_failing_hook_keeps_the_record(audit: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    promote(audit, 1, 2)

    def broken(_: dict[str, Any]) -> None:
        raise ConnectionError("slack is down")

    with caplog.at_level(logging.WARNING, logger="recsys.registry.audit"):
        rec = record_rollback(audit, MODEL, 2, 1, actor=None, reason=None, notify=broken)
    assert audit.history(MODEL, limit=1) == [rec]
    assert audit.current_champion(MODEL) == 1
    assert "notification hook failed" in caplog.text


def test_rollback_to_the_same_version_is_refused(audit: AuditLog) -> None:
    with pytest.raises(ValueError, match="same version"):
        record_rollback(audit, MODEL, 1, 1, actor=None, reason=None)
