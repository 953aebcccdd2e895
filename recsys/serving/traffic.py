"""A sampled log of served traffic, for drift monitoring: one row per served item with its features and score.

:class:`TrafficLog` is a runtime observer. On the request path it only draws a random number and, for a sampled
request, puts a small tuple on a bounded queue (when the queue is full the sample is dropped and counted, so a
slow disk never slows answers). A background thread recomputes the feature rows of the served items with the
model that served them (the same feature builder, so the rows match training's) and appends them as JSON lines to
``<var_dir>/serving/traffic/traffic-YYYYMMDD.jsonl``.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.serving.models import LoadedModel

logger = logging.getLogger(__name__)


class TrafficLog:
    def __init__(self, folder: Path, rate: float = 0.05, max_queue: int = 1000, seed: int | None = None) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"traffic log sample rate must be in [0, 1], got {rate}")
        self.folder = folder
        self.rate = rate
        self.sampled = self.dropped = self.written = 0
        self._random = random.Random(seed)
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="traffic-log", daemon=True)
        self._thread.start()

    # -- request path ----------------------------------------------------------------------------------------
    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if event != "predict" or self.rate == 0 or self._random.random() >= self.rate:
            return
        self.sampled += 1
        try:
            self._queue.put_nowait((time.time(), fields))
        except queue.Full:
            self.dropped += 1

    # -- background ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._write(*job)
            except Exception:
                logger.warning("traffic log: a sample could not be written", exc_info=True)
            finally:
                self._queue.task_done()

    def rows(self, ts: float, fields: dict[str, Any]) -> list[dict[str, Any]]:
        """The feature rows of the served items of one request (what the background thread writes)."""
        model: LoadedModel = fields["model"]
        rec = model.recommender
        items = np.asarray(fields["items"], dtype=np.int64)
        profile = fields.get("profile")
        prof = None if profile is None else pd.DataFrame([{f: profile.get(f) for f in S.PROFILE_FIELDS}])
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
                        "features": feats})
        return out

    def _write(self, ts: float, fields: dict[str, Any]) -> None:
        rows = self.rows(ts, fields)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"traffic-{datetime.fromtimestamp(ts, UTC):%Y%m%d}.jsonl"
        with path.open("a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        self.written += len(rows)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued sample is written (tests, shutdown)."""
        deadline = time.time() + timeout_s
        while self._queue.unfinished_tasks and time.time() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)
