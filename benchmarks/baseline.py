"""Our Bento beside the Bento of another commit, in one run, so that only the code differs:
``python -m benchmarks.serving --baseline REF``.

REF (any git ref: ``HEAD~5``, a tag, a branch) is checked out into a temporary ``git worktree`` (detached; removed
afterwards, also on Ctrl-C). Both trees' ``bentos/service.py`` serve the same bundle (``--bundle``, or the registry
version ``benchmarks.serving`` would serve) from the same virtual environment, ``PYTHONPATH`` at each tree, with
the same workers, the same ``--bento-env`` and one compiled-tree cache; both read the same ``RECSYS_*`` variables
(through ``recsys.settings`` or, in older commits, ``os.environ``). Both stay up for the whole run, each warmed up
once. Then, for each of ``--rounds`` rounds, every wrk level and the paced point runs on both, ours first in odd
rounds and REF's first in even ones (A B, B A, ...), with the same seeds, so drift on a noisy machine and the order
hit both alike. Each figure is the median over the
rounds; the ratios are ours / REF's, beside the raw figures of every round in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks import systems
from benchmarks.harness import wrk
from benchmarks.harness.processes import Server, running, scan_log
from benchmarks.harness.report import err, fmt, machine, out, ratio
from benchmarks.load import LoadPlan, closed_levels, paced_point, warm_up
from benchmarks.mix import DESCRIPTION, parity_mix, request_mix, write_bodies

ROOT = systems.ROOT
SIDES = ("ours", "baseline")
FIGURES = {"ok_rps": "2xx/s", "server_cpu_ms_per_2xx": "CPU ms/2xx", "p50_ms": "p50 ms", "p95_ms": "p95 ms",
           "p99_ms": "p99 ms"}
"""Figures compared, with their column names (latencies: the probe's during wrk levels, the schedule's when paced)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("side by side with another commit")
    group.add_argument("--baseline", metavar="REF", default=None,
                       help="serve the Bento of this git ref beside ours instead of the floor and mlflow")
    group.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every level (default 3)")
    group.add_argument("--parity", type=int, default=1000,
                       help="requests whose whole answers are compared between the two (default 1000)")
    group.add_argument("--bundle", type=Path, default=None,
                       help="the bundle both serve (default: downloaded from the registry, as without --baseline)")
    group.add_argument("--baseline-bundle", type=Path, default=None,
                       help="the bundle the baseline serves instead (a model trained by REF's code, when the bundle "
                            "format or the features changed: each side then serves its own model)")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()  # nosec B603, B607: git from PATH, fixed argv of the benchmark's own queries


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[tuple[Path, str]]:
    """(path, commit) of REF checked out in a temporary detached worktree, removed when the block ends."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    holder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    tree = holder / "tree"
    git("worktree", "add", "--detach", "--quiet", str(tree), commit)
    try:
        if not (tree / "bentos" / "service.py").exists():
            raise RuntimeError(f"{ref} ({commit[:10]}) has no bentos/service.py")
        yield tree, commit
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(holder, ignore_errors=True)
        git("worktree", "prune")


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def compare(per_side: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The medians over the rounds of each side, their ratios (ours / baseline) and the raw rows."""
    medians = {side: {key: median(rows, key) for key in FIGURES} for side, rows in per_side.items()}
    ratios = {key: ratio(medians["ours"][key], medians["baseline"][key]) for key in FIGURES}
    return {"median": medians, "ratios": ratios, "rounds": per_side}


def bundle_for(args: argparse.Namespace, tmp: Path) -> tuple[Path, dict[str, Any]]:
    if args.bundle is not None:
        return args.bundle.resolve(), {"bundle": str(args.bundle)}
    version = systems.resolve_version(args.model, args.version, args.tracking_uri)
    with err.status(f"downloading {args.model} v{version} …"):
        bundle = systems.download_bundle(args.model, version, args.tracking_uri, tmp / "model")
    return bundle, {"model": args.model, "version": version, "tracking_uri": args.tracking_uri}


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start, plan = time.time(), LoadPlan.from_args(args)
    info = machine(wrk=wrk.version())
    ours = {"ref": "working tree", "commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain"))}
    mix, checks = request_mix(args.bodies, args.seed), parity_mix(args.parity, args.seed + 1)
    extra = dict(kv.split("=", 1) for kv in args.bento_env)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmpdir, worktree(args.baseline) as (tree, commit):
        tmp = Path(tmpdir)
        err.print(f"baseline: {args.baseline} = {commit[:10]} checked out in {tree}")
        bundle, source = bundle_for(args, tmp)
        bundles = {"ours": bundle, "baseline": (args.baseline_bundle or bundle).resolve()}
        if args.baseline_bundle is not None:
            source["baseline_bundle"] = str(args.baseline_bundle)
        with err.status("compiling the bundle's trees once …"):  # a baseline bundle: REF's servers compile it
            systems.precompile(bundle, tmp / "compiled")
        bodies = write_bodies(mix, "bento", tmp / "bento-bodies.jsonl")
        with contextlib.ExitStack() as stack:
            servers: dict[str, Server] = {}
            for side, code in (("ours", ROOT), ("baseline", tree)):
                err.print(f"{side}: starting …")
                env = systems.bundle_env(bundles[side], tmp / "compiled", extra)
                server = systems.start_bento(tmp / f"{side}-var", args.workers, env, code_root=code, name=side)
                servers[side] = stack.enter_context(running(server))
            for side, server in servers.items():
                err.print(f"{side}: ready after {server.ready_s:.1f} s, "
                          f"{systems.compiled_note(systems.wait_compiled(server))}")
                warm_up(server, bodies, "bento", plan)
            parity = {side: systems.answers(server, checks) for side, server in servers.items()}
            levels: list[dict[str, list[dict[str, Any]]]] = [{s: [] for s in SIDES} for _ in plan.connections]
            paced: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
            for r in range(args.rounds):
                err.print(f"round {r + 1} of {args.rounds}")
                order = SIDES if r % 2 == 0 else SIDES[::-1]  # A B, then B A: going first or second biases neither
                for i, c in enumerate(plan.connections):
                    one = replace(plan, connections=[c])
                    for side in order:  # the same seeds for both
                        row = closed_levels(servers[side], bodies, "bento", mix, one, seed=plan.seed + 10 * i)[0]
                        row.pop("wrk_stdout", None)
                        levels[i][side].append(row | {"round": r + 1})
                for side in order:
                    point = paced_point(servers[side], "bento", mix, plan)
                    if point is not None:
                        paced[side].append(point | {"round": r + 1})
            rss = {side: server.rss_mb() for side, server in servers.items()}
        logs = {side: scan_log(server.log) for side, server in servers.items()}
    pairs = [(a, b) for a, b in zip(parity["ours"], parity["baseline"], strict=True) if a is not None and b is not None]
    same_items = sum([i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]] for a, b in pairs)
    return {
        "benchmark": "serving-baseline", "ours": ours,
        "baseline": {"ref": args.baseline, "commit": commit}, **source, "workers": args.workers,
        "rounds": args.rounds, **plan.describe(), "bodies": args.bodies, "mix": DESCRIPTION,
        "bento_env": args.bento_env,
        "method": ("both Bentos up at once, each warmed up once; per round every wrk level and then the paced point "
                   "run on both, ours first in odd rounds and the baseline first in even ones, with the same seeds; "
                   "figures are medians over the rounds, ratios ours / baseline; latencies of wrk levels from the "
                   "open-loop probe, of the paced point from its schedule; CPU = the server tree's user+system CPU "
                   "over the level"),
        "levels": [{"connections": c, **compare(levels[i])} for i, c in enumerate(plan.connections)],
        "paced": compare(paced) if paced["ours"] else None,
        "parity": {"requests": len(checks), "compared": len(pairs), "same_items": same_items,
                   "identical": sum(a == b for a, b in pairs),
                   "what": "items (ids, scores as JSON floats, titles) and fallback; known users from the "
                           "precomputed answers, a third of them with exclusions (full ranking), unknown users "
                           "ranked from their profile; n in {1, 5, 10, 50, 100}"},
        "ready_s": {side: server.ready_s for side, server in servers.items()}, "rss_mb": rss, "logs": logs,
        "wall_s": time.time() - t_start, "machine": info,
    }


def print_report(report: dict[str, Any]) -> None:
    base = report["baseline"]
    changes = " + uncommitted changes" if report["ours"]["uncommitted_changes"] else ""
    table = Table("load", "figure", "ours", "baseline", "ours / baseline", "each round: ours / baseline",
                  title=f"ours ({report['ours']['commit'][:10]}{changes}) beside {base['ref']} "
                        f"({base['commit'][:10]}): medians of {report['rounds']} rounds, "
                        f"{report['workers']} workers each, {report['duration_s']:g} s per level")
    rows = [(f"{lv['connections']} connections", lv) for lv in report["levels"]]
    if report["paced"]:
        rows.append((f"open loop @{report['rate']:g}/s", report["paced"]))
    for load, cmp in rows:
        for key, label in FIGURES.items():
            spec = ".0f" if key == "ok_rps" else ".2f"
            rounds = ", ".join(f"{fmt(a.get(key), spec)} / {fmt(b.get(key), spec)}"
                               for a, b in zip(cmp["rounds"]["ours"], cmp["rounds"]["baseline"], strict=True))
            table.add_row(load, label, fmt(cmp["median"]["ours"][key], spec),
                          fmt(cmp["median"]["baseline"][key], spec), fmt(cmp["ratios"][key]), rounds)
            load = ""
        table.add_section()
    out.print(table)
    p = report["parity"]
    out.print(f"ratio = ours / baseline (2xx/s: higher is better; CPU and latency: lower is better). Latencies of "
              f"the wrk levels are the open-loop probe's ({report['probe_rate']:g}/s beside wrk); the open-loop row's "
              f"are from its fixed schedule. Identical answers (items, scores, titles, fallback) from both: "
              f"{p['identical']}/{p['compared']} of {p['requests']} requests (same item ids: {p['same_items']}).")
    for side, log in report["logs"].items():
        if log["tracebacks"] or log["status_5xx_lines"]:
            out.print(f"{side} log: {log['tracebacks']} tracebacks, {log['status_5xx_lines']} 5xx lines"
                      + (f"; e.g. {log['examples'][0]}" if log["examples"] else ""))
    out.print(f"wall time {report['wall_s']:.0f} s")
