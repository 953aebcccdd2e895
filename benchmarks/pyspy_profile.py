"""Where a Bento worker's CPU goes: a py-spy profile of the busiest worker while wrk loads the service.

Two ``py-spy record --nonblocking --full-filenames --rate R`` samplers watch the worker with the most CPU (a child
``_bentoml_impl.worker.service`` process of the server's tree) for the level's duration - 2 s: one writes collapsed
stacks (``--format raw``), the other an SVG flamegraph. Each stack is (a) our code when a frame is under
``recsys/`` or ``bentos/service.py`` (named by the innermost such frame, with everything it calls), (b) a framework
package (bentoml, opentelemetry, uvicorn, starlette, pydantic, prometheus_client, logging, asyncio, ...: the
innermost frame's package), (c) loop / waits (the event loop's bottom frame, where uvloop's and httptools' C code
and the epoll waits look alike to py-spy, and threads blocked in a stdlib wait, which py-spy samples as active) or
(d) other. The table gives each group's share of the samples, its share of the Python samples (without (c)) and
that share times the level's CPU ms per request (an upper bound: (c) holds some CPU too); the worker's measured CPU
over the window gives its idle share. py-spy samples wall-clock time on shared cores: shares, not absolute times,
are what it measures. Needs ``py-spy`` beside the interpreter or on PATH.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from rich.table import Table

from benchmarks.harness.processes import Server, cpu_of
from benchmarks.harness.report import fmt, out
from benchmarks.harness.wrk import wrk_level

ROOT = Path(__file__).resolve().parents[1]
BENTO_DIR = ROOT / "bentos"
OUR_CODE = (str(ROOT / "recsys") + os.sep, str(BENTO_DIR / "service.py"))
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PACKAGE_GROUP = {"_bentoml_impl": "bentoml", "_bentoml_sdk": "bentoml", "simple_di": "bentoml",
                 "pydantic_core": "pydantic", "typing_extensions": "pydantic"}
STDLIB_GROUPS = ("logging", "asyncio", "concurrent", "threading", "queue", "selectors", "json")
FRAMEWORK = {"bentoml", "opentelemetry", "starlette", "fastapi", "uvicorn", "anyio", "pydantic", "prometheus_client",
             "logging", "asyncio", "uvloop", "httptools", "h11", "sniffio", "attr", "cattr"}  # the rest: "other"
WAIT_LEAVES = {"wait", "get", "select", "poll", "sleep", "_wait_for_tstate_lock", "acquire", "accept"}
LOOP_NAME = "event loop bottom: uvloop/httptools C, epoll waits"


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def bento_workers(server: Server) -> list[psutil.Process]:
    """The processes running the service (``python -m _bentoml_impl.worker.service ...``), not the arbiter."""
    found = []
    for proc in server.processes():
        with contextlib.suppress(psutil.Error):
            if "_bentoml_impl.worker.service" in proc.cmdline():
                found.append(proc)
    return found


def frame_group(file: str) -> str | None:
    """The package a frame belongs to (None: a generic stdlib frame, attributed to its caller)."""
    if "site-packages/" in file:
        top = file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return PACKAGE_GROUP.get(top, top)
    m = re.search(r"/lib/python3\.\d+/([^/]+)", file)
    if m:
        mod = m.group(1).removesuffix(".py")
        return mod if mod in STDLIB_GROUPS else None
    return None


def classify(stack: str) -> tuple[str, str]:
    """(kind, name) of one collapsed stack (root;...;leaf): "wait" for the bottom of the event loop or a thread
    blocked in a stdlib wait (py-spy samples those as active: a background thread idle in ``Queue.get`` would
    otherwise count as its caller's CPU), "ours" by the innermost frame of our code (with all it calls: numpy,
    LightGBM, pydantic ...), "framework" by the innermost frame's package (generic stdlib frames count for their
    caller) when it is one of the serving stack's (``FRAMEWORK``), else "other" (by package)."""
    frames = []
    for text in stack.split(";"):
        m = _FRAME.match(text)
        frames.append((m.group("func"), m.group("file")) if m else (text, ""))
    leaf_func, leaf_file = frames[-1]
    if leaf_func == "Runner.run" and leaf_file.endswith("asyncio/runners.py"):
        return "wait", LOOP_NAME
    if leaf_func.rsplit(".", 1)[-1] in WAIT_LEAVES and frame_group(leaf_file) in STDLIB_GROUPS:
        return "wait", "threads blocked in a wait (queue, lock)"
    for func, file in reversed(frames):
        if file.startswith(OUR_CODE):
            short = file.removeprefix(str(ROOT) + os.sep)
            return "ours", f"{short}:{func}"
    for _, file in reversed(frames):
        group = frame_group(file)
        if group is not None:
            return ("framework" if group in FRAMEWORK else "other"), group
    return "other", "other"


def aggregate_profile(collapsed: Path, cpu_s: float, window_s: float, rate: float,
                      cpu_ms_per_request: float | None) -> dict[str, Any]:
    """Shares of py-spy's active samples per group. py-spy samples wall-clock time: a thread in a Python frame
    counts whether it runs or waits for a core (2 cores, wrk beside the servers), and the event loop's bottom
    frame (``Runner.run``) stands for uvloop/httptools C code and epoll waits alike. So the "Python" share of a
    group leaves that bucket out, and its CPU ms per request (the Python share times the level's CPU ms/req of
    the whole tree) is an upper bound: the loop's C code takes its part of the CPU from every group. The worker's
    measured CPU (psutil) over the window gives the idle share."""
    counts: dict[tuple[str, str], int] = {}
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            key = classify(stack)
            counts[key] = counts.get(key, 0) + int(n)
    samples = sum(counts.values())
    python = sum(n for (kind, _), n in counts.items() if kind != "wait")

    def shares(kind: str, n: int) -> dict[str, Any]:
        py_share = n / python if kind != "wait" and python else None
        return {"samples": n, "sample_share": n / samples if samples else None, "python_share": py_share,
                "cpu_ms_per_request_max": py_share * cpu_ms_per_request
                if py_share is not None and cpu_ms_per_request else None}

    groups = [{"kind": kind, "name": name, **shares(kind, n)}
              for (kind, name), n in sorted(counts.items(), key=lambda kv: -kv[1])]
    totals = {kind: shares(kind, sum(n for (k, _), n in counts.items() if k == kind))
              for kind in ("ours", "framework", "wait", "other")}
    return {"samples": samples, "expected_samples": round(rate * window_s), "python_samples": python,
            "worker_cpu_s": cpu_s, "worker_cpu_cores": cpu_s / window_s if window_s else None,
            "idle_share_of_window": max(0.0, 1 - cpu_s / window_s) if window_s else None,
            "groups": groups, "totals": totals}


def profile_worker(server: Server, bodies: Path, duration: float, rate: int, out_dir: Path, stem: str,
                   wrk_threads: int = 1, seed: int = 1) -> dict[str, Any]:
    """py-spy on the busiest Bento worker while wrk drives the service at 8 connections for ``duration`` s:
    collapsed stacks (``--format raw``) and an SVG flamegraph (``out_dir/<stem>.collapsed.txt`` / ``.svg``), two
    samplers over the same window, and the shares of :func:`aggregate_profile`."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    workers = bento_workers(server)
    if not workers:
        raise RuntimeError("no Bento worker process found")
    out_dir.mkdir(parents=True, exist_ok=True)
    collapsed, svg = out_dir / f"{stem}.collapsed.txt", out_dir / f"{stem}.svg"
    window = max(2, round(duration) - 2)  # wrk ramps for a second before sampling starts
    level: dict[str, Any] = {}

    def drive() -> None:
        try:
            level.update(wrk_level(server, bodies, "bento", 8, duration, wrk_threads, seed=seed))
        except Exception as exc:  # reported below
            level["error"] = str(exc)

    driver = threading.Thread(target=drive, name="wrk-profile")
    driver.start()
    # the busiest worker of this level (the kernel spreads wrk's connections over the workers when they connect,
    # not always evenly): the most CPU in its first second
    before = {w.pid: cpu_of(w) for w in workers}
    time.sleep(1.0)
    worker = max(workers, key=lambda w: cpu_of(w) - before[w.pid])
    base = [spy, "record", "--pid", str(worker.pid), "--rate", str(rate), "--duration", str(window),
            "--nonblocking", "--full-filenames"]
    cpu0, t0 = cpu_of(worker), time.perf_counter()
    spies = [subprocess.Popen([*base, "--format", fmt_, "--output", str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # nosec B603: py-spy argv built here, no shell
             for fmt_, path in (("raw", collapsed), ("flamegraph", svg))]
    outputs = [p.communicate(timeout=window + 60)[0] for p in spies]
    cpu1, t1 = cpu_of(worker), time.perf_counter()
    driver.join()
    if "error" in level:
        raise RuntimeError(f"wrk failed during the profile: {level['error']}")
    if spies[0].returncode != 0 or not collapsed.exists():
        raise RuntimeError(f"py-spy failed ({spies[0].returncode}): {outputs[0].strip()[-500:]}")
    cpu_s = (cpu1 - cpu0) * window / (t1 - t0)  # py-spy's start and flush are outside its sampling window
    report = aggregate_profile(collapsed, cpu_s, window, rate, level.get("server_cpu_ms_per_request"))
    level.pop("wrk_stdout", None)
    return {"pid": worker.pid, "workers": len(workers), "rate_hz": rate, "window_s": window,
            "connections": 8, "collapsed": str(collapsed), "flamegraph": str(svg) if svg.exists() else None,
            "py_spy": [next((ln for ln in o.splitlines() if "Samples:" in ln), o.strip()[-200:]) for o in outputs],
            "level": {k: level.get(k) for k in ("rps", "ok_rps", "p50_ms", "p95_ms", "server_cpu_ms_per_request",
                                                "server_cpu_ms_per_2xx", "server_cpu_cores")},
            **report}




def print_profile(prof: dict[str, Any]) -> None:
    level = prof["level"]
    table = Table("kind", "where", "samples", "% samples", "% Python", "≤ CPU ms/req",
                  title=f"where a Bento worker's CPU goes (py-spy {prof['rate_hz']:g} Hz, {prof['window_s']} s, "
                        f"8 connections, {fmt(level['rps'], '.0f')} rps)")
    kinds = {"ours": "our code", "framework": "framework", "other": "other", "wait": "loop / waits"}

    def pct(x: float | None) -> str:
        return fmt(None if x is None else 100 * x, ".1f")

    for kind, label in kinds.items():
        rows = [g for g in prof["groups"] if g["kind"] == kind]
        shown = (rows[:12] if kind == "ours" else rows if kind == "framework"
                 else [g for g in rows if (g["sample_share"] or 0) >= 0.005])
        for g in shown:
            table.add_row(label, g["name"][-60:], str(g["samples"]), pct(g["sample_share"]), pct(g["python_share"]),
                          fmt(g["cpu_ms_per_request_max"], ".3f"))
        rest = [g for g in rows if g not in shown]
        if rest:
            n = sum(g["samples"] for g in rest)
            py = sum(g["python_share"] or 0 for g in rest) if kind != "wait" else None
            table.add_row(label, f"({len(rest)} more)", str(n), pct(n / prof["samples"]), pct(py),
                          fmt(sum(g["cpu_ms_per_request_max"] or 0 for g in rest) if py is not None else None, ".3f"))
        t = prof["totals"][kind]
        table.add_row(f"[b]{label}[/b]", "[b]total[/b]", str(t["samples"]), pct(t["sample_share"]),
                      pct(t["python_share"]), fmt(t["cpu_ms_per_request_max"], ".3f"))
        table.add_section()
    out.print(table)
    out.print(f"worker pid {prof['pid']} (the busiest of {prof['workers']}) used {fmt(prof['worker_cpu_cores'])} "
              f"cores over the window (idle {pct(prof['idle_share_of_window'])} %); {prof['samples']} active samples "
              f"(summed over the worker's threads) in {prof['expected_samples']} ticks; the level: "
              f"{fmt(level['server_cpu_ms_per_request'])} CPU ms/req over the tree. '% Python' leaves out the "
              "loop/waits bucket (uvloop C code and epoll waits look alike to py-spy), so '≤ CPU ms/req' (% Python x "
              "the level's CPU ms/req) is an upper bound.")
    out.print(f"flamegraph {prof['flamegraph']}; collapsed stacks {prof['collapsed']}")
