"""Closed-loop load with wrk: how many answers a server gives at N connections, with which status codes, and what
each costs in the server tree's CPU.

One level is one ``wrk`` run with ``benchmarks/wrk/predict.lua``, whose ``done()`` prints a ``RECSYS_WRK {json}``
line (requests, duration, status tally with 429s apart, latency percentiles). Throughput ratios use the 2xx rate
(goodput); CPU per request is the tree's user+system CPU over the level divided by the requests it answered.

wrk's own latencies are kept under ``wrk_latency_ms`` but not used: on this machine wrk 4.1's histogram contradicts
its own request count for sub-millisecond answers (``little_mean_ms`` = connections / rps is the exact closed-loop
mean to compare with). A level's latencies come from an open-loop probe sent beside it
(:func:`benchmarks.harness.openloop.probe`).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness.openloop import latency_fields, probe
from benchmarks.harness.processes import Server

SCRIPT = Path(__file__).resolve().parents[1] / "wrk" / "predict.lua"
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    lines = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()  # nosec B603, B607: wrk from PATH, fixed argv
    return lines[0] if lines else ""


def wrk_level(server: Server, bodies: Path, body_format: str, connections: int, duration: float, threads: int = 1,
              seed: int = 1, probe_body: Callable[[], dict[str, Any]] | None = None,
              probe_rate: float = 0.0) -> dict[str, Any]:
    """One closed-loop level: wrk with ``connections`` for ``duration`` s posting the lines of ``bodies`` (the
    Lua script's format: ``bento`` or ``mlflow``; ``RECSYS_WRK_SEED`` = ``seed`` seeds its profiles), the server's
    CPU over it, and with ``probe_body`` an open-loop probe of ``probe_rate`` requests/s for the latencies."""
    threads = max(1, min(threads, connections))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "--latency", "-s", str(SCRIPT), server.url, "--", str(bodies), body_format]
    env = {**os.environ, "RECSYS_WRK_SEED": str(seed)}
    with probe(server, probe_body, probe_rate, duration) as probed:
        cpu0 = server.cpu_seconds()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)  # nosec B603: wrk argv built here from numbers and our own URL, no shell
        wall = time.perf_counter() - wall0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = server.cpu_seconds() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RECSYS_WRK ")), None)
    if line is None:
        raise RuntimeError(f"no RECSYS_WRK line in wrk's output:\n{done.stdout}")
    raw = json.loads(line.removeprefix("RECSYS_WRK "))
    statuses = {int(k): v for k, v in raw["statuses"].items()}
    requests, seconds = raw["requests"], raw["duration_us"] / 1e6
    non2xx = int(m.group(1)) if (m := _NON2XX.search(done.stdout)) else 0
    sock = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) if (
        m := _SOCKET.search(done.stdout)) else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    n429 = statuses.get(429, 0)
    lat = raw["latency_us"]
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "server": server.name, "connections": connections, "wrk_threads": threads, "duration_s": seconds,
        "requests": requests, "ok": ok, "rps": requests / seconds, "ok_rps": ok / seconds,
        "wrk_rps": float(m.group(1)) if (m := _RPS.search(done.stdout)) else None,
        "wrk_latency_ms": {k: lat[k] / 1000 for k in ("p50", "p75", "p90", "p95", "p99", "p999", "mean", "max")},
        "little_mean_ms": 1000 * connections / (requests / seconds) if requests else None,
        **latency_fields(probed()),
        "non2xx": non2xx, "status_429": n429, "status_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "errors": (non2xx - n429) + sum(sock.values()), "socket_errors": sock, "statuses": statuses,
        "server_cpu_s": cpu, "server_cpu_ms_per_request": 1000 * cpu / requests if requests else None,
        "server_cpu_ms_per_2xx": 1000 * cpu / ok if ok else None, "server_cpu_cores": cpu / wall,
        "wrk_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "wrk_stdout": done.stdout.strip().splitlines(),
    }
