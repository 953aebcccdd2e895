"""Registry operations side by side in one run: logging a training run, registering it, the alias flip + audit
write of a promotion and of a rollback, and the gate's evaluation, against a real MLflow.

    python -m benchmarks.registry [--json PATH] [--repeats N] [--server] [--quick]

A small model (the tests' config, trained as of week 20 on the real ML-100K) is logged ``--repeats`` times with
different seeds, so each run has its own run key and registers a new version; then the champion alias is moved
between versions and rolled back, each time with its audit record. The store is SQLite in a temporary folder, or
with ``--server`` an ``mlflow server`` started on a loopback port (the deployment shape: every call over HTTP).
Targets (issue 3): alias flip + audit write <= 1 s, registering a version <= 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()  # before numpy and LightGBM load (see recsys.runtime)

from benchmarks.harness.processes import running
from benchmarks.harness.report import arg_parser, err, machine, out, percentiles, write_json
from benchmarks.systems import start_mlflow_server
from recsys.config import TrainConfig
from recsys.data.fetch import fetch_movielens
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock
from recsys.data.split import temporal_window
from recsys.ranking.train import train_recommender
from recsys.registry import service
from recsys.registry.audit import AuditLog
from recsys.registry.release import recommend_latency, schema_problems
from recsys.registry.tracking import log_training, register
from recsys.settings import Settings

SMALL = {"candidates": {"per_generator": 50, "tune": False},
         "ranker": {"label_windows": 3, "n_estimators": 60, "refit": False}}
TARGETS_MS = {"register": 5000.0, "promote": 1000.0, "rollback": 1000.0}
MODEL = "content-ranker"


def stats(ms: list[float]) -> dict[str, float | int | None]:
    p = percentiles(ms, (50, 95))
    return {"n": p["n"], "p50_ms": p["p50"], "p95_ms": p["p95"], "max_ms": p["max"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    fetch_movielens(settings.raw_dir, settings.wheel_cache)
    ml = load_movielens(settings.raw_dir)
    clock = ReplayClock.from_interactions(ml.interactions)
    with err.status("training the small model as of week 20 …"):
        trained = train_recommender(ml, clock, 20, TrainConfig.model_validate(SMALL))
    timings: dict[str, list[float]] = {k: [] for k in ("log_training", "register", "promote", "rollback")}
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        if args.server:
            uri = stack.enter_context(running(start_mlflow_server(root), timeout=60)).url
        else:
            uri = f"sqlite:///{root}/mlflow.db"
        bundle = root / "bundle"
        trained.recommender.save(bundle)
        audit = AuditLog(f"sqlite:///{root}/audit.db")
        window = temporal_window(ml.interactions, clock, 20, 4)
        versions = []
        for seed in range(args.repeats):
            cfg = trained.config.model_copy(
                update={"ranker": trained.config.ranker.model_copy(update={"seed": 100 + seed})})
            t0 = time.perf_counter()
            logged = log_training(trained.with_config(cfg), bundle, tracking_uri=uri)
            t1 = time.perf_counter()
            versions.append(register(logged, MODEL, tracking_uri=uri, audit=audit).version)
            t2 = time.perf_counter()
            timings["log_training"].append(1000 * (t1 - t0))
            timings["register"].append(1000 * (t2 - t1))
        for version in versions:
            t0 = time.perf_counter()
            service.promote(MODEL, version, actor="bench", reason="bench", audit=audit, tracking_uri=uri)
            timings["promote"].append(1000 * (time.perf_counter() - t0))
        for _ in versions[1:]:
            t0 = time.perf_counter()
            service.rollback(MODEL, actor="bench", reason="bench", audit=audit, tracking_uri=uri)
            timings["rollback"].append(1000 * (time.perf_counter() - t0))
        known = window.users[~window.cold_mask(window.users)]
        t0 = time.perf_counter()
        problems = schema_problems(trained.recommender, known)
        schema_ms = 1000 * (time.perf_counter() - t0)
        latency = recommend_latency(trained.recommender, window.users[:200]).model_dump()
        audit.close()
    return {
        "benchmark": "registry", "store": "mlflow server (HTTP, loopback)" if args.server else "SQLite in-process",
        "operations": {name: stats(ms) for name, ms in timings.items()},
        "targets_ms": TARGETS_MS, "schema_check_ms": schema_ms, "schema_problems": problems,
        "recommend_latency": latency,
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__, "registry", "2 versions instead of --repeats")
    parser.add_argument("--repeats", type=int, default=5, help="versions to log, register and promote (default 5)")
    parser.add_argument("--server", action="store_true", help="use an `mlflow server` on loopback, not SQLite")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 2
    if args.repeats < 2:
        parser.error("--repeats must be >= 2 (a rollback needs two champions)")
    report = run(args)
    table = Table("operation", "n", "p50 ms", "p95 ms", "max ms", "target ms", "met",
                  title=f"registry operations, {report['store']}")
    for name, s in report["operations"].items():
        target = TARGETS_MS.get(name)
        met = "–" if target is None else ("yes" if s["max_ms"] <= target else "NO")
        table.add_row(name, str(s["n"]), f"{s['p50_ms']:.0f}", f"{s['p95_ms']:.0f}", f"{s['max_ms']:.0f}",
                      "–" if target is None else f"{target:.0f}", met)
    lat = report["recommend_latency"]
    table.add_row("gate: schema check", "1", f"{report['schema_check_ms']:.0f}", "–", "–", "–", "–")
    table.add_row("gate: recommend() per user", str(lat["n"]), f"{lat['p50_ms']:.1f}", f"{lat['p95_ms']:.1f}",
                  f"{max(lat['p99_ms'], lat['p95_ms']):.1f} (p99)", "50 (p95)", "yes" if lat["p95_ms"] <= 50 else "NO")
    out.print(table)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
