"""The Redis online store of precomputed answers, on the machine's Redis (a key prefix of the test's own, deleted
after it; skips with a one-line reason where Redis does not answer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from recsys.ranking.recommender import RankedUsers
from recsys.serving.online_store import RedisAnswers, pack, unpack


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


def test_a_published_version_answers_as_the_table_and_the_pointer_swaps(store: RedisAnswers) -> None:
    first, second = table(0), table(1)
    assert store.current() is None
    assert store.publish(first, "v1") == 50 and store.current() == "v1"
    for row in (0, 13, 49):
        got = store.get("v1", int(first.users[row]))
        n = int(first.lengths[row])
        assert got is not None and got.items.tolist() == first.items[row, :n].tolist()
        assert got.scores.tobytes() == first.scores[row, :n].tobytes()
        assert got.candidates == int(first.candidates[row])
    assert store.get("v1", 999_999) is None  # not a known user
    top3 = store.get("v1", int(first.users[5]), n=3)
    assert top3 is not None and top3.items.tolist() == first.items[5, :min(3, int(first.lengths[5]))].tolist()

    store.publish(second, "v2", make_current=False)
    assert store.current() == "v1", "readers stay on v1 until the pointer moves"
    store.client.set(f"{store.prefix}:current", "v2")
    many = store.get_many(store.current() or "", [int(u) for u in second.users[:5]] + [1])
    assert [m.items.tolist() for m in many[:5] if m is not None] == [
        second.items[r, :int(second.lengths[r])].tolist() for r in range(5)]
    assert many[5] is None
    assert store.drop("v1", batch=7) == 50
    assert store.get("v1", int(first.users[0])) is None and store.get("v2", int(second.users[0])) is not None
