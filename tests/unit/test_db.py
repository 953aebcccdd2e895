"""The stores' migrations on a real SQLite file and a real PostgreSQL database: a new database, a second run that
changes nothing, an upgrade step, a database newer than the code, tables made before versions were recorded,
concurrent migrators, and `recsys db migrate|status` over every store of the settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import Connection, Integer, String, inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typer.testing import CliRunner

from recsys.cli import app
from recsys.db import VERSION_TABLE, MigrationError, SqlStore
from recsys.registry.audit import AuditLog
from tests.conftest import url_of


class V1(DeclarativeBase):
    pass


class NoteV1(V1):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(200))


class V2(DeclarativeBase):
    pass


class NoteV2(V2):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(50), server_default="unknown")


class Tags(V2):
    __tablename__ = "note_tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


def add_author(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE notes ADD COLUMN author VARCHAR(50) DEFAULT 'unknown' NOT NULL"))


class NotesV1(SqlStore):
    metadata = V1.metadata
    schema_name = "notes"


class NotesV2(SqlStore):
    metadata = V2.metadata
    schema_name = "notes"
    schema_version = 2
    upgrades: ClassVar = {2: add_author}


@pytest.fixture
def v1(store_url: str) -> Iterator[NotesV1]:
    store = NotesV1(store_url)
    yield store
    store.close()


def columns(store: SqlStore, table: str) -> set[str]:
    with store.engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns(table)}


def test_a_new_database_is_created_and_a_second_run_changes_nothing(v1: NotesV1) -> None:
    assert v1.status() is None
    first = v1.migrate()
    assert (first.from_version, first.to_version, first.applied, first.created) == (None, 1, [], ["notes"])
    again = NotesV1(url_of(v1)).migrate()
    assert (again.from_version, again.to_version, again.applied, again.created) == (1, 1, [], [])
    assert v1.status() == 1


def test_an_upgrade_step_runs_once_and_keeps_the_rows(v1: NotesV1) -> None:
    v1.migrate()
    with v1.engine.begin() as conn:
        conn.execute(text("INSERT INTO notes (id, body) VALUES (1, 'kept')"))
    v2 = NotesV2(url_of(v1))
    try:
        done = v2.migrate()
        assert (done.from_version, done.to_version, done.applied, done.created) == (1, 2, [2], ["note_tags"])
        assert columns(v2, "notes") == {"id", "body", "author"}
        with v2.engine.connect() as conn:
            assert conn.execute(text("SELECT body, author FROM notes")).one() == ("kept", "unknown")
        assert v2.migrate().applied == []
        assert v2.status() == 2
    finally:
        v2.close()


def test_a_database_newer_than_the_code_is_refused(v1: NotesV1) -> None:
    v2 = NotesV2(url_of(v1))
    v2.migrate()
    v2.close()
    with pytest.raises(MigrationError, match="schema version 2, newer than this code's 1"):
        v1.migrate()


def test_tables_made_before_versions_were_recorded_count_as_the_first_schema(v1: NotesV1) -> None:
    V1.metadata.create_all(v1.engine)  # what a store created before versioning left
    v2 = NotesV2(url_of(v1))
    try:
        done = v2.migrate()
        assert (done.from_version, done.applied) == (1, [2])
        assert "author" in columns(v2, "notes")
    finally:
        v2.close()


def test_concurrent_migrators_create_everything_once(store_url: str) -> None:
    stores = [NotesV2(store_url) for _ in range(4)]
    start = threading.Barrier(len(stores))
    outcomes: list[list[str]] = []
    errors: list[BaseException] = []

    def run(store: NotesV2) -> None:
        try:
            start.wait()
            outcomes.append(store.migrate().created)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(map(tuple, outcomes)) == [(), (), (), ("note_tags", "notes")]  # one of them made both tables
    with stores[0].engine.connect() as conn:
        assert conn.execute(text(f"SELECT store, version FROM {VERSION_TABLE}")).all() == [("notes", 2)]
    for s in stores:
        s.close()


def test_the_first_use_of_a_store_records_its_version(store_url: str) -> None:
    log = AuditLog(store_url)
    try:
        log.history()
        assert log.status() == 1
    finally:
        log.close()


def test_recsys_db_migrate_and_status_cover_every_store(store_url: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("RECSYS_AUDIT_URL", "RECSYS_NOTIFY_URL", "RECSYS_FEEDBACK_URL", "RECSYS_BANDIT_URL"):
        monkeypatch.setenv(var, store_url)  # one database for all, as in the compose stack
    runner = CliRunner()
    before = runner.invoke(app, ["db", "status", "--json"])
    assert before.exit_code == 1, before.output
    assert {s["store"]: s["version"] for s in json.loads(before.stdout)["stores"]} == {
        "audit": None, "notifications": None, "feedback": None, "bandit": None}
    first = runner.invoke(app, ["db", "migrate", "--json"])
    assert first.exit_code == 0, first.output
    created = {m["store"]: m["created"] for m in json.loads(first.stdout)["stores"]}
    assert created == {"audit": ["audit_events"],
                       "notifications": ["notification_dedup", "notification_deliveries", "notifications"],
                       "feedback": ["feedback_events"], "bandit": ["bandit_posteriors"]}
    second = runner.invoke(app, ["db", "migrate", "--json"])
    assert second.exit_code == 0 and json.loads(second.stdout)["changed"] is False
    after = runner.invoke(app, ["db", "status", "--json"])
    assert after.exit_code == 0 and json.loads(after.stdout)["current"] is True
