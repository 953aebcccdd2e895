"""Off-request-path logs of served traffic, as daily JSON-lines files: sampled feature rows and every assignment.

Both are runtime observers built on :class:`BackgroundLog`. On the request path an observer only builds a small
tuple and puts it on a bounded queue (when the queue is full the entry is dropped and counted, so a slow disk
never slows answers). One background thread per log takes whatever is queued (up to ``batch`` entries at once),
turns the entries into JSON rows and appends them with one write per file:

- :class:`TrafficLog` (for drift monitoring) samples a share of the predict requests; the thread recomputes the
  feature rows of the served items with the model that served them (the same feature builder, so the rows match
  training's) and writes one row per served item to ``<folder>/traffic-YYYYMMDD.jsonl``.
- :class:`AssignmentLog` (for A/B analysis and attribution) records every predict's ``(ts, request_id, user_id,
  variant, alias, version, fallback, items)`` to ``<folder>/assignments-YYYYMMDD.jsonl``, ``items`` being the
  served item ids in rank order (the impression); feedback events carry the ``request_id``, so the two join on it
  (:mod:`recsys.experiments.attribution`). It is not sampled: only a full queue drops entries, and every drop is
  counted.

Timestamps are the request's ``ts`` (the server's time unless the client sent one: a replay sends its simulated
time), and days are UTC days of it.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsys.profiles import ProfileBlock
from recsys.serving.models import LoadedModel

logger = logging.getLogger(__name__)


class BackgroundLog:
    """A bounded queue drained by one daemon thread that appends JSON lines to ``<folder>/<prefix>-YYYYMMDD.jsonl``.

    Subclasses decide what to enqueue (:meth:`__call__`, the observer) and what rows an entry becomes
    (:meth:`rows`). ``on_drop`` is called once per dropped entry (the service counts drops in Prometheus).
    """

    prefix = "log"

    def __init__(self, folder: Path, max_queue: int = 1000, batch: int = 256,
                 on_drop: Callable[[], None] | None = None) -> None:
        if max_queue < 1 or batch < 1:
            raise ValueError(f"max_queue and batch must be >= 1, got {max_queue} and {batch}")
        self.folder = folder
        self.batch = batch
        self.on_drop = on_drop
        self.dropped = self.written = self.failed = 0
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{self.prefix}-log", daemon=True)
        self._thread.start()

    # -- request path ----------------------------------------------------------------------------------------
    def __call__(self, event: str, fields: dict[str, Any]) -> None:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def _offer(self, entry: tuple[Any, ...]) -> None:
        """Queue an entry without ever blocking; a full queue (or a closed log) drops it and counts the drop."""
        if not self._closed:
            try:
                self._queue.put_nowait(entry)
                return
            except queue.Full:
                pass
        self.dropped += 1
        if self.on_drop is not None:
            self.on_drop()

    # -- background ------------------------------------------------------------------------------------------
    def rows(self, entry: tuple[Any, ...]) -> Iterable[dict[str, Any]]:
        """The JSON rows of one queued entry; entries start with their timestamp (epoch seconds)."""
        raise NotImplementedError

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs = [self._queue.get()]
            while len(jobs) < self.batch:  # take what else is already queued: one write per file per batch
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                stop = None in jobs
                self._write([job for job in jobs if job is not None])
            finally:
                for _ in jobs:
                    self._queue.task_done()

    def _write(self, entries: list[tuple[Any, ...]]) -> None:
        by_day: dict[str, list[str]] = {}
        for entry in entries:
            try:
                lines = [json.dumps(row) + "\n" for row in self.rows(entry)]
            except Exception:
                self.failed += 1
                logger.warning("%s log: an entry could not be turned into rows", self.prefix, exc_info=True)
                continue
            by_day.setdefault(f"{datetime.fromtimestamp(entry[0], UTC):%Y%m%d}", []).extend(lines)
        for day, lines in by_day.items():
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                with (self.folder / f"{self.prefix}-{day}.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write("".join(lines))  # one write: concurrent writers never interleave partial lines
                self.written += len(lines)
            except Exception:
                self.failed += len(lines)
                logger.warning("%s log: %d rows could not be written", self.prefix, len(lines), exc_info=True)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued entry is written (tests, shutdown); False if that took over ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the thread; later entries are dropped (and counted)."""
        if self._closed:
            return
        self._closed = True
        self.flush(timeout_s)
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            logger.warning("%s log: the writer did not drain its queue in %.0f s", self.prefix, timeout_s)
            return
        self._thread.join(timeout=timeout_s)


class TrafficLog(BackgroundLog):
    """A sampled share (``rate``) of the predict requests, as the feature rows of the served items."""

    prefix = "traffic"

    def __init__(self, folder: Path, rate: float = 0.01, max_queue: int = 1000, seed: int | None = None,
                 batch: int = 64, on_drop: Callable[[], None] | None = None) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"traffic log sample rate must be in [0, 1], got {rate}")
        self.rate = rate
        self.sampled = 0
        self._random = random.Random(seed)  # nosec B311: seeded traffic split, not security
        super().__init__(folder, max_queue=max_queue, batch=batch, on_drop=on_drop)

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if event != "predict" or self.rate == 0 or self._random.random() >= self.rate:
            return
        self.sampled += 1
        self._offer((fields.get("ts", time.time()), fields))

    def rows(self, entry: tuple[Any, ...]) -> list[dict[str, Any]]:
        """The feature rows of the served items of one request (what the background thread writes)."""
        ts, fields = entry
        model: LoadedModel = fields["model"]
        rec = model.recommender
        items = np.asarray(fields["items"], dtype=np.int64)
        profile = fields.get("profile")
        prof = None if profile is None else ProfileBlock.from_records([profile])
        batch = rec.candidate_batch(np.array([fields["user_id"]], dtype=np.int64), prof)
        x, names = rec.features.transform(batch)
        served = batch.item_ids[batch.pair_col]
        index = {int(item): row for row, item in enumerate(served)}
        stamp = datetime.fromtimestamp(ts, UTC).isoformat()
        out = []
        for rank, (item, score) in enumerate(zip(items, fields["scores"], strict=True), start=1):
            row = index.get(int(item))
            feats = {} if row is None else {n: (None if not np.isfinite(v) else float(v))
                                            for n, v in zip(names, x[row], strict=True)}
            out.append({"ts": stamp, "request_id": fields["request_id"], "variant": fields["variant"],
                        "alias": model.alias, "version": model.version, "user_id": fields["user_id"],
                        "fallback": fields["fallback"], "item_id": int(item), "rank": rank, "score": float(score),
                        "features": feats, "context": fields.get("context")})
        return out


class AssignmentLog(BackgroundLog):
    """Every predict's variant assignment, keyed by the response's ``request_id`` (see the module docstring)."""

    prefix = "assignments"

    def __init__(self, folder: Path, max_queue: int = 10_000, batch: int = 512,
                 on_drop: Callable[[], None] | None = None) -> None:
        super().__init__(folder, max_queue=max_queue, batch=batch, on_drop=on_drop)

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if event == "predict":
            self._offer((fields.get("ts", time.time()), fields["request_id"], fields["user_id"], fields["variant"],
                         fields["alias"], fields["version"], fields["fallback"], fields["items"]))

    def rows(self, entry: tuple[Any, ...]) -> list[dict[str, Any]]:
        ts, request_id, user_id, variant, alias, version, fallback, items = entry
        return [{"ts": datetime.fromtimestamp(ts, UTC).isoformat(), "request_id": request_id, "user_id": user_id,
                 "variant": variant, "alias": alias, "version": version, "fallback": bool(fallback),
                 "items": [int(i) for i in items]}]
