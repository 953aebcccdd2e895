"""Soak: the service at twice the seed's rate for ten minutes, the champion swapped every two minutes, watched by
the real Prometheus with the production rules.

    python -m benchmarks.soak [--json PATH] [--rate 334] [--minutes 10] [--swap-every 120] [--quick]

A temporary MLflow registry holds two versions of the week-28 bundle (benchmarks.swap.two_versions); `bentoml
serve` runs on it with 2 workers and the alias watcher (every 2 s). Prometheus (Debian's package) scrapes it every
5 s and evaluates ``monitoring/prometheus/rules/`` as they are (production ``for:`` and windows). An open loop
(benchmarks/harness/openloop.py, the request mix of benchmarks.mix) sends ``--rate`` requests/s throughout, and
every ``--swap-every`` seconds ``champion`` moves to the other version. Reported: the client's counts and latency
percentiles per swap period and overall, the 5xx count and p99 as Prometheus saw them, the SLO burn-rate alerts'
state, and every alert that was pending or firing at any scrape of the run (goal: 0 5xx, and none that should
not fire).
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()

from benchmarks.harness.openloop import OpenLoop, summarize
from benchmarks.harness.processes import free_port, running
from benchmarks.harness.report import arg_parser, cli_main, fmt, machine, out
from benchmarks.mix import body_factory, request_mix
from benchmarks.swap import MODEL, two_versions
from benchmarks.systems import start_bento, wait_compiled
from recsys.monitoring import stack
from recsys.registry import service
from recsys.settings import Settings

QUICK = "50 requests/s for 1 minute, a swap every 20 s"
SEED_RATE = 167.0
"""The seed's request rate (requests/s); the soak runs at twice it."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "soak", QUICK)
    parser.add_argument("--rate", type=float, default=2 * SEED_RATE, help="requests per second (default 334)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--swap-every", type=float, default=120.0, help="seconds between champion swaps")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default 2)")
    parser.add_argument("--bundle", type=Path, default=Settings().models_dir / "week=28",
                        help="bundle to register twice (default var/models/week=28: run `make demo` first)")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").exists():
        parser.error(f"{args.bundle} is not a bundle: run `make demo` (or recsys train) first")
    if args.quick:
        args.rate, args.minutes, args.swap_every = min(args.rate, 50.0), 1.0, 20.0
    return args


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None


def prometheus_view(url: str, seconds: float) -> dict[str, Any]:
    """What Prometheus recorded over the run: 5xx and 429 counts, latency quantiles, every alert seen."""
    window = f"{int(seconds) + 30}s"
    q = lambda expr: _value(stack.query(url, expr))  # noqa: E731
    total = 'bentoml_service_request_total{endpoint="/predict"}'
    seen = stack.query(url, f'max_over_time(ALERTS[{window}])')
    alerts = sorted({(a["metric"]["alertname"], a["metric"].get("alertstate", ""), a["metric"].get("severity", ""))
                     for a in seen})
    quantiles = {f"p{int(p * 100)}_ms": q(f'histogram_quantile({p}, sum by (le) (rate('
                                          f'bentoml_service_request_duration_seconds_bucket{{endpoint="/predict"}}'
                                          f'[{window}]))) * 1000') for p in (0.5, 0.95, 0.99)}
    return {
        "requests": q(f"sum(increase({total}[{window}]))"),
        "status_5xx": q(f'sum(increase(bentoml_service_request_total{{http_response_code=~"5.."}}[{window}])) '
                        "or vector(0)"),
        "status_429": q(f'sum(increase(bentoml_service_request_total{{http_response_code="429"}}[{window}])) '
                        "or vector(0)"),
        **quantiles,
        "swaps_succeeded": q('sum(recsys_model_swaps_total{outcome="succeeded"})'),
        "swaps_failed": q('sum(recsys_model_swaps_total{outcome="failed"})'),
        "alerts_seen": [{"alert": a, "state": s, "severity": sev} for a, s, sev in alerts],
        "slo_alerts_now": [{"alert": a["labels"]["alertname"], "state": a["state"]}
                           for a in stack.alerts(url) if "Burn" in a["labels"]["alertname"]
                           or "SLO" in a["labels"]["alertname"]],
        "slo_rules": [r["name"] for g in _rule_groups(url) for r in g["rules"]
                      if r.get("type") == "alerting" and ("Burn" in r["name"] or "SLO" in r["name"])],
    }


def _rule_groups(url: str) -> list[dict[str, Any]]:
    import httpx

    resp = httpx.get(f"{url}/api/v1/rules", timeout=10)
    resp.raise_for_status()
    return list(resp.json()["data"]["groups"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        root = Path(tmp)
        uri, audit = two_versions(args.bundle, root)
        token = secrets.token_hex(8)
        env = {"MLFLOW_TRACKING_URI": uri, "RECSYS_WATCH_INTERVAL": "2", "RECSYS_ADMIN_TOKEN": token,
               "RECSYS_BUNDLE_DIR": ""}
        with running(start_bento(root / "var", args.workers, env)) as server:
            compiled_at = wait_compiled(server)
            target = server.url.removeprefix("http://")
            config = stack.prometheus_config([target], rule_files=[], scrape_interval="5s",
                                             evaluation_interval="5s")
            prom = stack.start_prometheus(config, root / "prometheus", free_port(), rules=stack.load_rules())
            with stack.running(prom):
                load = OpenLoop(server.url, server.route, body_factory(request_mix(2000, 7), "bento", 7),
                                args.rate, keep=lambda p: p["model"]["version"])
                start = time.perf_counter()
                runner = load.start()
                swaps: list[dict[str, Any]] = []
                duration = args.minutes * 60
                version = 1
                while (elapsed := time.perf_counter() - start) < duration:
                    nxt = min(duration, (len(swaps) + 1) * args.swap_every)
                    time.sleep(max(0.0, nxt - elapsed))
                    if nxt >= duration:
                        break
                    version = 2 if version == 1 else 1
                    service.promote(MODEL, version, actor="soak", reason="swap under soak", audit=audit,
                                    tracking_uri=uri)
                    swaps.append({"at_s": round(time.perf_counter() - start, 1), "to_version": version})
                load.stop.set()
                runner.join(timeout=30)
                ran = time.perf_counter() - start
                time.sleep(12)  # two more scrapes and evaluations
                seen = prometheus_view(prom.url, ran)
        samples = sorted(load.samples, key=lambda x: x.t)
        t0 = samples[0].t if samples else 0.0
        edges = [0.0, *(s["at_s"] for s in swaps), ran + 1]
        periods = []
        for lo, hi in itertools.pairwise(edges):
            part = [s for s in samples if lo <= s.t - t0 < hi]
            if part:
                periods.append({"from_s": round(lo, 1), **summarize(part)})
    return {"benchmark": "soak", "quick": args.quick, "rate_rps": args.rate, "minutes": args.minutes,
            "swap_every_s": args.swap_every, "workers": args.workers,
            "seconds_until_compiled_at_start": None if compiled_at is None else round(compiled_at, 2),
            "swaps": swaps, "client": summarize(samples), "periods": periods, "prometheus": seen,
            "machine": machine()}


def print_report(report: dict[str, Any]) -> None:
    table = Table("period from (s)", "requests", "achieved rps", "failed", "429", "p50 ms", "p95 ms", "p99 ms",
                  "max ms", title=f"soak at {report['rate_rps']:.0f} rps for {report['minutes']:g} min, a champion "
                                  f"swap every {report['swap_every_s']:g} s ({len(report['swaps'])} swaps)")
    for row in [*report["periods"], {"from_s": "all", **report["client"]}]:
        table.add_row(str(row["from_s"]), f"{row['requests']:,}", fmt(row["achieved_rps"], ".1f"),
                      str(row["failed"]), str(row["status_429"]), fmt(row["p50_ms"], ".1f"),
                      fmt(row["p95_ms"], ".1f"), fmt(row["p99_ms"], ".1f"), fmt(row["max_ms"], ".1f"))
    out.print(table)
    prom = report["prometheus"]
    out.print(f"Prometheus: {fmt(prom['requests'], ',.0f')} /predict answers, 5xx {fmt(prom['status_5xx'], '.0f')}, "
              f"429 {fmt(prom['status_429'], '.0f')}, p50/p95/p99 {fmt(prom['p50_ms'], '.1f')} / "
              f"{fmt(prom['p95_ms'], '.1f')} / {fmt(prom['p99_ms'], '.1f')} ms (bucketed), swaps "
              f"{fmt(prom['swaps_succeeded'], '.0f')} succeeded, {fmt(prom['swaps_failed'], '.0f')} failed")
    seen = ", ".join(f"{a['alert']} ({a['state']})" for a in prom["alerts_seen"]) or "none"
    out.print(f"alerts pending or firing at any time: {seen}")
    out.print(f"SLO alert rules evaluated: {len(prom['slo_rules'])}; active now: "
              f"{', '.join(a['alert'] for a in prom['slo_alerts_now']) or 'none'}")


main = cli_main(parse_args, run, print_report)


if __name__ == "__main__":
    sys.exit(main())
