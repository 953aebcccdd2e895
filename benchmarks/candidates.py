"""Stage 1 on a large catalog: the dense path (every generator scores users x catalog) against the bounded one
(each generator's top ``rank_depth`` and its scores at the union's pairs), side by side in one run.

``RECSYS_DATA_DIR=<a synthetic data dir> python -m benchmarks.candidates`` (a data dir of ``recsys data synth``;
without one, ML-100K): stage 1 and the features are fitted on the weeks before ``--week`` with the candidates
section of ``--config`` over params.yaml, then both paths build the candidates and features of the same users,
one batch at a time on one thread, alternating over ``--rounds``. It checks that both give the same feature
matrix, prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from recsys.runtime import prepare_process

prepare_process()

import numpy as np
from rich.console import Console
from rich.table import Table

from recsys.config import CandidateConfig
from recsys.data.split import temporal_window
from recsys.params import load_params
from recsys.ranking.queries import FittedWindow, fit_window
from recsys.settings import Settings
from recsys.stages.inputs import load_raw

ROOT = Path(__file__).resolve().parents[1]


def candidate_config(config: Path) -> CandidateConfig:
    """The candidates section of ``config`` over params.yaml's."""
    base = load_params(ROOT / "params.yaml").get("candidates", {})
    return CandidateConfig.model_validate({**base, **load_params(config).get("candidates", {})})


def one_pass(fitted: FittedWindow, batches: list[np.ndarray], dense: bool) -> tuple[dict[str, float], np.ndarray]:
    """(seconds of candidates and features over ``batches``, the features of the last batch)."""
    seconds = {"candidates": 0.0, "features": 0.0}
    x = np.empty((0, 0), dtype=np.float32)
    for ids in batches:
        t0 = time.perf_counter()
        batch = fitted.candidates(ids, dense=dense)
        t1 = time.perf_counter()
        x, _ = fitted.features.transform(batch)
        seconds["candidates"] += t1 - t0
        seconds["features"] += time.perf_counter() - t1
    return seconds, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "scale.yaml")
    parser.add_argument("--week", type=int, default=28, help="fit on the weeks before this one")
    parser.add_argument("--users", type=int, default=1000, help="users whose candidates are built")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("bench-results/candidates.json"))
    args = parser.parse_args()

    cfg = candidate_config(args.config)
    if cfg.rank_depth is None:
        raise SystemExit(f"{args.config}: candidates.rank_depth is not set, so there is no bounded path to compare")
    ml, clock = load_raw(Settings())
    t0 = time.perf_counter()
    window = temporal_window(ml.interactions, clock, args.week, 4)
    fitted = fit_window(window, ml.items, ml.users, cfg)
    fit_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(fitted.user_ids, size=min(args.users, len(fitted.user_ids)), replace=False))
    fitted = dataclasses.replace(fitted, user_ids=ids)
    batches = fitted.user_batches()
    runs: dict[str, list[dict[str, float]]] = {"dense": [], "bounded": []}
    last: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for path in runs:
            seconds, last[path] = one_pass(fitted, batches, dense=path == "dense")
            runs[path].append(seconds)
    best = {path: {step: min(r[step] for r in rs) for step in ("candidates", "features")} for path, rs in runs.items()}
    doc: dict[str, Any] = {
        "benchmark": "candidates", "config": str(args.config), "week": args.week,
        "users": len(ids), "batches": len(batches), "catalog": int(fitted.data.n_items),
        "history_users": len(fitted.data.user_ids), "fit_seconds": round(fit_seconds, 2),
        "per_generator": cfg.per_generator, "rank_depth": cfg.rank_depth,
        "seconds": {p: {k: round(v, 3) for k, v in b.items()} for p, b in best.items()},
        "same_features": bool(np.array_equal(last["dense"], last["bounded"], equal_nan=True)),
    }
    doc["ratio_dense_over_bounded"] = {
        step: round(best["dense"][step] / max(best["bounded"][step], 1e-9), 2) for step in ("candidates", "features")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2))

    table = Table(title=f"stage 1 for {len(ids):,} users, catalog {doc['catalog']:,} items "
                        f"({len(batches)} batches, best of {args.rounds})")
    for col in ("path", "candidates s", "features s", "ms per user"):
        table.add_column(col, justify="right")
    for path, b in best.items():
        table.add_row(path, f"{b['candidates']:.2f}", f"{b['features']:.2f}",
                      f"{1000 * (b['candidates'] + b['features']) / max(len(ids), 1):.2f}")
    table.add_row("dense / bounded", f"x{doc['ratio_dense_over_bounded']['candidates']}",
                  f"x{doc['ratio_dense_over_bounded']['features']}", "")
    Console().print(table)
    print(f"same features: {doc['same_features']}; wrote {args.json}")


if __name__ == "__main__":
    main()
