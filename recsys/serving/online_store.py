"""Precomputed answers in Redis: the online store for when every known user's answers no longer fit a pod.

A bundle's :class:`~recsys.ranking.recommender.RankedUsers` (each known user's top items and scores, the same numbers
the pod would serve from memory) is published under one key per user and model version,
``<prefix>:<version>:<user id>``, whose value packs the list length and candidate count (two int32), the item ids
(int32) and the scores (float64, so a served score is still bit-equal to the offline one). Publishing writes a new
version beside the old one and then moves ``<prefix>:current`` to it, so readers switch in one step (the hot swap)
and a rollback is moving the pointer back; :meth:`RedisAnswers.drop` deletes a version no alias needs any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import redis

    from recsys.ranking.recommender import RankedUsers

_HEADER = np.dtype("<i4")


class StoredAnswer(NamedTuple):
    items: np.ndarray
    scores: np.ndarray
    candidates: int


def _raw(value: bytes | str) -> bytes:
    """A value as bytes (a client made with ``decode_responses=True`` would hand back str)."""
    return value if isinstance(value, bytes) else value.encode("latin-1")


def pack(items: np.ndarray, scores: np.ndarray, candidates: int) -> bytes:
    n = len(items)
    return (np.array([n, candidates], dtype=_HEADER).tobytes() + np.asarray(items, dtype="<i4").tobytes()
            + np.asarray(scores, dtype="<f8").tobytes())


def unpack(blob: bytes) -> StoredAnswer:
    n, candidates = np.frombuffer(blob, dtype=_HEADER, count=2)
    items = np.frombuffer(blob, dtype="<i4", count=int(n), offset=8)
    scores = np.frombuffer(blob, dtype="<f8", count=int(n), offset=8 + 4 * int(n))
    return StoredAnswer(items, scores, int(candidates))


class RedisAnswers:
    """One model version's precomputed answers in Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str = "recsys:answers") -> None:
        self.client = client
        self.prefix = prefix

    def key(self, version: str, user_id: int) -> str:
        return f"{self.prefix}:{version}:{user_id}"

    def publish(self, table: RankedUsers, version: str, batch: int = 5_000, make_current: bool = True) -> int:
        """Write every user's answer of ``table`` under ``version`` (pipelined), then point readers at it."""
        written = 0
        for start in range(0, len(table.users), batch):
            pipe = self.client.pipeline(transaction=False)
            for row in range(start, min(start + batch, len(table.users))):
                n = int(table.lengths[row])
                pipe.set(self.key(version, int(table.users[row])),
                         pack(table.items[row, :n], table.scores[row, :n], int(table.candidates[row])))
            written += len(pipe.execute())
        if make_current:
            self.client.set(f"{self.prefix}:current", version)
        return written

    def current(self) -> str | None:
        value = self.client.get(f"{self.prefix}:current")
        return None if value is None else _raw(value).decode()

    def get(self, version: str, user_id: int, n: int | None = None) -> StoredAnswer | None:
        """A user's answer (its top ``n``), or None when the version holds none for it."""
        blob = self.client.get(self.key(version, user_id))
        if blob is None:
            return None
        answer = unpack(_raw(blob))
        return answer if n is None else StoredAnswer(answer.items[:n], answer.scores[:n], answer.candidates)

    def get_many(self, version: str, user_ids: Iterable[int]) -> list[StoredAnswer | None]:
        blobs = self.client.mget([self.key(version, int(u)) for u in user_ids])
        return [None if b is None else unpack(_raw(b)) for b in blobs]

    def drop(self, version: str, batch: int = 10_000) -> int:
        """Delete a version's keys (SCAN, never KEYS); the number deleted."""
        deleted, keys = 0, []
        for key in self.client.scan_iter(match=f"{self.prefix}:{version}:*", count=batch):
            keys.append(key)
            if len(keys) >= batch:
                deleted += int(self.client.delete(*keys))
                keys = []
        if keys:
            deleted += int(self.client.delete(*keys))
        return deleted
