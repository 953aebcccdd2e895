"""The ranker's training on the local engine and on Dask with 1 and 2 workers, side by side in one run.

    python -m benchmarks.ranker_dask [--queries 20000] [--json PATH] [--quick]

A seeded query frame of ``--queries`` queries (20-40 candidates each, 37 features, relevance planted in two of
them, as many rows as a few label windows of a large catalog) is trained with the project's ranker settings
(``RankerConfig`` with 200 rounds) three ways: ``engine: local`` (``lgb.train``), ``engine: dask`` on a LocalCluster
of 1 and of 2 one-thread worker processes (``lightgbm.dask.DaskLGBMRanker``; cluster start-up included, as a run
pays it). Reported: wall seconds, the ratio to local, NDCG@10 on held-out queries, trees kept.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from recsys.runtime import prepare_process

prepare_process()

import lightgbm as lgb
import numpy as np
from rich.console import Console
from rich.table import Table

from recsys.config import RankerConfig
from recsys.metrics import query_ndcg
from recsys.ranking.queries import QueryFrame
from recsys.ranking.ranker import train_ranker

N_FEATURES = 37


def frame(n_queries: int, seed: int) -> QueryFrame:
    rng = np.random.default_rng(seed)
    group = rng.integers(20, 41, size=n_queries)
    n = int(group.sum())
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    signal = x[:, 0] + 0.5 * x[:, 1] + 0.6 * rng.normal(size=n)
    y = np.digitize(signal, [1.5, 2.3]).astype(np.float32)
    return QueryFrame(x, y, group, [f"f{i}" for i in range(N_FEATURES)], np.repeat(np.arange(n_queries), group),
                      np.arange(n))


def mean_ndcg(booster: lgb.Booster, q: QueryFrame) -> float:
    return query_ndcg(np.asarray(booster.predict(q.x, num_threads=1)), q.y, q.group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--json", type=Path, default=Path("bench-results/ranker_dask.json"))
    parser.add_argument("--quick", action="store_true", help="1,000 queries, 20 rounds: a smoke run")
    args = parser.parse_args()
    n_queries = 1000 if args.quick else args.queries
    train, valid, test = frame(n_queries, 0), frame(max(n_queries // 5, 50), 1), frame(max(n_queries // 5, 50), 2)
    base = RankerConfig(n_estimators=20 if args.quick else 200, num_threads=2)
    runs: list[dict[str, Any]] = []
    for label, cfg in [("local (lgb.train, 2 threads)", base),
                       ("dask, 1 worker", base.model_copy(update={"engine": "dask", "dask_workers": 1})),
                       ("dask, 2 workers", base.model_copy(update={"engine": "dask", "dask_workers": 2}))]:
        t0 = time.perf_counter()
        booster = train_ranker(train, valid, cfg)
        runs.append({"engine": label, "seconds": round(time.perf_counter() - t0, 2),
                     "ndcg@10": round(mean_ndcg(booster, test), 4), "trees": booster.num_trees()})
    local = runs[0]["seconds"]
    table = Table(title=f"ranker training: {len(train.y):,} rows, {len(train.group):,} queries, {N_FEATURES} features")
    for col in ("engine", "seconds", "x local", "NDCG@10 (held out)", "trees"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for r in runs:
        r["ratio_to_local"] = round(r["seconds"] / local, 2)
        table.add_row(r["engine"], f"{r['seconds']:.2f}", f"{r['ratio_to_local']:.2f}", f"{r['ndcg@10']:.4f}",
                      str(r["trees"]))
    Console(width=120).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": len(train.y), "queries": len(train.group), "features": N_FEATURES,
                                     "runs": runs}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
