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

With an online store (:class:`~recsys.serving.online_store.RedisAnswers`, ``RECSYS_ANSWERS_URL``) the known users'
answers live in Redis instead of every worker's memory: the first pod to load a bundle publishes its table (the
others find it published under the bundle's content key), a few stored answers are checked against the model as
the in-memory table is, and the table is then released. A request reads its user's key; when Redis fails or times
out, the answer is ranked in full instead (the same answer, slower; counted in ``store_errors``), so Redis going
down never costs a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from recsys import schema as S
from recsys.ranking.recommender import RANKED_N, BundleError, RankedUsers, Recommendation, Recommender

if TYPE_CHECKING:
    from recsys.serving.online_store import RedisAnswers, StoredAnswer

logger = logging.getLogger(__name__)

MAX_N = RANKED_N
"""The largest ``n`` the service accepts: every known user's top ``MAX_N`` is kept."""


class Answer(NamedTuple):
    items: list[Recommendation]
    known: bool
    """Whether the bundle knows the user (False: the cold-start policy ranked the items)."""
    candidates: int
    """How many candidates the ranker scored for this answer."""


class RankedCache:
    def __init__(self, rec: Recommender, max_n: int = MAX_N, profile_slots: int = 4096, check_users: int = 4,
                 store: RedisAnswers | None = None) -> None:
        t0 = time.perf_counter()
        self.rec = rec
        self.max_n = max_n
        self.store = store
        self.store_errors = 0
        """Lookups the online store failed (each answered in full instead)."""
        table = rec.ranked
        self.source = "bundle"
        self.key = store_key(rec, max_n)
        users = rec.known_users() if table is None else table.users
        published = self._published()
        if published is not None and check_users:
            try:
                self._check(users, lambda row, user: self._fetch(user), check_users)
            except redis_error() as exc:
                self._store_failed("reading", exc)
                published = None
            except BundleError as exc:  # a damaged copy: written again below
                logger.warning("the online store's answers are not this bundle's (%s): publishing them again", exc)
                published = None
        if published is None:
            if table is None or table.max_n < max_n:
                table, self.source = rec.rank_known(max_n), "computed"
            elif check_users:
                self._check(users, lambda row, user: _row_answer(table, row), check_users)
            if self.store is not None:
                try:
                    self.store.publish(table, self.key)
                except redis_error() as exc:
                    self._store_failed("publishing", exc)
        # a request's profile only fills fields the stored one lacks: such users are answered in full when they
        # bring a profile
        stored = rec.profiles.reindex(users)
        self._incomplete = set(np.asarray(users)[~stored.notna().all(axis=1).to_numpy()].tolist())
        self._users = len(users)
        if self.store is not None:
            self.source = "redis" if published is not None else f"{self.source} -> redis"
            rec.ranked = None  # the answers are in Redis now: a worker keeps none of them
            self._rows: dict[int, int] = {}
        else:
            assert table is not None
            self._rows = {int(u): i for i, u in enumerate(users)}
            self._items, self._scores = table.items[:, :max_n], table.scores[:, :max_n]
            self._lengths, self._candidates = np.minimum(table.lengths, max_n), table.candidates
        self._profiles: OrderedDict[tuple[Any, ...], tuple[list[Recommendation], int]] = OrderedDict()
        self._profile_slots = profile_slots
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.build_seconds = time.perf_counter() - t0

    def _published(self) -> int | None:
        """How many users the store holds for this bundle (None: not published, or no store)."""
        if self.store is None:
            return None
        try:
            return self.store.published(self.key)
        except redis_error() as exc:
            self._store_failed("reaching", exc)
            return None

    def _store_failed(self, doing: str, exc: Exception) -> None:
        """The store failed while loading: this worker keeps the answers in memory instead."""
        logger.warning("%s the online store failed (%s): answers are kept in memory", doing, exc)
        self.store_errors += 1
        self.store = None

    def _fetch(self, user_id: int) -> StoredAnswer | None:
        assert self.store is not None
        return self.store.get(self.key, user_id)

    def _check(self, users: np.ndarray, answer: Any, count: int) -> None:
        """A few precomputed answers (first, last, spread; ``answer(row, user)`` -> StoredAnswer or None) must be
        what the model ranks."""
        if not len(users):
            return
        for row in np.unique(np.linspace(0, len(users) - 1, count).astype(int)):
            user = int(users[row])
            want: StoredAnswer | None = answer(row, user)
            recs, candidates = self.rec.rank(user, self.max_n)
            same = want is not None
            if want is not None:
                n = min(len(want.items), self.max_n)
                same = (len(recs) == n and candidates == want.candidates
                        and [r.item_id for r in recs] == want.items[:n].tolist()
                        and np.allclose([r.score for r in recs], want.scores[:n], rtol=0, atol=1e-9))
            if not same:
                raise BundleError(f"the bundle's precomputed answer for user {user} differs from what its model ranks")

    @property
    def users(self) -> int:
        return self._users

    def _key(self, profile: dict[str, Any] | None) -> tuple[Any, ...]:
        return tuple((profile or {}).get(f) for f in S.PROFILE_FIELDS)

    def is_cached(self, user_id: int, n: int, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None) -> bool:
        """Whether :meth:`recommend` would answer from the cache (a lookup, no ranking)."""
        if exclude:
            return False
        row = self._rows.get(user_id)
        if row is not None:
            return bool(n <= self._lengths[row] and (profile is None or user_id not in self._incomplete))
        cached = self._profiles.get(self._key(profile))
        return cached is not None and len(cached[0]) >= n and not self.rec.is_known(user_id)

    def in_store(self, user_id: int, exclude: list[int] | None = None,
                 profile: dict[str, Any] | None = None) -> bool:
        """Whether the online store may hold this request's answer (then :meth:`fetch` it before ranking)."""
        return (self.store is not None and self.store.url is not None and not exclude
                and (profile is None or user_id not in self._incomplete))

    async def fetch(self, user_id: int, n: int) -> Answer | None:
        """A known user's answer from the online store, read on the event loop; None when it holds none (an
        unknown user, a shorter list) or fails (counted: the request is then ranked in full)."""
        if self.store is None:
            return None
        try:
            got = await self.store.aget(self.key, user_id)
        except (redis_error(), OSError):
            self.store_errors += 1
            return None
        return self._hit(got, n)

    def _hit(self, got: StoredAnswer | None, n: int) -> Answer | None:
        """A stored answer's top ``n`` (a hit), or None when there is none or it is shorter."""
        if got is None or len(got.items) < n:
            return None
        self.hits += 1
        return Answer(list(map(Recommendation, got.items[:n].tolist(), got.scores[:n].tolist())), True,
                      got.candidates)

    def recommend(self, user_id: int, n: int, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None, use_store: bool = True) -> Answer:
        """The top ``n`` from the cache when the answer is cached, else computed (see the module docstring);
        ``use_store=False`` skips the online store (the caller has just looked there)."""
        row = self._rows.get(user_id)
        if row is not None:
            if not exclude and n <= self._lengths[row] and (profile is None or user_id not in self._incomplete):
                self.hits += 1
                items = list(map(Recommendation, self._items[row, :n].tolist(), self._scores[row, :n].tolist()))
                return Answer(items, True, int(self._candidates[row]))
            self.misses += 1
            return Answer(*self._rank(user_id, n, exclude, profile, known=True))
        if self.store is not None and use_store:
            stored = self._stored(user_id, n, exclude, profile)
            if stored is not None:
                return stored
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

    def _stored(self, user_id: int, n: int, exclude: list[int] | None,
                profile: dict[str, Any] | None) -> Answer | None:
        """A known user's answer from the online store; None for a user it does not hold (then ranked below)."""
        if exclude or (profile is not None and user_id in self._incomplete):
            return None
        try:
            got = self._fetch(user_id)
        except redis_error():
            self.store_errors += 1
            return None
        return self._hit(got, n)

    def _rank(self, user_id: int, n: int, exclude: list[int] | None, profile: dict[str, Any] | None,
              known: bool) -> tuple[list[Recommendation], bool, int]:
        items, candidates = self.rec.rank(user_id, n, exclude=exclude, profile=profile)
        return items, known, candidates


def _row_answer(table: RankedUsers, row: int) -> StoredAnswer:
    from recsys.serving.online_store import StoredAnswer

    n = int(table.lengths[row])
    return StoredAnswer(table.items[row, :n], table.scores[row, :n], int(table.candidates[row]))


def redis_error() -> type[Exception]:
    """redis-py's base error (imported only where a store is configured)."""
    import redis

    return redis.RedisError


def store_key(rec: Recommender, max_n: int) -> str:
    """The bundle's version in the online store (its content, and how many items per user are kept)."""
    from recsys.serving.online_store import bundle_key

    return f"{bundle_key(rec.manifest)}-{max_n}"
