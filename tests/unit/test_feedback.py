"""The feedback store on a real SQLite file and a real PostgreSQL database: round trip, idempotency, validation,
threads, and kill -9 durability (SQLite)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from recsys.serving.feedback import FeedbackEvent, FeedbackStore
from recsys.settings import ServingSettings
from tests.conftest import url_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "serving" / "feedback.db"  # the folder does not exist yet: the store must make it


@pytest.fixture
def store(store_url: str) -> Iterator[FeedbackStore]:
    s = FeedbackStore(store_url)
    yield s
    s.close()


def ev(event_id: str, **kw: Any) -> FeedbackEvent:
    return FeedbackEvent(**{"event_id": event_id, "user_id": 7, "item_id": 42, "event": "click", **kw})


def test_default_url_lives_under_var_dir_and_nothing_is_made_before_use(tmp_path: Path) -> None:
    url = ServingSettings(var_dir=tmp_path / "var").feedback_db_url
    assert url == f"sqlite:///{tmp_path}/var/serving/feedback.db"
    s = FeedbackStore(url)
    assert not (tmp_path / "var").exists()
    assert s.record(ev("e1"))
    assert (tmp_path / "var" / "serving" / "feedback.db").is_file()
    s.close()


def test_round_trip(store: FeedbackStore) -> None:
    ts = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    before = datetime.now(UTC)
    assert store.record(ev("req-1:item-42", request_id="req-1", event="watch", ts=ts, variant="challenger"))
    rec = store.get("req-1:item-42")
    assert rec is not None
    assert (rec.event_id, rec.request_id, rec.user_id, rec.item_id, rec.event, rec.variant, rec.ts) == (
        "req-1:item-42", "req-1", 7, 42, "watch", "challenger", ts)
    assert rec.ts.tzinfo is not None and rec.received_at.tzinfo is not None
    assert before <= rec.received_at <= datetime.now(UTC)
    assert rec.to_event() == ev("req-1:item-42", request_id="req-1", event="watch", ts=ts, variant="challenger")
    assert store.get("missing") is None
    assert store.count() == 1


def test_timestamps_naive_is_utc_aware_is_converted_missing_is_now(store: FeedbackStore) -> None:
    naive = FeedbackEvent(event_id="a", user_id=1, item_id=2, event="click", ts=datetime(2026, 1, 1, 8))
    assert naive.ts == datetime(2026, 1, 1, 8, tzinfo=UTC)
    paris = FeedbackEvent(event_id="b", user_id=1, item_id=2, event="click",
                          ts=datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=1))))
    assert paris.ts == datetime(2026, 1, 1, 8, tzinfo=UTC) and paris.ts.utcoffset() == timedelta(0)
    before = datetime.now(UTC)
    for event in (FeedbackEvent(event_id="c", user_id=1, item_id=2, event="click"),
                  FeedbackEvent(event_id="d", user_id=1, item_id=2, event="click", ts=None),
                  FeedbackEvent.model_validate_json('{"event_id": "e", "user_id": 1, "item_id": 2, "event": "click"}')):
        assert before <= event.ts <= datetime.now(UTC)
    from_json = FeedbackEvent.model_validate_json(
        '{"event_id": "f", "user_id": 1, "item_id": 2, "event": "click", "ts": "2026-01-01T09:00:00+01:00"}')
    assert from_json.ts == datetime(2026, 1, 1, 8, tzinfo=UTC)
    store.record(paris)
    stored = store.get("b")
    assert stored is not None and stored.ts == datetime(2026, 1, 1, 8, tzinfo=UTC)


def test_same_event_id_twice_is_stored_once_and_is_not_an_error(store: FeedbackStore) -> None:
    assert store.record(ev("dup", event="click")) is True
    # a retry, even one whose body differs, keeps the first version
    assert store.record(ev("dup", event="dismiss", item_id=99)) is False
    assert store.record(ev("dup")) is False
    assert store.count() == 1
    rec = store.get("dup")
    assert rec is not None and (rec.event, rec.item_id) == ("click", 42)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM feedback_events WHERE event_id = 'dup'").scalar() == 1


def test_a_second_store_on_the_same_database_sees_the_events_and_dedups(store: FeedbackStore) -> None:
    store.record(ev("one"))
    other = FeedbackStore(url_of(store))
    try:
        assert other.record(ev("one")) is False
        assert other.record(ev("two")) is True
        assert other.count() == store.count() == 2
    finally:
        other.close()


@pytest.mark.parametrize("bad", [
    {"event_id": ""},
    {"event_id": "x" * 129},
    {"event_id": "has space"},
    {"event_id": "slash/inside"},
    {"event_id": "émoji"},
    {"event": "like"},
    {"event": "Click"},
    {"user_id": -1},
    {"item_id": -5},
    {"user_id": 2**31},
    {"user_id": True},
    {"user_id": "seven"},
    {"request_id": "r" * 129},
    {"request_id": ""},
    {"variant": "v" * 65},
    {"unexpected": 1},
    {"user_id": "7"},
    {"item_id": 2.5},
    {"ts": "0"},
    {"ts": "1700000000"},
    {"ts": 1700000000},
    {"ts": "2024-01-01"},
    {"ts": "yesterday"},
    {"ts": "0001-01-01T00:00:00+05:00"},
    {"ts": datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-5)))},
])
def test_invalid_events_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FeedbackEvent(**{"event_id": "ok", "user_id": 1, "item_id": 2, "event": "click", **bad})


def test_json_integers_and_rfc3339_timestamps_are_accepted() -> None:
    event = FeedbackEvent.model_validate_json(
        '{"event_id": "j", "user_id": 7.0, "item_id": 42, "event": "watch", "ts": "0001-01-02T00:00:00+05:00"}')
    assert (event.user_id, event.item_id) == (7, 42) and isinstance(event.user_id, int)
    assert event.ts == datetime(1, 1, 1, 19, tzinfo=UTC)


def test_the_edges_of_the_valid_ranges_are_accepted() -> None:
    e = FeedbackEvent(event_id="A-z_0.9:x" + "x" * 119, user_id=0, item_id=2**31 - 1, event="dismiss",
                      request_id="r" * 128, variant="v" * 64)
    assert len(e.event_id) == 128


def test_record_takes_only_feedback_events(store: FeedbackStore) -> None:
    with pytest.raises(TypeError, match="FeedbackEvent"):
        store.record({"event_id": "x", "user_id": 1, "item_id": 1, "event": "click"})  # type: ignore[arg-type]


def test_sqlite_runs_wal_with_full_synchronous(db_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{db_path}")
    store.record(ev("x"))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    store.close()
    with sqlite3.connect(db_path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # persisted in the file


def test_close_then_reuse_reopens(store: FeedbackStore) -> None:
    store.record(ev("a"))
    store.close()
    store.close()  # twice is fine
    assert store.record(ev("b"))
    assert store.count() == 2


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(store: FeedbackStore) -> None:
    n_threads, per_thread = 8, 50
    results: dict[int, list[bool]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            start.wait()
            out = []
            for i in range(per_thread):
                out.append(store.record(ev(f"t{t}-{i}", user_id=t, item_id=i)))
                # every thread also retries one shared id: exactly one of all these calls wins
                out.append(store.record(ev(f"shared-{i}", user_id=t, item_id=i)))
            results[t] = out
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert all(all(r[0::2]) for r in results.values())  # each thread's own ids are all new
    assert sum(sum(r[1::2]) for r in results.values()) == per_thread  # each shared id is new once
    assert store.count() == n_threads * per_thread + per_thread
    with store.engine.connect() as conn:
        ids = [row[0] for row in conn.exec_driver_sql("SELECT event_id FROM feedback_events")]
    assert len(ids) == len(set(ids))
    assert {f"t{t}-{i}" for t in range(n_threads) for i in range(per_thread)} <= set(ids)


CHILD = textwrap.dedent("""
    import sys
    from recsys.serving.feedback import FeedbackEvent, FeedbackStore

    store = FeedbackStore(sys.argv[1])
    i = 0
    while True:
        event_id = f"ack-{i}"
        store.record(FeedbackEvent(event_id=event_id, user_id=i, item_id=i % 1682, event="watch"))
        print(event_id, flush=True)  # acknowledged only after record() returned, i.e. after the commit
        i += 1
""")


def test_acknowledged_events_survive_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving' / 'feedback.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        while len(acked) < 200:
            line = proc.stdout.readline()
            if not line:
                _, err = proc.communicate(timeout=10)
                pytest.fail(f"child exited early ({proc.returncode}): {err[-2000:]}")
            acked.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)  # mid-loop: probably inside a transaction
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    store = FeedbackStore(url)
    try:
        missing = [eid for eid in acked if store.get(eid) is None]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
        assert store.count() >= len(acked)
        assert store.record(FeedbackEvent(event_id="after-crash", user_id=1, item_id=1, event="click"))
    finally:
        store.close()
