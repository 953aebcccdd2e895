"""The precomputed answers never change an answer: they equal the full two-stage path for known users, unknown
users with a profile, and any n; requests with exclusions take the full path."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from recsys.ranking.recommender import Recommender
from recsys.serving.cache import RankedCache

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rec(small_model: SimpleNamespace) -> Recommender:
    return small_model.result.recommender


@pytest.fixture(scope="module")
def cache(rec: Recommender) -> RankedCache:
    return RankedCache(rec)


def pairs(recs: list) -> list[tuple[int, float]]:  # type: ignore[type-arg]
    return [(r.item_id, round(r.score, 9)) for r in recs]


def test_every_known_user_is_cached(rec: Recommender, cache: RankedCache) -> None:
    known = [u for u in rec.profiles.index if rec.is_known(int(u))]
    assert cache.users == len(known) > 100


@pytest.mark.parametrize("n", [1, 10, 100])
def test_known_users_get_exactly_the_full_answer(rec: Recommender, cache: RankedCache, n: int) -> None:
    users = np.asarray(rec.profiles.index[::37][:25], dtype=int)
    before = cache.hits
    for user in users:
        cached, known = cache.recommend(int(user), n)
        assert known and pairs(cached) == pairs(rec.recommend(int(user), n))
    assert cache.hits - before == len(users)


def test_unknown_users_are_answered_by_profile(rec: Recommender, cache: RankedCache) -> None:
    profile = {"age": 23, "gender": "F", "occupation": "student", "zip": "55414"}
    first, known = cache.recommend(10**6, 10, profile=profile)
    hits = cache.hits
    again, _ = cache.recommend(10**6 + 7, 10, profile=profile)  # another unknown id, the same profile: a hit
    assert not known and cache.hits == hits + 1
    assert pairs(first) == pairs(again) == pairs(rec.recommend(10**6 + 7, 10, profile=profile))
    other, _ = cache.recommend(10**6, 10, profile={**profile, "age": 61, "occupation": "retired"})
    assert pairs(other) == pairs(rec.recommend(10**6, 10, profile={**profile, "age": 61, "occupation": "retired"}))


def test_exclusions_take_the_full_path(rec: Recommender, cache: RankedCache) -> None:
    user = int(rec.profiles.index[0])
    top = [r.item_id for r in cache.recommend(user, 10)[0]]
    misses = cache.misses
    answer, _ = cache.recommend(user, 10, exclude=top[:3])
    assert cache.misses == misses + 1
    assert pairs(answer) == pairs(rec.recommend(user, 10, exclude=top[:3]))
    assert not set(top[:3]) & {r.item_id for r in answer}


def test_the_profile_lru_is_bounded(rec: Recommender) -> None:
    small = RankedCache(rec, max_n=10, profile_slots=2)
    for age in (20, 30, 40):
        small.recommend(10**6, 5, profile={"age": age})
    hits = small.hits
    small.recommend(10**6, 5, profile={"age": 20})  # evicted: computed again
    assert small.hits == hits
