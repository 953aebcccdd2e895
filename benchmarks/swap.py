"""Hot swap under load: move ``champion`` (and roll it back) while the service answers a steady request rate.

    python -m benchmarks.swap [--json PATH] [--rate 350] [--watch-interval 2] [--quick]

A temporary MLflow registry gets two versions of the week-28 bundle: v1 as it is, v2 without its last tree (other
trees, so after the swap the service compiles them under load as it would for any new version); `bentoml serve`
runs on it with the alias watcher (2 workers, as in benchmarks/serving.py). Once both workers score v1 with
compiled trees, an open-loop load (``--rate`` requests/s, default half the rate the service sustains, from one
asyncio loop, benchmarks/harness/openloop.py; the mix of benchmarks.mix) runs throughout; the script
(1) promotes v2 and waits for the watcher, (2) rolls back to v1 and calls ``POST /admin/reload`` at once. For each
it reports failed requests (non-200, connection errors, or not sent because 256 were in flight), latency
percentiles, and the time from the alias move until every answer carries the new version. Goals (issue 5):
0 failures; <= 5 s with the watcher, immediate with /admin/reload.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()

from benchmarks.harness.openloop import OpenLoop, Sample, summarize
from benchmarks.harness.processes import post_json, running
from benchmarks.harness.report import arg_parser, cli_main, fmt, machine, out
from benchmarks.mix import body_factory, request_mix
from benchmarks.systems import start_bento, wait_compiled
from recsys.config import TrainConfig
from recsys.ranking.recommender import Recommender
from recsys.ranking.train import TrainResult
from recsys.registry import service
from recsys.registry.audit import AuditLog
from recsys.registry.tracking import log_training, register
from recsys.settings import Settings

MODEL = "content-ranker"
QUICK = "50 requests/s, watcher every 1 s, 2 s of load before the swap, 6 s after it, 2 s after the rollback"


def phase(samples: list[Sample], moved_at: float, new: int) -> dict[str, Any]:
    """Failures and latencies over the whole phase, and the time after ``moved_at`` from which every answer is
    ``new`` (a sample's payload is the version that answered it)."""
    after = sorted((s for s in samples if s.t >= moved_at), key=lambda s: s.t)
    last_old = max((s.t for s in after if s.payload != new and s.status == 200), default=moved_at)
    return {**summarize(samples), "seconds_to_new_version": round(last_old - moved_at, 3),
            "answers_after_move": len(after)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "swap", QUICK)
    parser.add_argument("--rate", type=float, default=350.0,
                        help="requests per second (default 350: half the ~700 rps the service sustains here)")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default 2)")
    parser.add_argument("--watch-interval", type=float, default=2.0, help="alias watcher interval, s (default 2)")
    parser.add_argument("--bundle", type=Path, default=Settings().models_dir / "week=28",
                        help="bundle to register twice (default var/models/week=28: run `make demo` first)")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").exists():
        parser.error(f"{args.bundle} is not a bundle: run `make demo` (or recsys train) first")
    args.before, args.after_promote, args.after_reload = 5.0, max(12.0, 3 * args.watch_interval), 5.0
    if args.quick:
        args.rate, args.watch_interval = min(args.rate, 50.0), min(args.watch_interval, 1.0)
        args.before, args.after_promote, args.after_reload = 2.0, max(6.0, 3 * args.watch_interval), 2.0
    return args


def two_versions(bundle: Path, root: Path) -> tuple[str, AuditLog]:
    """A registry under ``root`` with v1 = ``bundle`` and v2 = the same without its last tree (other trees, so the
    service compiles them after a swap, under load, as it would for any new version; the answers can be told apart
    only by the version they carry); v1 is the champion. Returns the tracking URI and the audit log."""
    rec = Recommender.load(bundle)
    cfg = TrainConfig.model_validate(rec.manifest["params"])
    base_result = TrainResult(rec, cfg, {"as_of_week": rec.manifest.get("as_of_week", 28)})
    uri = f"sqlite:///{root}/mlflow.db"
    audit = AuditLog(f"sqlite:///{root}/audit.db")
    booster = rec.booster
    shorter = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.current_iteration() - 1))
    bundles = {1: bundle, 2: root / "v2"}
    Recommender(rec.stage1, rec.features, shorter, rec.profiles, rec.manifest, rec.titles).save(bundles[2])
    for seed in (1, 2):
        ranker = cfg.ranker.model_copy(update={"seed": 1000 + seed})
        result = base_result.with_config(cfg.model_copy(update={"ranker": ranker}))
        register(log_training(result, bundles[seed], tracking_uri=uri), MODEL, tracking_uri=uri, audit=audit)
    service.promote(MODEL, 1, actor="bench", reason="start", audit=audit, tracking_uri=uri)
    return uri, audit


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        root = Path(tmp)
        uri, audit = two_versions(args.bundle, root)

        token = secrets.token_hex(8)
        env = {"MLFLOW_TRACKING_URI": uri, "RECSYS_WATCH_INTERVAL": str(args.watch_interval),
               "RECSYS_ADMIN_TOKEN": token, "RECSYS_BUNDLE_DIR": ""}
        with running(start_bento(root / "var", args.workers, env)) as server:
            compiled_at = wait_compiled(server)
            load = OpenLoop(server.url, server.route, body_factory(request_mix(2000, 5), "bento", 5), args.rate,
                            keep=lambda p: p["model"]["version"])
            runner = load.start()
            time.sleep(args.before)
            moved = time.perf_counter()
            service.promote(MODEL, 2, actor="bench", reason="swap under load", audit=audit, tracking_uri=uri)
            time.sleep(args.after_promote)  # the watcher, the load, and compiling v2's trees
            rolled = time.perf_counter()
            service.rollback(MODEL, actor="bench", reason="rollback under load", audit=audit, tracking_uri=uri)
            reload_status, _ = post_json(f"{server.url}/admin/reload", {},
                                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
            reloaded = time.perf_counter()
            time.sleep(args.after_reload)
            load.stop.set()
            runner.join(timeout=30)
        samples = sorted(load.samples, key=lambda x: x.t)
        swap = phase([s for s in samples if s.t < rolled], moved, 2)
        back = phase([s for s in samples if s.t >= rolled], rolled, 1)
        back["admin_reload_seconds"] = round(reloaded - rolled, 3)
        back["admin_reload_status"] = reload_status
    return {"benchmark": "swap", "quick": args.quick, "rate_rps": args.rate, "watch_interval_s": args.watch_interval,
            "workers": args.workers,
            "seconds_until_compiled_at_start": None if compiled_at is None else round(compiled_at, 2),
            "promote_with_watcher": swap, "rollback_with_admin_reload": back, "machine": machine()}


def print_report(report: dict[str, Any]) -> None:
    swap, back = report["promote_with_watcher"], report["rollback_with_admin_reload"]
    table = Table("phase", "requests", "achieved rps", "failed", "s until every answer is new", "p50 ms", "p95 ms",
                  "p99 ms", title=f"hot swap at {report['rate_rps']:.0f} rps, {report['workers']} workers")
    table.add_row(f"promote v2 (watcher every {report['watch_interval_s']:g} s)", str(swap["requests"]),
                  fmt(swap["achieved_rps"], ".1f"), str(swap["failed"]), f"{swap['seconds_to_new_version']:.2f}",
                  fmt(swap["p50_ms"], ".1f"), fmt(swap["p95_ms"], ".1f"), fmt(swap["p99_ms"], ".1f"))
    table.add_row("rollback to v1 + POST /admin/reload", str(back["requests"]), fmt(back["achieved_rps"], ".1f"),
                  str(back["failed"]),
                  f"{back['seconds_to_new_version']:.2f} (reload call {back['admin_reload_seconds']:.2f} s)",
                  fmt(back["p50_ms"], ".1f"), fmt(back["p95_ms"], ".1f"), fmt(back["p99_ms"], ".1f"))
    out.print(table)


main = cli_main(parse_args, run, print_report)


if __name__ == "__main__":
    sys.exit(main())
