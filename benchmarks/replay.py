"""The replay simulator against the local service: requests per second it sustains, the CPU each request costs on
both sides, and whether every feedback event is acknowledged and stored exactly once.

    python -m benchmarks.replay [--json PATH] [--bundle DIR] [--rates 200,400,0] [--requests 6000] [--quick]

One ``bentoml serve`` (2 workers, the bundle alone, no registry; the traffic log at ``--traffic-rate``) per rate,
each with a fresh feedback store; the simulator (``recsys.experiments.simulator``, in this process) replays the
weeks after the bundle's cut for ``--requests`` requests at each ``--rates`` (0: as fast as it goes, 64 in
flight). Reported per rate: achieved requests/s, client and server CPU ms per request, feedback sent /
acknowledged / never acknowledged, and the events the store holds afterwards (must equal those sent).
Issue 7's goal: >= 200 requests/s without losing a feedback event.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()

from benchmarks.harness.processes import running
from benchmarks.harness.report import arg_parser, cli_main, fmt, machine, out
from benchmarks.systems import bundle_env, start_bento, wait_compiled
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock
from recsys.experiments.simulator import SimulationConfig, simulate
from recsys.serving.feedback import FeedbackStore

ROOT = Path(__file__).resolve().parents[1]
QUICK = "one rate (200/s), 600 requests"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "replay", QUICK)
    parser.add_argument("--bundle", type=Path, default=ROOT / "var" / "models" / "week=28")
    parser.add_argument("--raw", type=Path, default=ROOT / "data" / "raw" / "ml-100k")
    parser.add_argument("--rates", default="200,400,0", help="requests/s, comma-separated (0: unpaced)")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--traffic-rate", type=float, default=0.2, help="RECSYS_TRAFFIC_RATE of the service")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-exclude-seen", action="store_true",
                        help="requests without exclude (lookups instead of full rankings)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.requests = "200", 600
    return args


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_rate(args: argparse.Namespace, ml: Any, clock: ReplayClock, cut: int, rate: float, tmp: Path) -> dict[str, Any]:
    var = tmp / f"rate-{rate:g}"
    env = bundle_env(args.bundle, tmp / "compiled", {"RECSYS_TRAFFIC_RATE": str(args.traffic_rate)})
    with running(start_bento(var, args.workers, env)) as server:
        wait_compiled(server)  # from the steady state: compiling the trees costs ~4 s of CPU per worker
        cfg = SimulationConfig(url=server.url, from_week=cut, max_requests=args.requests, seed=0,
                               rate=rate if rate > 0 else 1e6, concurrency=64, duration=600,
                               exclude_seen=not args.no_exclude_seen)
        cpu0, server0 = _cpu(), server.cpu_seconds()
        result = simulate(ml.interactions, ml.users, clock, cfg, from_week=cut)
        client_cpu, server_cpu = _cpu() - cpu0, server.cpu_seconds() - server0
    time.sleep(0.5)
    store = FeedbackStore(f"sqlite:///{var}/feedback.db")
    stored = store.count()
    store.close()
    n = max(1, result.requests)
    return {"rate": rate, "requests": result.requests, "answered": result.answered,
            "failed_requests": result.failed_requests, "seconds": result.seconds,
            "requests_per_second": result.requests_per_second, "client_cpu_ms_per_request": 1000 * client_cpu / n,
            "server_cpu_ms_per_request": 1000 * server_cpu / n, "cold_starts": result.fallback,
            "feedback_sent": result.feedback_sent, "feedback_acked": result.feedback_acked,
            "feedback_failed": result.feedback_failed, "stored": stored, "lost": result.feedback_sent - stored}


def run(args: argparse.Namespace) -> dict[str, Any]:
    ml = load_movielens(args.raw)
    clock = ReplayClock.from_interactions(ml.interactions)
    import json

    cut = int(json.loads((args.bundle / "manifest.json").read_text())["as_of_week"])
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        levels = [one_rate(args, ml, clock, cut, rate, Path(tmp)) for rate in rates]
    return {"benchmark": "replay", "machine": machine(), "bundle": str(args.bundle), "cut": cut,
            "workers": args.workers, "traffic_rate": args.traffic_rate, "exclude_seen": not args.no_exclude_seen,
            "levels": levels,
            "goal": ">= 200 requests/s, lost == 0 and feedback_failed == 0"}


def print_report(report: dict[str, Any]) -> None:
    table = Table("target/s", "requests", "answered", "req/s", "client CPU ms/req", "server CPU ms/req",
                  "feedback sent", "acked", "never acked", "stored", "lost",
                  title=f"replay of the weeks after week {report['cut']} ({report['workers']} workers, "
                        f"traffic log {report['traffic_rate']:.0%}, "
                        f"{'with' if report['exclude_seen'] else 'without'} exclude)")
    for lv in report["levels"]:
        table.add_row("unpaced" if lv["rate"] == 0 else f"{lv['rate']:g}", f"{lv['requests']:,}",
                      f"{lv['answered']:,}", fmt(lv["requests_per_second"], ".0f"),
                      fmt(lv["client_cpu_ms_per_request"]), fmt(lv["server_cpu_ms_per_request"]),
                      f"{lv['feedback_sent']:,}", f"{lv['feedback_acked']:,}", str(lv["feedback_failed"]),
                      f"{lv['stored']:,}", str(lv["lost"]))
    out.print(table)


main = cli_main(parse_args, run, print_report)


if __name__ == "__main__":
    sys.exit(main())
