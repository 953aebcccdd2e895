"""Serving throughput, CPU per answer and latency: our Bento beside ``mlflow models serve`` of the same registered
version and beside a floor (BentoML with nothing behind it); or, with ``--baseline REF``, our Bento beside the Bento
of another commit (benchmarks.baseline).

    python -m benchmarks.serving [--json PATH] [--workers N] [--connections 1,8,32,64] [--duration S] [--quick]
                                 [--no-floor] [--floor-sync] [--profile [--profile-rate HZ] [--profile-dir DIR]]
    python -m benchmarks.serving --baseline REF [--rounds 3] [--bundle DIR] [...the same load options]

Why these three: both servers run the same ``recsys`` runtime (the MLflow pyfunc, ``RecommenderPyfunc``, calls the
same ``Recommender.recommend_batch`` as the Bento's runtime), so the baseline is not handicapped and the difference
is the HTTP layer, validation, routing and bookkeeping around the model; the floor (benchmarks/floor_service.py,
the same input spec and BentoML options, a constant pre-built answer) is BentoML's own per-request cost on this
machine, the ceiling ours can approach: "ours / floor" near 1 means BentoML, not the scoring path, is the limit.

How: the version (default: the registry's champion) is downloaded once; the Bento serves that bundle through
``RECSYS_BUNDLE_DIR`` without a registry (benchmarks.systems), then the floor, then ``mlflow models serve``
against the registry: one server at a time (the load generator shares the machine), each with ``--workers``
processes, each given the same load (benchmarks.load: wrk levels with open-loop probes, then a paced point;
requests from benchmarks.mix). ``--profile`` adds a py-spy profile of a Bento worker (benchmarks.pyspy_profile).
A parity check compares the Bento's and mlflow's top-10 for the same requests.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from recsys.runtime import quiet_threads

quiet_threads()  # before numpy and LightGBM load (see recsys.runtime); the servers inherit the settings

from benchmarks import baseline, systems
from benchmarks.harness import wrk
from benchmarks.harness.processes import Server, running, scan_log
from benchmarks.harness.report import arg_parser, err, machine, write_json
from benchmarks.load import LoadPlan, closed_levels, paced_point, parse_connections, warm_up
from benchmarks.mix import DESCRIPTION, request_mix, write_bodies
from benchmarks.pyspy_profile import profile_worker, py_spy
from benchmarks.serving_report import SERVERS, level_ratios, method, print_report

MODEL = "content-ranker"
QUICK = "2 s per level at 1 and 8 connections, 1 s warm-up, paced point at 50/s, 2 rounds with --baseline"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "serving", QUICK)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each server (default 2)")
    parser.add_argument("--connections", type=parse_connections, default=[1, 8, 32, 64],
                        help="wrk connection counts (default 1,8,32,64)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per level (default 15)")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds at 8 connections (default 5)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="requests/s of the open-loop point, 0 to skip (default 100)")
    parser.add_argument("--probe-rate", type=float, default=25.0,
                        help="requests/s of the open-loop latency probe during each wrk level, 0 for none (default 25)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1; at most 2 advised)")
    parser.add_argument("--model", default=MODEL, help=f"registered model (default {MODEL})")
    parser.add_argument("--version", type=int, default=None, help="model version (default: the champion)")
    parser.add_argument("--tracking-uri", default=None,
                        help="registry (default $MLFLOW_TRACKING_URI or the project's var/mlflow/mlflow.db); only read")
    parser.add_argument("--bodies", type=int, default=2000, help="pre-generated request bodies (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the request mix (default 7)")
    parser.add_argument("--bento-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the Bento(s) (e.g. RECSYS_MAX_CONCURRENCY=64); repeatable")
    parser.add_argument("--answers-url", default=None, metavar="REDIS_URL",
                        help="also run the Bento with its known users' answers in this Redis (RECSYS_ANSWERS_URL, "
                             "a key prefix of its own, deleted after), beside the one answering from memory")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the servers' logs into this folder")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the floor, benchmarks/floor_service.py (default on; --no-floor skips it)")
    parser.add_argument("--floor-sync", action="store_true",
                        help="the floor's endpoint synchronous (a def run in the thread pool) instead of async def")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy profile of one Bento worker at 8 connections for --duration (needs py-spy)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    parser.add_argument("--profile-dir", type=Path, default=None,
                        help="where the profile's stacks and flamegraph go (default: the --json file's folder)")
    baseline.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.connections, args.warmup = 2.0, [1, 8], min(args.warmup, 1.0)
        args.rate, args.rounds = min(args.rate, 50.0), min(args.rounds, 2)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if any("=" not in kv for kv in args.bento_env):
        parser.error("--bento-env takes KEY=VALUE")
    if not wrk.available():
        parser.error("wrk is not installed (apt-get install wrk)")
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy into the environment)")
    args.answers_prefix = f"bench-serving-{uuid.uuid4().hex[:8]}"
    if args.bundle is not None and args.baseline is None:
        parser.error("--bundle goes with --baseline (mlflow models serve needs a registered version)")
    if args.baseline is not None and args.json == parser.get_default("json"):
        args.json = args.json.with_name("serving-baseline.json")
    args.profile_dir = args.profile_dir or args.json.parent
    if args.tracking_uri is None:
        from recsys.settings import Settings, load

        args.tracking_uri = load(Settings).mlflow_uri
    return args


def measure(server: Server, args: argparse.Namespace, bodies: Path, mix: list[dict[str, Any]],
            parity_mix: list[dict[str, Any]], answer: Path | None = None) -> dict[str, Any]:
    """The plan's load on one ready server, with what only some servers do: the Bento waits for its compiled
    trees and saves an answer for the floor, the floor skips the parity check (its answer is constant), and the
    Bento is profiled with ``--profile``."""
    err.print(f"{server.name}: ready after {server.ready_s:.1f} s ({len(server.processes())} processes)")
    if server.kind == "bento":
        err.print(f"bento: {systems.compiled_note(systems.wait_compiled(server))}")
    parity = systems.top_items(server, parity_mix) if server.kind != "floor" else None
    if answer is not None and not systems.save_answer(server, answer):
        err.print(f"{server.name}: no answer to save for the floor; it uses a synthetic one")
    plan, body_format = LoadPlan.from_args(args), systems.BODY_FORMAT[server.kind]
    warm_up(server, bodies, body_format, plan)
    levels = closed_levels(server, bodies, body_format, mix, plan)
    result: dict[str, Any] = {}
    if server.kind == "bento" and args.profile:
        with err.status(f"{server.name}: profiling a worker with py-spy at 8 connections for {args.duration:.0f} s …"):
            result["profile"] = profile_worker(server, bodies, args.duration, args.profile_rate, args.profile_dir,
                                               args.json.stem + "-bento-worker", args.wrk_threads, args.seed + 200)
        err.print(f"  {server.name} profile: {result['profile']['samples']} samples of pid "
                  f"{result['profile']['pid']}, flamegraph {result['profile']['flamegraph']}")
    paced = paced_point(server, body_format, mix, plan)
    return {"ready_s": server.ready_s, "rss_mb": server.rss_mb(), "levels": levels, "paced": paced,
            "parity": parity, "log": scan_log(server.log), **result}


def start(name: str, args: argparse.Namespace, tmp: Path, bundle: Path, version: int, answer: Path) -> Server:
    extra = dict(kv.split("=", 1) for kv in args.bento_env)
    if name == "bento":
        env = systems.bundle_env(bundle, tmp / "compiled", extra)
        return systems.start_bento(tmp / "bento-var", args.workers, env)
    if name == "bento-redis":
        env = systems.bundle_env(bundle, tmp / "compiled", {**extra, "RECSYS_ANSWERS_URL": args.answers_url,
                                                             "RECSYS_ANSWERS_PREFIX": args.answers_prefix})
        return systems.start_bento(tmp / "bento-redis-var", args.workers, env, name=name)
    if name == "floor":
        return systems.start_floor(tmp, args.workers, extra, answer if answer.exists() else None, args.floor_sync)
    return systems.start_mlflow_serve(tmp, args.model, version, args.tracking_uri, args.workers)


def drop_answers(url: str, prefix: str) -> int:
    """Delete the benchmark's keys from the online store."""
    from recsys.serving.online_store import RedisAnswers

    store = RedisAnswers.connect(url, prefix, timeout=10)
    return store.drop("*")


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.time()
    info = machine(wrk=wrk.version())
    version = systems.resolve_version(args.model, args.version, args.tracking_uri)
    mix, parity_mix = request_mix(args.bodies, args.seed), request_mix(40, args.seed + 1)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmpdir:
        tmp = Path(tmpdir)
        with err.status(f"downloading {args.model} v{version} …"):
            bundle = systems.download_bundle(args.model, version, args.tracking_uri, tmp / "model")
            systems.precompile(bundle, tmp / "compiled")
        bodies = {f: write_bodies(mix, f, tmp / f"{f}-bodies.jsonl") for f in set(systems.BODY_FORMAT.values())}
        answer = tmp / "floor-answer.json"
        wanted = [n for n in SERVERS if (args.floor or n != "floor") and (args.answers_url or n != "bento-redis")]
        for name in wanted:
            err.print(f"{name}: starting …")
            server = start(name, args, tmp, bundle, version, answer)
            with running(server):
                results[name] = measure(server, args, bodies[systems.BODY_FORMAT[name]], mix, parity_mix,
                                        answer if name == "bento" else None)
            if name == "bento-redis":
                drop_answers(args.answers_url, args.answers_prefix)
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log, args.keep_logs / server.log.name)
    a, b = results["bento"].pop("parity"), results["mlflow"].pop("parity")
    results.get("floor", {}).pop("parity", None)
    in_redis = results.get("bento-redis", {}).pop("parity", None)
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return {
        "benchmark": "serving", "model": args.model, "version": version, "tracking_uri": args.tracking_uri,
        "workers": args.workers, **LoadPlan.from_args(args).describe(), "bodies": args.bodies, "mix": DESCRIPTION,
        "method": method(args), "bento_env": args.bento_env, "servers": results,
        "ratios_bento_over_mlflow": level_ratios(results["bento"]["levels"], results["mlflow"]["levels"]),
        "ratios_bento_over_floor": level_ratios(results["bento"]["levels"], results["floor"]["levels"])
        if args.floor else None,
        "ratios_redis_over_bento": level_ratios(results["bento-redis"]["levels"], results["bento"]["levels"])
        if "bento-redis" in results else None,
        "parity": {"requests": len(a), "compared": len(pairs), "identical": sum(x == y for x, y in pairs)},
        "parity_redis": None if in_redis is None else {
            "requests": len(a), "identical": sum(x == y for x, y in zip(a, in_redis, strict=True))},
        "wall_s": time.time() - t_start, "machine": info,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        if args.baseline is not None:
            report = baseline.run(args)
            baseline.print_report(report)
        else:
            report = run(args)
            print_report(report)
    except KeyboardInterrupt:
        err.print("interrupted; servers stopped")
        return 130
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
