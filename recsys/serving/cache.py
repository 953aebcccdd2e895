"""Precomputed answers: what a bundle recommends to each known user, ranked once, looked up per request.

A bundle is static, and for a user it knows its answer depends only on the user (the stored sign-up profile wins
over a request's, and ``context`` is not a feature), so the full two-stage ranking of every known user is computed
in a few vectorised batches when the bundle is saved (``ranked.npz``, :meth:`Recommender.rank_known`) and kept as
the top :data:`MAX_N` items with their scores. Loading checks a few of those answers against the model (a bundle
whose table disagrees is refused); a bundle without the table gets it computed at load. A request is then a
dictionary lookup and a slice. For unknown users the answer depends only on the profile they bring, so those
answers are kept in a small LRU keyed by the profile.

The cache never changes an answer: a request with ``exclude`` goes through the full path (removing items shifts
the candidate generators' rank features of the others), and so does anything not cached.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

from recsys import schema as S
from recsys.ranking.recommender import RANKED_N, BundleError, RankedUsers, Recommendation, Recommender

MAX_N = RANKED_N
"""The largest ``n`` the service accepts: every known user's top ``MAX_N`` is kept."""


class Answer(NamedTuple):
    items: list[Recommendation]
    known: bool
    """Whether the bundle knows the user (False: the cold-start policy ranked the items)."""
    candidates: int
    """How many candidates the ranker scored for this answer."""


class RankedCache:
    def __init__(self, rec: Recommender, max_n: int = MAX_N, profile_slots: int = 4096, check_users: int = 4) -> None:
        t0 = time.perf_counter()
        self.rec = rec
        self.max_n = max_n
        table = rec.ranked
        self.source = "bundle"
        if table is None or table.max_n < max_n:
            table, self.source = rec.rank_known(max_n), "computed"
        elif check_users:
            self._check(table, check_users)
        users = table.users
        self._rows: dict[int, int] = {int(u): i for i, u in enumerate(users)}
        # a request's profile only fills fields the stored one lacks: such users are answered in full when they
        # bring a profile
        stored = rec.profiles.reindex(users)
        self._complete = stored.notna().all(axis=1).to_numpy() if len(users) else np.zeros(0, bool)
        self._items, self._scores = table.items[:, :max_n], table.scores[:, :max_n]
        self._lengths, self._candidates = np.minimum(table.lengths, max_n), table.candidates
        self._profiles: OrderedDict[tuple[Any, ...], tuple[list[Recommendation], int]] = OrderedDict()
        self._profile_slots = profile_slots
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.build_seconds = time.perf_counter() - t0

    def _check(self, table: RankedUsers, count: int) -> None:
        """The bundle's precomputed answers of a few users (first, last, spread) must be what the model ranks."""
        if not len(table.users):
            return
        for row in np.unique(np.linspace(0, len(table.users) - 1, count).astype(int)):
            recs, candidates = self.rec.rank(int(table.users[row]), self.max_n)
            n = int(min(table.lengths[row], self.max_n))
            same = (len(recs) == n and candidates == table.candidates[row]
                    and [r.item_id for r in recs] == table.items[row, :n].tolist()
                    and np.allclose([r.score for r in recs], table.scores[row, :n], rtol=0, atol=1e-9))
            if not same:
                raise BundleError(f"the bundle's precomputed answer for user {int(table.users[row])} differs from "
                                  "what its model ranks")

    @property
    def users(self) -> int:
        return len(self._rows)

    def _key(self, profile: dict[str, Any] | None) -> tuple[Any, ...]:
        return tuple((profile or {}).get(f) for f in S.PROFILE_FIELDS)

    def is_cached(self, user_id: int, n: int, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None) -> bool:
        """Whether :meth:`recommend` would answer from the cache (a lookup, no ranking)."""
        if exclude:
            return False
        row = self._rows.get(user_id)
        if row is not None:
            return bool(n <= self._lengths[row] and (profile is None or self._complete[row]))
        cached = self._profiles.get(self._key(profile))
        return cached is not None and len(cached[0]) >= n and not self.rec.is_known(user_id)

    def recommend(self, user_id: int, n: int, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None) -> Answer:
        """The top ``n`` from the cache when the answer is cached, else computed (see the module docstring)."""
        row = self._rows.get(user_id)
        if row is not None:
            if not exclude and n <= self._lengths[row] and (profile is None or self._complete[row]):
                self.hits += 1
                items = list(map(Recommendation, self._items[row, :n].tolist(), self._scores[row, :n].tolist()))
                return Answer(items, True, int(self._candidates[row]))
            self.misses += 1
            return Answer(*self._rank(user_id, n, exclude, profile, known=True))
        known = self.rec.is_known(user_id)
        if known or exclude:  # known to the bundle without a stored profile, or exclusions: not cached
            self.misses += 1
            return Answer(*self._rank(user_id, n, exclude, profile, known=known))
        key = self._key(profile)
        with self._lock:
            cached = self._profiles.get(key)
            if cached is not None and len(cached[0]) >= n:
                self._profiles.move_to_end(key)
                self.hits += 1
                return Answer(cached[0][:n], False, cached[1])
        self.misses += 1
        full, candidates = self.rec.rank(user_id, self.max_n, profile=profile)
        with self._lock:
            self._profiles[key] = (full, candidates)
            while len(self._profiles) > self._profile_slots:
                self._profiles.popitem(last=False)
        return Answer(full[:n], False, candidates)

    def _rank(self, user_id: int, n: int, exclude: list[int] | None, profile: dict[str, Any] | None,
              known: bool) -> tuple[list[Recommendation], bool, int]:
        items, candidates = self.rec.rank(user_id, n, exclude=exclude, profile=profile)
        return items, known, candidates
