"""Precomputed answers: what a bundle recommends to each known user, ranked once when the bundle is loaded.

A bundle is static between swaps, and for a user it knows its answer depends only on the user (the stored sign-up
profile wins over a request's, and ``context`` is not a feature), so the full two-stage ranking of every known
user is computed in a few vectorised batches at load time and kept as the top :data:`MAX_N` items with their
scores. A request is then a dictionary lookup and a slice. For unknown users the answer depends only on the
profile they bring, so those answers are kept in a small LRU keyed by the profile.

The cache never changes an answer: a request with ``exclude`` goes through the full path (removing items shifts
the candidate generators' rank features of the others), and so does anything not cached.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from recsys import schema as S
from recsys.ranking.recommender import Recommendation, Recommender

MAX_N = 100
"""The largest ``n`` the service accepts: every known user's top ``MAX_N`` is kept."""
CHUNK = 128


class RankedCache:
    def __init__(self, rec: Recommender, max_n: int = MAX_N, profile_slots: int = 4096) -> None:
        t0 = time.perf_counter()
        self.rec = rec
        self.max_n = max_n
        users = np.asarray(rec.profiles.index, dtype=np.int64)
        users = users[[rec.is_known(int(u)) for u in users]] if len(users) else users
        self._rows: dict[int, int] = {int(u): i for i, u in enumerate(users)}
        # a request's profile only fills fields the stored one lacks: such users are answered in full when they
        # bring a profile
        stored = rec.profiles.reindex(users)
        self._complete = stored.notna().all(axis=1).to_numpy() if len(users) else np.zeros(0, bool)
        self._items = np.zeros((len(users), max_n), dtype=np.int64)
        self._scores = np.zeros((len(users), max_n), dtype=np.float64)
        self._lengths = np.zeros(len(users), dtype=np.int64)
        for start in range(0, len(users), CHUNK):
            chunk = users[start:start + CHUNK]
            for offset, recs in enumerate(rec.recommend_batch(chunk, max_n)):
                row = start + offset
                self._lengths[row] = len(recs)
                self._items[row, :len(recs)] = [r.item_id for r in recs]
                self._scores[row, :len(recs)] = [r.score for r in recs]
        self._profiles: OrderedDict[tuple[Any, ...], list[Recommendation]] = OrderedDict()
        self._profile_slots = profile_slots
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.build_seconds = time.perf_counter() - t0

    @property
    def users(self) -> int:
        return len(self._rows)

    def recommend(self, user_id: int, n: int, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None) -> tuple[list[Recommendation], bool]:
        """(top ``n``, whether the user is known), from the cache when the answer is cached, else computed."""
        row = self._rows.get(user_id)
        if row is not None:
            if not exclude and n <= self._lengths[row] and (profile is None or self._complete[row]):
                self.hits += 1
                items, scores = self._items[row, :n], self._scores[row, :n]
                return [Recommendation(int(i), float(s)) for i, s in zip(items, scores, strict=True)], True
            self.misses += 1
            return self.rec.recommend(user_id, n, exclude=exclude, profile=profile), True
        if self.rec.is_known(user_id):  # known to the bundle but without a stored profile: not cached
            self.misses += 1
            return self.rec.recommend(user_id, n, exclude=exclude, profile=profile), True
        if exclude:
            self.misses += 1
            return self.rec.recommend(user_id, n, exclude=exclude, profile=profile), False
        key = tuple((profile or {}).get(f) for f in S.PROFILE_FIELDS)
        with self._lock:
            cached = self._profiles.get(key)
            if cached is not None and len(cached) >= n:
                self._profiles.move_to_end(key)
                self.hits += 1
                return cached[:n], False
        self.misses += 1
        full = self.rec.recommend(user_id, self.max_n, profile=profile)
        with self._lock:
            self._profiles[key] = full
            while len(self._profiles) > self._profile_slots:
                self._profiles.popitem(last=False)
        return full[:n], False
