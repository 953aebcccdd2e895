"""The replay simulator against a real ``bentoml serve``: every event acknowledged and attributable, a seed replays
identically, and a feedback outage loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recsys.experiments.attribution import attribute_logs, read_impressions
from recsys.experiments.simulator import SimulationConfig, simulate
from recsys.serving.feedback import FeedbackStore
from tests.service.conftest import BentoServerFactory, free_port

pytestmark = pytest.mark.timeout(600)


def _run(small_model: SimpleNamespace, url: str, **overrides: Any) -> Any:
    cfg = SimulationConfig(**{"url": url, "from_week": 28, "max_requests": 400, "seed": 3, **overrides})
    return simulate(small_model.ml.interactions, small_model.ml.users, small_model.clock, cfg, from_week=28)


def test_every_event_is_acknowledged_attributed_and_replayed_identically(
        small_model: SimpleNamespace, bento_server: BentoServerFactory, tmp_path: Path) -> None:
    db = f"sqlite:///{(tmp_path / 'feedback.db').as_posix()}"
    var = tmp_path / "var"
    with bento_server(RECSYS_FEEDBACK_URL=db, RECSYS_VAR_DIR=str(var)) as server:
        first = _run(small_model, server.base, dismiss_rate=0.3)
        again = _run(small_model, server.base, dismiss_rate=0.3)
    assert first.requests == first.answered == 400 and first.failed_requests == 0
    assert first.fallback > 0  # users new after the cut arrive as cold starts
    clicks = sum(t.clicks for t in first.by_variant.values())
    watches = sum(t.watches for t in first.by_variant.values())
    dismisses = sum(t.dismisses for t in first.by_variant.values())
    assert clicks > 0 and 0 < watches <= clicks and dismisses > 0
    assert first.feedback_sent == first.feedback_acked == clicks + watches + dismisses and first.duplicates == 0
    # the same seed replays the same events: every id was already stored
    assert again.by_variant == first.by_variant and again.duplicates == again.feedback_sent == first.feedback_sent
    store = FeedbackStore(db)
    assert store.count() == first.feedback_sent
    impressions = read_impressions(var / "serving" / "assignments")
    assert len(impressions) == 800 and all(len(imp.items) == 10 for imp in impressions)
    assert {imp.ts for imp in impressions} <= {v for v in _visit_times(small_model)}  # on the simulated clock
    result = attribute_logs(var / "serving" / "assignments", store, timedelta(days=1))
    assert result.attributed == first.feedback_sent  # every click, watch and dismiss joins its impression
    assert sum(result.unattributed.values()) == 0
    assert sum(r.clicks for r in result.rates) == clicks
    store.close()


def _visit_times(small_model: SimpleNamespace) -> Iterator[Any]:
    from datetime import UTC, datetime

    start = small_model.clock.start(28)
    for ts in small_model.ml.interactions["timestamp"]:
        if ts >= start:
            yield datetime.fromtimestamp(int(ts), UTC)


class _FlakyProxy:
    """Forwards to the service but answers 500 to the first ``fail`` feedback POSTs, then loses the first answer of
    ``drop`` distinct events: the service stored them but the client never sees the ack, so it must retry."""

    def __init__(self, target: str, fail: int, drop: int) -> None:
        self.target, self.fail, self.drop = target, fail, drop
        self.port = free_port()
        self.seen = 0
        self.dropped: set[str] = set()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        from aiohttp import ClientSession, web

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            if request.path == "/feedback":
                self.seen += 1
                if self.seen <= self.fail:
                    return web.json_response({"error": "injected"}, status=500)
            async with ClientSession() as session, session.request(
                    request.method, f"{self.target}{request.path_qs}", data=body,
                    headers={"Content-Type": "application/json"}) as resp:
                payload = await resp.read()
                event_id = json.loads(body).get("event_id") if request.path == "/feedback" else None
                if event_id is not None and len(self.dropped) < self.drop and event_id not in self.dropped:
                    self.dropped.add(event_id)
                    assert request.transport is not None
                    request.transport.close()  # stored, but the answer never arrives
                    raise ConnectionResetError
                return web.Response(body=payload, status=resp.status, content_type="application/json")

        async def main() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            while True:
                await asyncio.sleep(3600)

        self._loop = asyncio.new_event_loop()
        with contextlib.suppress(RuntimeError):
            self._loop.run_until_complete(main())

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


def test_a_feedback_outage_loses_nothing_and_stores_nothing_twice(
        small_model: SimpleNamespace, bento_server: BentoServerFactory, tmp_path: Path) -> None:
    db = f"sqlite:///{(tmp_path / 'feedback.db').as_posix()}"
    with bento_server(RECSYS_FEEDBACK_URL=db, RECSYS_VAR_DIR=str(tmp_path / "var")) as server, \
            _FlakyProxy(server.base, fail=5, drop=3) as url:
        result = _run(small_model, url, max_requests=200, concurrency=4)
    assert result.feedback_sent > 8 and result.feedback_failed == 0
    assert result.feedback_acked == result.feedback_sent
    assert result.duplicates == 3  # the three events whose first answer was lost were retried
    store = FeedbackStore(db)
    assert store.count() == result.feedback_sent  # nothing lost, nothing stored twice
    store.close()


def _close(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)


@pytest.mark.timeout(180)
def test_the_bandit_shares_follow_the_attributed_feedback(
        small_model: SimpleNamespace, bento_server: BentoServerFactory, tmp_path: Path,
        wait_until: Any) -> None:
    """Simulated traffic -> ``bandit_update`` (counts from the logs into the store) -> every worker's shares."""
    import httpx

    from recsys.serving.bandit import BanditStore, thompson_shares
    from recsys.settings import ServingSettings
    from recsys.stages.ab import AbParams, bandit_update

    experiment = {"name": "bandit", "salt": "s", "variants": {"champion": 0.5, "challenger": 0.5},
                  "allocation": "thompson", "floor": 0.1}
    env = {"RECSYS_FEEDBACK_URL": f"sqlite:///{(tmp_path / 'feedback.db').as_posix()}",
           "RECSYS_VAR_DIR": str(tmp_path / "var"), "RECSYS_EXPERIMENT": json.dumps(experiment),
           "RECSYS_BANDIT_INTERVAL": "0.3"}
    with bento_server(**env) as server:
        assert httpx.get(f"{server.base}/model").json()["shares"] == {"challenger": 0.5, "champion": 0.5}
        sim = _run(small_model, server.base, max_requests=300)
        settings = ServingSettings(**{  # type: ignore[arg-type]
            "var_dir": tmp_path / "var", "feedback_url": env["RECSYS_FEEDBACK_URL"],
            "experiment": env["RECSYS_EXPERIMENT"]})
        result = bandit_update(settings, AbParams(until=sim.sim_end + timedelta(days=1)))
        assert sum(n for n, _ in result.counts.values()) == sim.answered  # every impression, mature by then
        assert sum(c for _, c in result.counts.values()) > 0
        store = BanditStore(env["RECSYS_FEEDBACK_URL"])
        expected = thompson_shares(store.read("bandit"), 0.1)
        assert result.shares == expected and min(expected.values()) >= 0.1
        wait_until(lambda: _close(httpx.get(f"{server.base}/model").json()["shares"], expected))
        # a winner by far takes all but the floor, in every worker
        store.write("bandit", {"champion": (5000, 50), "challenger": (5000, 900)})
        wait_until(lambda: httpx.get(f"{server.base}/model").json()["shares"]["challenger"] >= 0.89)
        store.close()
