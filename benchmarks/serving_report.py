"""The tables of benchmarks.serving: each server's levels, the ratios of ours over mlflow and over the floor,
the parity of the answers, and how every figure is made (``method`` in the JSON)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from benchmarks.harness.report import fmt, out, ratio
from benchmarks.pyspy_profile import print_profile

SERVERS = ("bento", "bento-redis", "floor", "mlflow")
"""Run in this order, one at a time (``bento-redis`` only with ``--answers-url``)."""


def level_ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per connection level: rps, 2xx/s, p95 and CPU per 2xx of ``ours`` over ``theirs``."""
    return [{"connections": a["connections"], "rps": ratio(a["rps"], b["rps"]),
             "ok_rps": ratio(a["ok_rps"], b["ok_rps"]), "p95": ratio(a["p95_ms"], b["p95_ms"]),
             "cpu_per_2xx": ratio(a["server_cpu_ms_per_2xx"], b["server_cpu_ms_per_2xx"])}
            for a, b in zip(ours, theirs, strict=True)]


def method(args: argparse.Namespace) -> dict[str, str]:
    """How each figure of the report is made (the JSON's ``method``)."""
    return {
        "load": ("wrk 4.1, closed loop, --timeout 10s: throughput, status codes and CPU per level; the level's "
                 f"latencies from an open-loop probe of {args.probe_rate:g} requests/s of the same mix sent "
                 "during it (benchmarks/harness/openloop.py); wrk's own histogram under wrk_latency_ms (it contradicts "
                 "wrk's request count for sub-millisecond answers here: compare little_mean_ms)"),
        "paced": (f"open loop at {args.rate:g} requests/s (benchmarks/harness/openloop.py, aiohttp): requests on "
                  "a fixed schedule whatever the answers take (no coordinated omission; how late sends were is in "
                  "send_late_p99_ms), latency from the send to the whole answer; achieved rate reported"),
        "goodput": ("ratios use 2xx responses per second; latency percentiles include every answered request, "
                    "so under 429 shedding they include the fast 429s"),
        "bento": ("bentoml serve service:RecommenderService with RECSYS_BUNDLE_DIR (downloaded once from the "
                  "registry), no MLFLOW_TRACKING_URI, watcher off; workers via BENTOML_CONFIG_OPTIONS"),
        "mlflow": ("mlflow models serve -m models:/NAME/VERSION --env-manager local --workers N (uvicorn); "
                   "its pyfunc runs the same recsys Recommender.recommend_batch: not a handicapped baseline"),
        "floor": ("benchmarks/floor_service.py: BentoML with the same /predict input_spec (PredictRequest), "
                  "an " + ("sync" if args.floor_sync else "async") + " endpoint returning one pre-built "
                  "PredictResponse (a real 10-item answer of the Bento, saved before it stopped), same workers, "
                  "traffic settings, access log (RECSYS_ACCESS_LOG) and metrics as the Bento, same --bento-env; "
                  "no model: BentoML's own per-request cost, the ceiling on this machine"),
        "profile": ("py-spy record --nonblocking --rate R --format raw (and flamegraph) on the Bento worker with "
                    "the most CPU, while wrk drives the service at 8 connections; stacks with a frame of "
                    "recsys/ or bentos/service.py count for our code (by the innermost such frame), the rest "
                    "for the innermost frame's package; the event loop's bottom frame (uvloop C code and "
                    "epoll waits, which py-spy cannot tell apart) is left out of the Python shares; CPU ms/req "
                    "(upper bound) = Python share x the level's tree CPU ms/req"),
        "cpu": "server process tree user+system CPU seconds over a level / requests in that level",
        "order": "bento, then the floor, then mlflow; never two at once",
    }


def print_report(report: dict[str, Any]) -> None:
    table = Table("server", "conns", "rps", "2xx/s", "p50 ms", "p95 ms", "p99 ms", "errors", "429s",
                  "CPU ms/req", "CPU ms/2xx",
                  title=f"serving {report['model']} v{report['version']}, {report['workers']} workers each, "
                        f"{report['duration_s']:g} s per level")
    for name in SERVERS:
        if name not in report["servers"]:
            continue
        s = report["servers"][name]
        rows = list(s["levels"])
        if s["paced"] is not None:
            rows.append(s["paced"])
        for r in rows:
            label = f"{r['connections']} @{r['target_rps']:g}/s" if r.get("paced") else str(r["connections"])
            table.add_row(name, label, f"{r['rps']:.0f}", f"{r['ok_rps']:.0f}", fmt(r["p50_ms"], ".1f"),
                          fmt(r["p95_ms"], ".1f"), fmt(r["p99_ms"], ".1f"), str(r["errors"]), str(r["status_429"]),
                          fmt(r["server_cpu_ms_per_request"]), fmt(r["server_cpu_ms_per_2xx"]))
        table.add_section()
    out.print(table)
    floor = report.get("ratios_bento_over_floor")
    columns = ["conns", "2xx/s bento/mlflow", "p95 bento/mlflow", "bento 429 share"]
    if floor:
        columns += ["2xx/s bento/floor", "CPU/2xx bento/floor"]
    ratios = Table(*columns, title="ours / theirs" + (" and ours / floor (BentoML's own ceiling)" if floor else ""))
    for i, (r, b) in enumerate(zip(report["ratios_bento_over_mlflow"], report["servers"]["bento"]["levels"],
                                   strict=True)):
        share = b["status_429"] / b["requests"] if b["requests"] else 0.0
        row = [str(r["connections"]), fmt(r["ok_rps"]), fmt(r["p95"]) + (" *" if share else ""), f"{share:.0%}"]
        if floor:
            row += [fmt(floor[i]["ok_rps"]), fmt(floor[i]["cpu_per_2xx"])]
        ratios.add_row(*row)
    pb, pm = report["servers"]["bento"]["paced"], report["servers"]["mlflow"]["paced"]
    if pb and pm:
        row = [f"{pb['connections']} @{pb['target_rps']:g}/s", fmt(ratio(pb["ok_rps"], pm["ok_rps"])),
               fmt(ratio(pb["p95_ms"], pm["p95_ms"])), f"{pb['status_429'] / max(pb['requests'], 1):.0%}"]
        if floor:
            pf = report["servers"]["floor"]["paced"]
            row += ["–", fmt(ratio(pb["server_cpu_ms_per_2xx"], pf["server_cpu_ms_per_2xx"])) if pf else "–"]
        ratios.add_row(*row)
    out.print(ratios)
    if floor:
        out.print("floor: benchmarks/floor_service.py, BentoML with our /predict's input spec and a constant "
                  "pre-built 10-item answer (no model). Ours/floor near 1 means BentoML's own per-request cost, not "
                  "the scoring path, is the limit; CPU per 2xx is the steadier ratio (2xx/s also depends on what "
                  "else, wrk included, holds the cores)")
    if any(b["status_429"] for b in report["servers"]["bento"]["levels"]):
        out.print("* the Bento shed load with 429 (traffic max_concurrency is per service, split across the workers);"
                  " its p95 there includes the fast 429 answers, and closed-loop wrk resends at once")
    redis = report.get("ratios_redis_over_bento")
    if redis:
        answers = Table("conns", "2xx/s redis/memory", "p95 redis/memory", "CPU/2xx redis/memory",
                        title="the Bento with its known users' answers in Redis / in memory (RECSYS_ANSWERS_URL)")
        for r in redis:
            answers.add_row(str(r["connections"]), fmt(r["ok_rps"]), fmt(r["p95"]), fmt(r["cpu_per_2xx"]))
        out.print(answers)
        same = report["parity_redis"]
        out.print(f"same top-10 from the Bento answering from Redis and from memory: {same['identical']}/"
                  f"{same['requests']} requests")
    p = report["parity"]
    b, m = report["servers"]["bento"], report["servers"]["mlflow"]
    out.print(f"same top-10 from bento and mlflow: {p['identical']}/{p['compared']} requests; "
              f"ready after {b['ready_s']:.1f} s (bento) / {m['ready_s']:.1f} s (mlflow); "
              f"RSS {b['rss_mb']:.0f} / {m['rss_mb']:.0f} MB")
    out.print("baseline: mlflow models serve runs the same recsys runtime (Recommender.recommend_batch) through "
              "its pyfunc (not handicapped), ranking every request; the Bento serves the downloaded bundle "
              "(RECSYS_BUNDLE_DIR, no registry) and answers known users from its precomputed top-100; unknown "
              "users bring fresh profiles (no cache hits).")
    if pb:
        out.print(f"paced point: {report['method']['paced']}")
    if b.get("profile"):
        print_profile(b["profile"])
    for name in report["servers"]:
        log = report["servers"][name]["log"]
        if log["tracebacks"] or log["status_5xx_lines"]:
            out.print(f"{name} log: {log['tracebacks']} tracebacks ({log['client_disconnects']} ClientDisconnect "
                      f"from wrk closing connections at the end of a level), {log['status_5xx_lines']} 5xx lines"
                      + (f"; e.g. {log['examples'][0]}" if log["examples"] else ""))
    out.print(f"wall time {report['wall_s']:.0f} s")
