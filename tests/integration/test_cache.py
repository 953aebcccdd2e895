"""The precomputed answers never change an answer: they equal the full two-stage path for known users, unknown
users with a profile, and any n; requests with exclusions take the full path."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recsys.ranking.recommender import BundleError, RankedUsers, Recommender
from recsys.serving.cache import RankedCache


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
        cached, known, _ = cache.recommend(int(user), n)
        assert known and pairs(cached) == pairs(rec.recommend(int(user), n))
    assert cache.hits - before == len(users)


def test_unknown_users_are_answered_by_profile(rec: Recommender, cache: RankedCache) -> None:
    profile = {"age": 23, "gender": "F", "occupation": "student", "zip": "55414"}
    first, known, _ = cache.recommend(10**6, 10, profile=profile)
    hits = cache.hits
    again, _, _ = cache.recommend(10**6 + 7, 10, profile=profile)  # another unknown id, the same profile: a hit
    assert not known and cache.hits == hits + 1
    assert pairs(first) == pairs(again) == pairs(rec.recommend(10**6 + 7, 10, profile=profile))
    other, _, _ = cache.recommend(10**6, 10, profile={**profile, "age": 61, "occupation": "retired"})
    assert pairs(other) == pairs(rec.recommend(10**6, 10, profile={**profile, "age": 61, "occupation": "retired"}))


def test_exclusions_take_the_full_path(rec: Recommender, cache: RankedCache) -> None:
    user = int(rec.profiles.index[0])
    top = [r.item_id for r in cache.recommend(user, 10)[0]]
    misses = cache.misses
    answer, _, _ = cache.recommend(user, 10, exclude=top[:3])
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


def test_is_cached_says_when_the_answer_is_a_lookup(rec: Recommender) -> None:
    cache = RankedCache(rec, max_n=20)
    user = int(rec.profiles.index[0])
    profile = {"age": 44, "gender": "M", "occupation": "writer", "zip": "02139"}
    assert cache.is_cached(user, 10) and cache.is_cached(user, 20) and not cache.is_cached(user, 21)
    assert not cache.is_cached(user, 10, exclude=[1])
    assert not cache.is_cached(10**6, 10, profile=profile)
    hits, misses = cache.hits, cache.misses
    answer = cache.recommend(10**6, 10, profile=profile)
    assert cache.misses == misses + 1 and cache.is_cached(10**6 + 1, 10, profile=profile)
    assert cache.recommend(10**6 + 1, 10, profile=profile) == answer and cache.hits == hits + 1
    assert answer.candidates > 10 and not answer.known


def test_frame_and_request_profiles_rank_alike(rec: Recommender) -> None:
    """Training hands profiles over as a frame, the service as request fields: the same user gets the same list."""
    known = int(rec.profiles.index[3])
    profiles = [{"age": 23, "gender": "F", "occupation": "student", "zip": "55414"},
                {"age": 61, "gender": "M", "occupation": "retired", "zip": "T8H1N"},
                {"age": 35, "occupation": "nonsense"},
                {"age": 19, "gender": "F", "occupation": "artist", "zip": "10001"}]  # the stored profile wins
    ids = [10**6, 10**6 + 1, 10**6 + 2, known]
    lists, counts = rec.rank_batch(ids, 10, pd.DataFrame(profiles))
    for user, profile, listed, count in zip(ids, profiles, lists, counts, strict=True):
        single, candidates = rec.rank(user, 10, profile=profile)
        assert pairs(listed) == pairs(single) and count == candidates > 10
    assert pairs(lists[3]) == pairs(rec.recommend(known, 10))


def test_the_bundle_ships_the_answers_and_they_are_checked(rec: Recommender, tmp_path: Path) -> None:
    rec.save(tmp_path / "bundle")
    loaded = Recommender.load(tmp_path / "bundle")
    assert loaded.ranked is not None and (tmp_path / "bundle" / "ranked.npz").exists()
    from_bundle = RankedCache(loaded)
    assert from_bundle.source == "bundle" and from_bundle.users == len(loaded.known_users())
    user = int(loaded.ranked.users[len(loaded.ranked.users) // 2])
    assert pairs(from_bundle.recommend(user, 100).items) == pairs(rec.recommend(user, 100))
    # a table that disagrees with the model (here: two users' rows exchanged) is refused
    t = loaded.ranked
    items = t.items.copy()
    items[[0, -1]] = items[[-1, 0]]
    loaded.ranked = RankedUsers(t.users, items, t.scores, t.lengths, t.candidates)
    with pytest.raises(BundleError, match="precomputed answer for user"):
        RankedCache(loaded)
    loaded.ranked = None  # a bundle saved before answers were shipped: computed at load, the same answers
    computed = RankedCache(loaded)
    assert computed.source == "computed" and pairs(computed.recommend(user, 100).items) == pairs(
        from_bundle.recommend(user, 100).items)
