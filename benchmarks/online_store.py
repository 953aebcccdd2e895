"""Precomputed answers at scale: in the pod's memory (``ranked.npz`` + the service's cache) or in Redis, side by side.

    python -m benchmarks.online_store [--users 160000,1000000] [--redis redis://127.0.0.1:6379/0] [--json PATH]
                                      [--quick]

For each user count a seeded ``RankedUsers`` table (top 100 items and scores per user, what a bundle precomputes)
is saved as ``ranked.npz`` and loaded the way a serving pod does (``RankedUsers.load`` + ``RankedCache``): file
size, load seconds, the arrays' bytes and the resident memory added, and the latency of one answer (top 10) from
memory. Then it is published to the machine's Redis (``recsys.serving.online_store.RedisAnswers``, one key per user
and version, under a prefix of its own deleted afterwards): publish seconds, Redis memory added, and the latency of
one answer over one connection (p50 / p99 of 20,000 random known users, the loopback round trip included).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from recsys.runtime import prepare_process

prepare_process()

import numpy as np
import pandas as pd
import psutil
from rich.console import Console
from rich.table import Table

from recsys import schema as S
from recsys.ranking.recommender import RANKED_N, RankedUsers
from recsys.serving.cache import RankedCache
from recsys.serving.online_store import RedisAnswers

PROBES = 20_000


def ranked_table(users: int, seed: int = 0, n_items: int = 62_000) -> RankedUsers:
    rng = np.random.default_rng(seed)
    items = rng.integers(1, n_items, size=(users, RANKED_N), dtype=np.int64)
    scores = -np.sort(-rng.normal(size=(users, RANKED_N)), axis=1)
    return RankedUsers(np.arange(1, users + 1, dtype=np.int64), items, scores,
                       np.full(users, RANKED_N, np.int64), rng.integers(100, 500, users))


def percentiles_us(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1e6
    return {"p50_us": round(float(np.percentile(arr, 50)), 1), "p99_us": round(float(np.percentile(arr, 99)), 1)}


def in_memory(table: RankedUsers, work: Path, rng: np.random.Generator) -> dict[str, Any]:
    path = work / "ranked.npz"
    table.save(path)
    proc = psutil.Process()
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    loaded = RankedUsers.load(path)
    profiles = pd.DataFrame({S.AGE: 30, S.GENDER: "M", S.OCCUPATION: "other", S.ZIP: "12345"},
                            index=pd.Index(loaded.users, name=S.USER))
    cache = RankedCache(SimpleNamespace(ranked=loaded, profiles=profiles), check_users=0)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    added = proc.memory_info().rss - before
    samples = []
    for user in rng.choice(loaded.users, PROBES):
        t = time.perf_counter()
        cache.recommend(int(user), 10)
        samples.append(time.perf_counter() - t)
    arrays = sum(a.nbytes for a in (loaded.users, loaded.items, loaded.scores, loaded.lengths, loaded.candidates))
    return {"file_mb": round(path.stat().st_size / 2**20, 1), "load_seconds": round(seconds, 2),
            "arrays_mb": round(arrays / 2**20, 1), "rss_added_mb": round(added / 2**20, 1),
            **percentiles_us(samples)}


def in_redis(table: RankedUsers, url: str, rng: np.random.Generator) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    store = RedisAnswers(client, f"recsys-bench-{uuid.uuid4().hex[:8]}")
    try:
        before = int(client.info("memory")["used_memory"])
        t0 = time.perf_counter()
        store.publish(table, "v1")
        publish = time.perf_counter() - t0
        added = int(client.info("memory")["used_memory"]) - before
        samples = []
        for user in rng.choice(table.users, PROBES):
            t = time.perf_counter()
            store.get("v1", int(user), 10)
            samples.append(time.perf_counter() - t)
        return {"publish_seconds": round(publish, 1), "redis_mb": round(added / 2**20, 1),
                "bytes_per_user": round(added / len(table.users)), **percentiles_us(samples)}
    finally:
        store.drop("v1")
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="160000,1000000")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", type=Path, default=Path("bench-results/online_store.json"))
    parser.add_argument("--quick", action="store_true", help="10,000 users: a smoke run")
    args = parser.parse_args()
    sizes = [10_000] if args.quick else [int(u) for u in args.users.split(",")]
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="recsys-online-") as tmp:
        for users in sizes:
            table = ranked_table(users)
            rows.append({"users": users, "memory": in_memory(table, Path(tmp), rng),
                         "redis": in_redis(table, args.redis, rng)})
            del table
    out = Table("users", "ranked.npz MB", "pod load s", "pod arrays / RSS + MB", "pod p50 / p99 µs", "Redis publish s",
                "Redis MB", "Redis p50 / p99 µs", title=f"precomputed answers (top {RANKED_N} per user)")
    for r in rows:
        m, d = r["memory"], r["redis"]
        out.add_row(f"{r['users']:,}", f"{m['file_mb']:,.0f}", f"{m['load_seconds']:.2f}",
                    f"{m['arrays_mb']:,.0f} / {m['rss_added_mb']:,.0f}",
                    f"{m['p50_us']:.1f} / {m['p99_us']:.1f}", f"{d['publish_seconds']:.1f}",
                    f"{d['redis_mb']:,.0f}", f"{d['p50_us']:.0f} / {d['p99_us']:.0f}")
    Console(width=160).print(out)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"probes": PROBES, "sizes": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
