"""Each candidate generator alone on real MovieLens-100K, the scalable variants beside the current ones.

    python -m benchmarks.generator_quality [--cuts 20,24,28] [--json PATH] [--quick]

For each backtest cut W (the cuts ``dvc repro`` reports): every generator is fitted on the weeks before W and
recommends 10 unseen items to each user of the 4 test weeks; the table gives NDCG@10 over all users and over warm
users (those with history: for cold users every personalised generator falls back to popularity), averaged over
the cuts, and the fit seconds. The variants: EASE over the 500 and 1,000 most popular items
(``candidates.ease_max_items``), ALS from ``implicit`` with 64 factors (``candidates.als_factors``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from recsys.runtime import prepare_process

prepare_process()

import numpy as np
from rich.console import Console
from rich.table import Table

from recsys.candidates import ALS, EASE, CandidateGenerator
from recsys.config import CandidateConfig
from recsys.data.matrix import InteractionData
from recsys.data.split import LabelWindow, temporal_window
from recsys.metrics import ndcg_at_k
from recsys.ranking.queries import make_generators, profiles_for
from recsys.settings import Settings
from recsys.stages.inputs import load_raw


def variants() -> dict[str, CandidateGenerator]:
    return {**make_generators(CandidateConfig()), "ease_top_500": EASE(300.0, max_items=500),
            "ease_top_1000": EASE(300.0, max_items=1000), "als": ALS(factors=64)}


def ndcg_by_user(gen: CandidateGenerator, window: LabelWindow, users: Any) -> tuple[np.ndarray, np.ndarray]:
    truth = window.truth()
    ids = window.users
    exclude = [window.exclude.get(int(u), np.empty(0)).tolist() for u in ids] if window.exclude else None
    recs = gen.recommend_batch(ids, 10, profiles_for(users, ids), exclude)
    scores = np.array([ndcg_at_k(r.items, truth[int(u)], 10) for u, r in zip(ids, recs, strict=True)])
    return scores, ~window.cold_mask(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", default="20,24,28")
    parser.add_argument("--json", type=Path, default=Path("bench-results/generator_quality.json"))
    parser.add_argument("--quick", action="store_true", help="cut 28 only")
    args = parser.parse_args()
    if args.quick:
        args.cuts = "28"
    ml, clock = load_raw(Settings())
    cuts = [int(c) for c in args.cuts.split(",")]
    rows: dict[str, dict[str, list[float]]] = {}
    for cut in cuts:
        window = temporal_window(ml.interactions, clock, cut, 4)
        data = InteractionData(window.history, ml.items, ml.users, window.now)
        for name, gen in variants().items():
            t0 = time.perf_counter()
            gen.fit(data)
            seconds = time.perf_counter() - t0
            scores, warm = ndcg_by_user(gen, window, ml.users)
            row = rows.setdefault(name, {"all": [], "warm": [], "seconds": []})
            row["all"].append(float(scores.mean()))
            row["warm"].append(float(scores[warm].mean()) if warm.any() else float("nan"))
            row["seconds"].append(seconds)
    summary = {name: {k: round(float(np.mean(v)), 4) for k, v in row.items()} for name, row in rows.items()}
    doc: dict[str, Any] = {"cuts": cuts, "generators": summary}
    table = Table("generator", "NDCG@10 all", "NDCG@10 warm", "fit s",
                  title=f"each generator alone on ML-100K, cuts {args.cuts} (4-week test windows)")
    for name, r in summary.items():
        table.add_row(name, f"{r['all']:.4f}", f"{r['warm']:.4f}", f"{r['seconds']:.2f}")
    Console(width=120).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
