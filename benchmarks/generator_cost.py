"""How each candidate generator's fit cost grows with the catalog: time and peak memory, side by side in one run.

    python -m benchmarks.generator_cost [--items 500,1000,2000,4000] [--per-item 60] [--json PATH] [--quick]

For each catalog size I a seeded data set is drawn with ``per_item * I`` interactions over ``I / 2`` users and a
Zipf-like item popularity (exponent 1, as MovieLens' head). Every stage-1 generator is fitted on it; the table gives
fit seconds and peak traced memory (``tracemalloc``: numpy's buffers included), and the growth factor per doubling of
the catalog. Linear cost doubles per doubling, quadratic memory quadruples, a cubic fit (a dense inverse) grows
eightfold: the generators that do not scale show themselves here before MovieLens-25M's 62k items would need
30 GB per dense item x item matrix. The bounded variants (EASE over the top items, ALS) are measured beside them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

from recsys.runtime import prepare_process

prepare_process()

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from recsys import schema as S
from recsys.candidates import ALS, EASE, CandidateGenerator
from recsys.config import CandidateConfig
from recsys.data.matrix import InteractionData
from recsys.ranking.queries import make_generators

NOW = 1_000_000_000
EASE_TOP = 2_000


def synthetic(n_items: int, per_item: int, seed: int = 0) -> InteractionData:
    """``per_item * n_items`` interactions, ``n_items // 2`` users, Zipf(1) item popularity, 30 days of timestamps."""
    rng = np.random.default_rng(seed)
    n_users, n = max(n_items // 2, 10), per_item * n_items
    pop = 1.0 / np.arange(1, n_items + 1)
    items = rng.choice(n_items, size=n, p=pop / pop.sum())
    users = rng.integers(0, n_users, size=n)
    frame = pd.DataFrame({S.USER: users.astype(np.int32), S.ITEM: items.astype(np.int32),
                          S.RATING: np.float32(4.0), S.TS: NOW - rng.integers(1, 30 * 86400, size=n)})
    catalog = pd.DataFrame({S.ITEM: np.arange(n_items, dtype=np.int32), S.TITLE: "x", S.RELEASE_YEAR: 1995,
                            S.GENRES: "Drama"})
    profiles = pd.DataFrame({S.USER: np.arange(n_users, dtype=np.int32), S.AGE: np.int16(30), S.GENDER: "M",
                             S.OCCUPATION: "other", S.ZIP: "12345"})
    return InteractionData(frame, catalog, profiles, NOW)


def scalable_variants() -> dict[str, CandidateGenerator]:
    """The bounded variants a large catalog is configured with (``candidates.ease_max_items``, ``als_factors``);
    item-kNN needs none: it is built in column blocks (memory items x block), its cost is its sparse result."""
    return {f"ease_top_{EASE_TOP}": EASE(300.0, max_items=EASE_TOP), "als": ALS(factors=64)}


def measure(sizes: list[int], per_item: int) -> list[dict[str, Any]]:
    rows = []
    for n_items in sizes:
        data = synthetic(n_items, per_item)
        gens = {**make_generators(CandidateConfig()), **scalable_variants()}
        for name, gen in gens.items():
            tracemalloc.start()
            t0 = time.perf_counter()
            gen.fit(data)
            seconds = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append({"generator": name, "items": n_items, "users": len(data.user_ids),
                         "interactions": len(data.interactions), "fit_seconds": round(seconds, 4),
                         "peak_mb": round(peak / 2**20, 1)})
    return rows


def growth(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per generator: the mean factor by which time and memory grow when the catalog doubles."""
    out = {}
    for name in dict.fromkeys(r["generator"] for r in rows):
        mine = sorted((r for r in rows if r["generator"] == name), key=lambda r: r["items"])
        steps = np.log2([b["items"] / a["items"] for a, b in itertools.pairwise(mine)])

        def factor(key: str, mine: list[dict[str, Any]] = mine, steps: np.ndarray = steps) -> float:
            ratios = [max(b[key], 1e-4) / max(a[key], 1e-4) for a, b in itertools.pairwise(mine)]
            return round(float(np.exp(np.mean(np.log(ratios) / steps))), 2)

        out[name] = {"time_per_doubling": factor("fit_seconds"), "memory_per_doubling": factor("peak_mb")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="500,1000,2000,4000")
    parser.add_argument("--per-item", type=int, default=60)
    parser.add_argument("--json", type=Path, default=Path("bench-results/generator_cost.json"))
    parser.add_argument("--quick", action="store_true", help="200 and 400 items: a smoke run")
    args = parser.parse_args()
    sizes = [200, 400] if args.quick else [int(s) for s in args.items.split(",")]
    rows = measure(sizes, args.per_item)
    grown = growth(rows)
    table = Table(title=f"generator fit cost by catalog size ({args.per_item} interactions per item)")
    table.add_column("generator")
    for n in sizes:
        table.add_column(f"{n:,} items: s / MB", justify="right")
    table.add_column("x time per 2x items", justify="right")
    table.add_column("x memory per 2x items", justify="right")
    for name, g in grown.items():
        cells = [f"{r['fit_seconds']:.3f} / {r['peak_mb']:.0f}" for r in rows if r["generator"] == name]
        table.add_row(name, *cells, f"{g['time_per_doubling']:.2f}", f"{g['memory_per_doubling']:.2f}")
    Console(width=160).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"sizes": sizes, "per_item": args.per_item, "rows": rows, "growth": grown},
                                    indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
