"""The service on PostgreSQL, as the compose and Kubernetes deployments run it: a real ``bentoml serve`` with two
worker processes writes feedback events concurrently into a database of its own on the machine's server."""

from __future__ import annotations

import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil
import pytest

from recsys.serving.feedback import FeedbackStore
from recsys.stages.base import StageError
from recsys.stages.service import SmokeParams, smoke
from tests.receivers import free_port

PG_PORT = 5432


def _talks_to_postgres(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return any(c.raddr and c.raddr.port == PG_PORT for c in proc.net_connections(kind="tcp"))
    return False


@pytest.mark.timeout(240)
def test_two_workers_write_feedback_concurrently_without_loss_or_duplicates(
        bento_server: Any, postgres_db: str) -> None:
    n_events, retries = 400, 100  # every event once, then the first 100 again (clients retrying)
    events = [{"event_id": f"pg-{i}", "user_id": 1 + i % 943, "item_id": 1 + i % 1682,
               "event": ("click", "watch", "dismiss")[i % 3]} for i in range(n_events)]
    with bento_server(RECSYS_WORKERS="2", RECSYS_FEEDBACK_URL=postgres_db) as server:
        checked = smoke(SmokeParams(url=server.base, user_id=1, n=5))  # what a deployment checks first
        assert len(checked.items) == 5 and checked.cold_start_items == 5 and checked.model["alias"] == "champion"
        workers = [p for p in server.tree() if p.pid != server.proc.pid and "python" in p.name().lower()]

        def send(event: dict[str, Any]) -> int:
            # a new connection per event: BentoML's workers share one socket, and a few keep-alive connections
            # would leave one worker with all the load
            return httpx.post(f"{server.base}/feedback", json=event, timeout=30).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(send, itertools.chain(events, events[:retries])))
        writers = [p for p in workers if _talks_to_postgres(p)]

    assert codes.count(202) == n_events + retries, {c: codes.count(c) for c in set(codes)}  # retries acked too
    assert len(writers) >= 2, f"only {len(writers)} of the worker processes {[p.pid for p in workers]} wrote"
    store = FeedbackStore(postgres_db)
    try:
        assert store.count() == n_events
        with store.engine.connect() as conn:
            found = {row[0] for row in conn.exec_driver_sql("SELECT event_id FROM feedback_events")}
        assert found == {e["event_id"] for e in events}
        assert store.status() == 1  # the service migrated the store it writes to
    finally:
        store.close()


def test_smoke_names_what_is_wrong() -> None:
    with pytest.raises(StageError, match=r"not ready: http://127\.0\.0\.1:\d+ is unreachable"):
        smoke(SmokeParams(url=f"http://127.0.0.1:{free_port()}", wait=0))
