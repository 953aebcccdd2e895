"""Hot swap under load: move ``champion`` (and roll it back) while the service answers a steady request rate.

    python benchmarks/swap.py [--json PATH] [--rate 350] [--watch-interval 2]

A temporary MLflow registry gets two versions of the week-28 bundle: v1 as it is, v2 without its last tree (other
trees, so after the swap the service compiles them under load as it would for any new version); `bentoml serve`
runs on it with the alias watcher (2 workers, as in benchmarks/serving.py). Once both workers score v1 with
compiled trees, an open-loop load (``--rate`` requests/s, default half the rate the service sustains, from one
asyncio loop, benchmarks/openloop.py; 80 % known users, 20 % unknown with a profile) runs throughout; the script
(1) promotes v2 and waits for the watcher, (2) rolls back to v1 and calls ``POST /admin/reload`` at once. For each
it reports failed requests (non-200, connection errors, or not sent because 256 were in flight), latency
percentiles, and the time from the alias move until every answer carries the new version. Goals (issue 5):
0 failures; <= 5 s with the watcher, immediate with /admin/reload.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
from rich.console import Console
from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()

from openloop import OpenLoop, Sample, summarize, wait_compiled  # benchmarks/openloop.py (beside this script)

from recsys.config import TrainConfig
from recsys.ranking.recommender import Recommender
from recsys.ranking.train import TrainResult
from recsys.registry import service
from recsys.registry.audit import AuditLog
from recsys.registry.tracking import log_training, register
from recsys.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_JSON = Path("bench-results/swap.json")
MODEL = "content-ranker"
out = Console(highlight=False)


def body(rng: random.Random) -> dict[str, Any]:
    """80 % known users, 20 % unknown with a profile (the cold-start path), n=10."""
    if rng.random() < 0.8:
        return {"user_id": rng.randint(1, 943), "n": 10}
    return {"user_id": rng.randint(10**5, 10**6), "n": 10,
            "profile": {"age": rng.randint(16, 70), "gender": rng.choice("MF")}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def phase(samples: list[Sample], moved_at: float, new: int) -> dict[str, Any]:
    """Failures and latencies over the whole phase, and the time after ``moved_at`` from which every answer is
    ``new`` (a sample's payload is the version that answered it)."""
    after = sorted((s for s in samples if s.t >= moved_at), key=lambda s: s.t)
    last_old = max((s.t for s in after if s.payload != new and s.status == 200), default=moved_at)
    return {**summarize(samples), "seconds_to_new_version": round(last_old - moved_at, 3),
            "answers_after_move": len(after)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--rate", type=float, default=350.0,
                        help="requests per second (default 350: half the ~700 rps the service sustains here)")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default 2)")
    parser.add_argument("--watch-interval", type=float, default=2.0, help="alias watcher interval, s (default 2)")
    parser.add_argument("--bundle", type=Path, default=Settings().models_dir / "week=28",
                        help="bundle to register twice (default var/models/week=28: run `make demo` first)")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").exists():
        parser.error(f"{args.bundle} is not a bundle: run `make demo` (or recsys train) first")

    rec = Recommender.load(args.bundle)
    cfg = TrainConfig.model_validate(rec.manifest["params"])
    base_result = TrainResult(rec, cfg, {"as_of_week": rec.manifest.get("as_of_week", 28)})
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root}/mlflow.db"
        audit = AuditLog(f"sqlite:///{root}/audit.db")
        # v2 differs from v1 by its last tree: other trees, so the service compiles them after the swap (under load,
        # as with any new version) and the answers can be told apart only by the version they carry
        booster = rec.booster
        shorter = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.current_iteration() - 1))
        bundles = {1: args.bundle, 2: root / "v2"}
        Recommender(rec.stage1, rec.features, shorter, rec.profiles, rec.manifest, rec.titles).save(bundles[2])
        for seed in (1, 2):
            ranker = cfg.ranker.model_copy(update={"seed": 1000 + seed})
            result = replace(base_result, config=cfg.model_copy(update={"ranker": ranker}))
            register(log_training(result, bundles[seed], tracking_uri=uri), MODEL, tracking_uri=uri, audit=audit)
        service.promote(MODEL, 1, actor="bench", reason="start", audit=audit, tracking_uri=uri)

        port, token = free_port(), secrets.token_hex(8)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RECSYS_WATCH_INTERVAL": str(args.watch_interval),
               "RECSYS_ADMIN_TOKEN": token, "RECSYS_VAR_DIR": str(root / "var"), "RECSYS_BUNDLE_DIR": "",
               "RECSYS_FEEDBACK_URL": f"sqlite:///{root}/feedback.db", "BENTOML_DO_NOT_TRACK": "True",
               "BENTOML_HOME": str(root / "bentoml"),
               "BENTOML_CONFIG_OPTIONS": f"services.recommender.workers={args.workers}"}
        proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "service:RecommenderService",
                                 "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT / "bentos", env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while time.time() < deadline:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                raise RuntimeError("the service did not become ready in 180 s")
            compiled_at = wait_compiled(base)
            rng = random.Random(5)
            load = OpenLoop(base, "/predict", lambda: body(rng), args.rate, keep=lambda p: p["model"]["version"])
            runner = load.start()
            time.sleep(5)
            moved = time.perf_counter()
            service.promote(MODEL, 2, actor="bench", reason="swap under load", audit=audit, tracking_uri=uri)
            time.sleep(max(12.0, 3 * args.watch_interval))  # the watcher, the load, and compiling v2's trees
            rolled = time.perf_counter()
            service.rollback(MODEL, actor="bench", reason="rollback under load", audit=audit, tracking_uri=uri)
            reload = httpx.post(f"{base}/admin/reload", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            reloaded = time.perf_counter()
            time.sleep(5)
            load.stop.set()
            runner.join(timeout=30)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        samples = sorted(load.samples, key=lambda x: x.t)
        swap = phase([s for s in samples if s.t < rolled], moved, 2)
        back = phase([s for s in samples if s.t >= rolled], rolled, 1)
        back["admin_reload_seconds"] = round(reloaded - rolled, 3)
        back["admin_reload_status"] = reload.status_code
    report = {"benchmark": "swap", "rate_rps": args.rate, "watch_interval_s": args.watch_interval,
              "workers": args.workers, "seconds_until_compiled_at_start": round(compiled_at, 2),
              "promote_with_watcher": swap, "rollback_with_admin_reload": back,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    table = Table("phase", "requests", "achieved rps", "failed", "s until every answer is new", "p50 ms", "p95 ms",
                  "p99 ms", title=f"hot swap at {args.rate:.0f} rps, {args.workers} workers")

    def ms(x: float | None) -> str:
        return "–" if x is None else f"{x:.1f}"

    table.add_row(f"promote v2 (watcher every {args.watch_interval:g} s)", str(swap["requests"]),
                  ms(swap["achieved_rps"]), str(swap["failed"]), f"{swap['seconds_to_new_version']:.2f}",
                  ms(swap["p50_ms"]), ms(swap["p95_ms"]), ms(swap["p99_ms"]))
    table.add_row("rollback to v1 + POST /admin/reload", str(back["requests"]), ms(back["achieved_rps"]),
                  str(back["failed"]),
                  f"{back['seconds_to_new_version']:.2f} (reload call {back['admin_reload_seconds']:.2f} s)",
                  ms(back["p50_ms"]), ms(back["p95_ms"]), ms(back["p99_ms"]))
    out.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    out.print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
