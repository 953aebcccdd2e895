"""The Redis online store of precomputed answers, on the machine's Redis (a key prefix of the test's own, deleted
after it; skips with a one-line reason where Redis does not answer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from recsys.ranking.recommender import RankedUsers, Recommender
from recsys.serving.cache import RankedCache
from recsys.serving.models import ModelManager
from recsys.serving.online_store import RedisAnswers, pack, unpack

DEAD = "redis://127.0.0.1:1/0"  # nothing listens there: every command fails at once


@pytest.fixture(scope="module")
def bundle(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("answers") / "bundle"
    small_model.result.recommender.save(path)
    return path


@pytest.fixture
def store() -> Iterator[RedisAnswers]:
    import redis

    client = redis.Redis("127.0.0.1", 6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379 ({type(exc).__name__})")
    prefix = f"recsys-test-{uuid.uuid4().hex[:12]}"
    yield RedisAnswers(client, prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def table(seed: int, users: int = 50, max_n: int = 10) -> RankedUsers:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_n + 1, users)
    items = np.zeros((users, max_n), np.int64)
    scores = np.zeros((users, max_n), np.float64)
    for row, n in enumerate(lengths):
        items[row, :n] = rng.choice(10_000, n, replace=False) + 1
        scores[row, :n] = np.sort(rng.normal(size=n))[::-1]
    return RankedUsers(np.arange(1, users + 1) * 7, items, scores, lengths, rng.integers(50, 400, users))


def test_pack_round_trips_bit_for_bit() -> None:
    scores = np.array([0.1 + 0.2, -1e-300, 3.0])
    back = unpack(pack(np.array([5, 2**31 - 1, 1]), scores, 123))
    assert back.items.tolist() == [5, 2**31 - 1, 1] and back.candidates == 123
    assert back.scores.tobytes() == scores.tobytes()


def test_a_published_version_answers_as_the_table(store: RedisAnswers) -> None:
    first, second = table(0), table(1)
    assert store.published("v1") is None
    assert store.publish(first, "v1") == 50 and store.published("v1") == 50
    for row in (0, 13, 49):
        got = store.get("v1", int(first.users[row]))
        n = int(first.lengths[row])
        assert got is not None and got.items.tolist() == first.items[row, :n].tolist()
        assert got.scores.tobytes() == first.scores[row, :n].tobytes()
        assert got.candidates == int(first.candidates[row])
    assert store.get("v1", 999_999) is None  # not a known user
    top3 = store.get("v1", int(first.users[5]), n=3)
    assert top3 is not None and top3.items.tolist() == first.items[5, :min(3, int(first.lengths[5]))].tolist()

    store.publish(second, "v2")
    many = store.get_many("v2", [int(u) for u in second.users[:5]] + [1])
    assert [m.items.tolist() for m in many[:5] if m is not None] == [
        second.items[r, :int(second.lengths[r])].tolist() for r in range(5)]
    assert many[5] is None
    assert store.drop("v1", batch=7) == 51  # the answers and the ready marker
    assert store.published("v1") is None
    assert store.get("v1", int(first.users[0])) is None and store.get("v2", int(second.users[0])) is not None


def pairs(recs: list) -> list[tuple[int, float]]:  # type: ignore[type-arg]
    return [(r.item_id, r.score) for r in recs]


def test_pods_serve_known_users_from_redis_bit_for_bit(store: RedisAnswers, bundle: Path) -> None:
    reference = Recommender.load(bundle)
    first = Recommender.load(bundle)
    cache = RankedCache(first, store=store)
    assert cache.source == "bundle -> redis" and first.ranked is None, "the pod keeps no table"
    assert store.published(cache.key) == cache.users == len(reference.known_users())
    users = reference.known_users()[::41][:20]
    for n in (1, 10, 100):
        for user in users:
            answer = cache.recommend(int(user), n)
            assert answer.known and pairs(answer.items) == pairs(reference.recommend(int(user), n))
    assert cache.hits == 3 * len(users) and cache.misses == 0 and cache.store_errors == 0
    # a known user is not a local lookup any more: the service sends it to a worker thread, not the event loop
    assert not cache.is_cached(int(users[0]), 10)

    second = RankedCache(Recommender.load(bundle), store=store)  # another pod: finds the answers published
    assert second.source == "redis" and second.key == cache.key
    assert pairs(second.recommend(int(users[3]), 10).items) == pairs(reference.recommend(int(users[3]), 10))


def test_redis_going_down_costs_no_answer(store: RedisAnswers, bundle: Path) -> None:
    reference = Recommender.load(bundle)
    user = int(reference.known_users()[7])
    cache = RankedCache(Recommender.load(bundle), store=store)
    cache.store = RedisAnswers.connect(DEAD, store.prefix)  # Redis stops answering while the pod serves
    answer = cache.recommend(user, 10)
    assert answer.known and pairs(answer.items) == pairs(reference.recommend(user, 10))
    assert cache.store_errors == 1 and cache.misses == 1

    down = RankedCache(Recommender.load(bundle), store=RedisAnswers.connect(DEAD, store.prefix))  # down at load
    assert down.store is None and down.store_errors == 1 and down.source == "bundle"
    assert pairs(down.recommend(user, 10).items) == pairs(reference.recommend(user, 10)) and down.hits == 1


def test_a_damaged_copy_is_published_again(store: RedisAnswers, bundle: Path) -> None:
    reference = Recommender.load(bundle)
    cache = RankedCache(Recommender.load(bundle), store=store)
    users = reference.known_users()
    first, last = int(users[0]), int(users[-1])
    store.client.set(store.key(cache.key, first), store.client.get(store.key(cache.key, last)))
    again = RankedCache(Recommender.load(bundle), store=store)
    assert again.source == "bundle -> redis"
    assert pairs(again.recommend(first, 10).items) == pairs(reference.recommend(first, 10))


def test_the_model_manager_loads_into_the_store(store: RedisAnswers, bundle: Path) -> None:
    manager = ModelManager("recsys-test", None, freeze_heap=False, answers=store)
    model = manager.load_bundle(bundle)
    assert model.info()["answers"] == "bundle -> redis"
    user = int(model.recommender.known_users()[11])
    assert pairs(model.recommend(user, 5).items) == pairs(Recommender.load(bundle).recommend(user, 5))


def test_the_runtime_reads_the_store_on_the_event_loop(store: RedisAnswers, bundle: Path) -> None:
    import asyncio

    from recsys.serving.router import Router
    from recsys.serving.runtime import ServingRuntime
    from recsys.serving.schemas import PredictRequest

    reference = Recommender.load(bundle)
    url = "redis://127.0.0.1:6379/0"
    online = RedisAnswers.connect(url, store.prefix, timeout=2)  # the service's store: an async reader too
    manager = ModelManager("recsys-test", None, freeze_heap=False, answers=online)
    manager.load_bundle(bundle)
    runtime = ServingRuntime(manager, Router())
    user = int(reference.known_users()[5])
    request = PredictRequest(user_id=user, n=10)
    assert not runtime.is_cached(request), "a store lookup is not a local one"

    async def answer(req: PredictRequest):  # type: ignore[no-untyped-def]
        return await runtime.prefetch(req)

    found = asyncio.run(answer(request))
    assert found is not None and found.answer is not None and found.model.cache is not None
    response = runtime.predict(request, found)
    assert [(i.item_id, i.score) for i in response.items] == pairs(reference.recommend(user, 10))
    assert not response.fallback and found.model.cache.hits == 1

    unknown = PredictRequest(user_id=10**7, n=10)  # not in the store: ranked in full, without asking again
    missing = asyncio.run(answer(unknown))
    assert missing is not None and missing.answer is None
    assert runtime.predict(unknown, missing).fallback
    with_exclusions = PredictRequest(user_id=user, n=10, exclude=[response.items[0].item_id])
    assert asyncio.run(answer(with_exclusions)) is None  # exclusions are never stored answers

    cache = found.model.cache
    cache.store = RedisAnswers.connect(DEAD, store.prefix)  # Redis gone: no answer from it, counted
    assert asyncio.run(cache.fetch(user, 10)) is None and cache.store_errors == 1
