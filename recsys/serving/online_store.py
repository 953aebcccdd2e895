"""Precomputed answers in Redis: the online store for when every known user's answers no longer fit a pod.

A bundle's :class:`~recsys.ranking.recommender.RankedUsers` (each known user's top items and scores, the same numbers
the pod would serve from memory) is published under one key per user and model version,
``<prefix>:<version>:<user id>``, whose value packs the list length and candidate count (two int32), the item ids
(int32) and the scores (float64, so a served score is still bit-equal to the offline one). The version is the
bundle's content (:func:`bundle_key`: its files' sha256s), so every pod serving a bundle reads the same keys
whichever alias or registry version brought it, and a rollback to a bundle published before finds its answers
waiting. Publishing
writes ``<prefix>:<version>:ready`` (the number of users) after the last answer, so a reader never takes a
half-written version for a complete one; :meth:`RedisAnswers.drop` deletes a version no alias needs any more.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

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


def bundle_key(manifest: Mapping[str, Any]) -> str:
    """A bundle's version in the store: a digest of its manifest's file sha256s (the same bundle, the same key)."""
    files = json.dumps(manifest.get("files", {}), sort_keys=True).encode()
    return hashlib.sha256(files).hexdigest()[:16]


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

    def __init__(self, client: redis.Redis, prefix: str = "recsys:answers", writer: redis.Redis | None = None,
                 url: str | None = None, timeout: float = 0.05) -> None:
        self.client = client
        self.prefix = prefix
        self.writer = writer or client
        """The client :meth:`publish` writes with (a lookup's timeout would be too short for a pipelined batch)."""
        self.url = url
        self.timeout = timeout
        self._async: tuple[Any, Any] | None = None
        """(event loop, redis.asyncio client) of :meth:`aget`: a client per loop (its connections belong to it)."""

    @classmethod
    def connect(cls, url: str, prefix: str = "recsys:answers", timeout: float = 0.05) -> RedisAnswers:
        """A store at a Redis URL whose every command gives up after ``timeout`` seconds (connections open at the
        first command)."""
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix, writer=redis.Redis.from_url(url, socket_timeout=60, socket_connect_timeout=5),
                   url=url, timeout=timeout)

    def key(self, version: str, user_id: int) -> str:
        return f"{self.prefix}:{version}:{user_id}"

    def publish(self, table: RankedUsers, version: str, batch: int = 5_000) -> int:
        """Write every user's answer of ``table`` under ``version`` (pipelined), then its ``ready`` marker."""
        written = 0
        for start in range(0, len(table.users), batch):
            pipe = self.writer.pipeline(transaction=False)
            for row in range(start, min(start + batch, len(table.users))):
                n = int(table.lengths[row])
                pipe.set(self.key(version, int(table.users[row])),
                         pack(table.items[row, :n], table.scores[row, :n], int(table.candidates[row])))
            written += len(pipe.execute())
        self.writer.set(f"{self.prefix}:{version}:ready", written)
        return written

    def published(self, version: str) -> int | None:
        """How many users ``version`` holds, or None when it is not (completely) published."""
        value = self.client.get(f"{self.prefix}:{version}:ready")
        return None if value is None else int(_raw(value))

    def get(self, version: str, user_id: int, n: int | None = None) -> StoredAnswer | None:
        """A user's answer (its top ``n``), or None when the version holds none for it."""
        blob = self.client.get(self.key(version, user_id))
        if blob is None:
            return None
        answer = unpack(_raw(blob))
        return answer if n is None else StoredAnswer(answer.items[:n], answer.scores[:n], answer.candidates)

    async def aget(self, version: str, user_id: int) -> StoredAnswer | None:
        """:meth:`get` on the event loop (redis.asyncio; for a store made by :meth:`connect`)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            import redis.asyncio

            if self.url is None:
                raise ValueError("an async lookup needs a store made by RedisAnswers.connect(url)")
            self._async = (loop, redis.asyncio.Redis.from_url(self.url, socket_timeout=self.timeout,
                                                              socket_connect_timeout=self.timeout))
        blob = await self._async[1].get(self.key(version, user_id))
        return None if blob is None else unpack(_raw(blob))

    def get_many(self, version: str, user_ids: Iterable[int]) -> list[StoredAnswer | None]:
        blobs = self.client.mget([self.key(version, int(u)) for u in user_ids])
        return [None if b is None else unpack(_raw(b)) for b in blobs]

    def drop(self, version: str, batch: int = 10_000) -> int:
        """Delete a version's keys (SCAN, never KEYS; ``"*"``: every version of the prefix); the number deleted."""
        deleted, keys = 0, []
        for key in self.writer.scan_iter(match=f"{self.prefix}:{version}:*", count=batch):
            keys.append(key)
            if len(keys) >= batch:
                deleted += int(self.writer.delete(*keys))
                keys = []
        if keys:
            deleted += int(self.writer.delete(*keys))
        return deleted
