"""Serving throughput and latency: the BentoML service beside `mlflow models serve` of the same registered version,
and beside a floor (BentoML with nothing behind it).

    python benchmarks/serving.py [--json PATH] [--workers N] [--connections 1,8,32,64] [--duration S] [--quick]
                                 [--no-floor] [--floor-sync] [--profile [--profile-rate HZ] [--profile-dir DIR]]

Both servers run the same ``recsys`` runtime (the MLflow pyfunc, ``RecommenderPyfunc``, calls the same
``Recommender.recommend_batch`` as the Bento's runtime), so the baseline is not handicapped: the difference is
the HTTP layer, validation, routing and bookkeeping around the model. The version (default: the registry's
champion) is downloaded once; (a) the Bento serves that bundle through ``RECSYS_BUNDLE_DIR`` with no
``MLFLOW_TRACKING_URI`` (the registry is not part of the measurement; watcher off, feedback store in a temporary
folder), then (b) the floor, then (c) ``mlflow models serve -m models:/NAME/VERSION --env-manager local`` is
started against the registry. One server at a time (the load generator shares the machine), each with
``--workers`` processes (the Bentos through ``BENTOML_CONFIG_OPTIONS=services.<name>.workers=N``: ``bentoml serve``
has no ``--workers`` option in 1.4).

The floor (``--floor``, on by default; ``--no-floor`` skips it) is ``benchmarks/floor_service.py``: a BentoML 1.4
service with our ``/predict``'s HTTP shape (the same ``input_spec``, ``PredictRequest``, so the same validation)
whose ``async def`` endpoint (like ours; ``--floor-sync``: a plain ``def`` run in the thread pool) returns one pre-built
``PredictResponse``: a real 10-item answer of the Bento, saved before it stopped. No model, no ranking; the same
workers, traffic settings (max_concurrency 128, timeout 10 s), access log (``RECSYS_ACCESS_LOG``, off by default
in both), metrics (on) and ``--bento-env``. Its rps and CPU ms per request are BentoML's own per-request cost on this
machine: "ours / floor" (2xx/s, CPU per 2xx) says how close the service is to that ceiling. It is driven like the
Bento (same bodies and levels) and left out of the parity check.

The profile (``--profile``, off by default; needs ``py-spy`` in the environment): after the Bento's levels, wrk
drives it at 8 connections for ``--duration`` while two ``py-spy record --nonblocking --full-filenames --rate
--profile-rate`` samplers watch the worker with the most CPU (a child ``_bentoml_impl.worker.service`` process of
the server's tree) for ``--duration`` - 2 s: one writes collapsed stacks (``--format raw``), the other an SVG
flamegraph, both beside the JSON (``<json stem>-bento-worker.collapsed.txt`` / ``.svg``, or ``--profile-dir``).
Each stack is (a) our code when a frame is under ``recsys/`` or ``bentos/service.py`` (named by the innermost such
frame, with everything it calls), (b) a framework package (bentoml, opentelemetry, uvicorn, starlette, pydantic,
prometheus_client, logging, asyncio, ...: the innermost frame's package), (c) loop / waits (the event loop's bottom
frame, where uvloop's and httptools' C code and the epoll waits look alike to py-spy, and threads blocked in a
stdlib wait, which py-spy samples as active) or other. The table "where a worker's CPU goes" gives each group's
share of the samples, its share of the Python samples (without (c)) and that share times the level's CPU ms per
request (an upper bound: (c) holds some CPU too); the worker's measured CPU over the window gives its idle share.
All of it goes to ``servers["bento"]["profile"]`` in the JSON. py-spy samples wall-clock time on 2 shared cores:
shares, not absolute times, are what it measures.

Load: ``wrk`` (closed loop, ``--wrk-threads`` threads, default 1) with a Lua script per body format
(``benchmarks/wrk/predict.lua``, the Bento's format for the Bento and the floor, MLflow's for MLflow) cycling
through the same pre-generated request mix (80 % known users 1..943, 20 % unknown users with a sign-up profile,
n=10; each unknown request gets a fresh random profile from the script, so the Bento's per-profile answer cache
never sees a replayed profile), after a warm-up, at each connection count for ``--duration`` seconds. Known users
are answered from the Bento's precomputed top-100 (``recsys.serving.cache.RankedCache``, built at load); the pyfunc
ranks every request. The Lua ``response()`` hook tallies status codes (429s apart from other non-2xx); throughput
ratios use the 2xx rate (goodput).

Latencies come from benchmarks/openloop.py, not from wrk: on this machine wrk 4.1's latency histogram contradicts
its own request count for fast answers (at 1 connection it reported a 6 ms mean while completing 1,650 sequential
requests/s, i.e. 0.6 ms each; ``little_mean_ms`` = connections / rps is the exact closed-loop mean to compare with,
and wrk's figures stay in the JSON under ``wrk_latency_ms``). During each wrk level an open-loop probe sends
``--probe-rate`` requests/s (default 25) of the same mix on a fixed schedule and times each answer: the level's
p50/p95/p99 are the latencies a request sees at that load. The open-loop point (``--rate``, default 100 rps, 0 to
skip) sends the mix at exactly that rate on a fixed schedule, whatever the answers take (no coordinated omission).
Latency percentiles include every answered request (under 429 shedding, the fast 429s too). CPU per request (and
per 2xx response) is the server process tree's user+system CPU
over a level divided by the requests it answered (by its 2xx responses).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()  # before numpy and LightGBM load (see recsys.runtime); the servers inherit the settings

import psutil
from openloop import OpenLoop, summarize, wait_compiled  # benchmarks/openloop.py (beside this script)

ROOT = Path(__file__).resolve().parent.parent
BENTO_DIR = ROOT / "bentos"
WRK_DIR = Path(__file__).resolve().parent / "wrk"
DEFAULT_JSON = Path("bench-results/serving.json")
MODEL = "content-ranker"
KNOWN_USERS = (1, 943)  # ML-100K user ids
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
               "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
               "retired", "salesman", "scientist", "student", "technician", "writer")
SERVERS = ("bento", "floor", "mlflow")  # run in this order, one at a time
FORMAT = {"bento": "bento", "floor": "bento", "mlflow": "mlflow"}  # request body format of each server

out = Console(highlight=False, width=120)  # the table has 11 columns
err = Console(stderr=True, highlight=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the request mix -----------------------------------------------------------------------------------------
def request_mix(count: int, seed: int, known_share: float = 0.8, n: int = 10) -> list[dict[str, Any]]:
    """``count`` requests: known users uniformly from 1..943, the rest unknown ids with a random profile."""
    rng = random.Random(seed)
    mix: list[dict[str, Any]] = []
    for i in range(count):
        if rng.random() < known_share:
            mix.append({"user_id": rng.randint(*KNOWN_USERS), "n": n})
        else:
            profile = {"age": rng.randint(16, 70), "gender": rng.choice("MF"),
                       "occupation": rng.choice(OCCUPATIONS), "zip": f"{rng.randint(1000, 99999):05d}"}
            mix.append({"user_id": 10_000_000 + i, "n": n, "profile": profile})
    return mix


def bento_body(req: dict[str, Any]) -> dict[str, Any]:
    return req


def mlflow_body(req: dict[str, Any]) -> dict[str, Any]:
    return {"dataframe_records": [{"user_id": req["user_id"], "n": req["n"], **(req.get("profile") or {})}]}


BODY = {"bento": bento_body, "floor": bento_body, "mlflow": mlflow_body}


def wrk_line(server: str, req: dict[str, Any]) -> str:
    """A line of the Lua scripts' bodies file: a known user's body, or ``@USER_ID N`` (the script draws a fresh
    profile for each such request, so a repeated line never hits the Bento's per-profile answer cache)."""
    if "profile" in req:
        return f"@{req['user_id']} {req['n']}\n"
    return json.dumps(BODY[server](req)) + "\n"


def body_factory(server: str, mix: list[dict[str, Any]], seed: int) -> Callable[[], dict[str, Any]]:
    """Bodies for the open-loop probe: the mix in a cycle, each unknown user with a fresh random profile (as the
    Lua script draws them), in the server's format."""
    rng = random.Random(seed)
    cursor = rng.randrange(len(mix))

    def body() -> dict[str, Any]:
        nonlocal cursor
        cursor = (cursor + 1) % len(mix)
        req = mix[cursor]
        if "profile" in req:
            req = {**req, "profile": {"age": rng.randint(16, 70), "gender": rng.choice("MF"),
                                      "occupation": rng.choice(OCCUPATIONS), "zip": f"{rng.randint(1000, 99999):05d}"}}
        return BODY[server](req)

    return body


ROUTE = {"bento": "/predict", "floor": "/predict", "mlflow": "/invocations"}
READY = {"bento": "/readyz", "floor": "/readyz", "mlflow": "/ping"}


# -- servers -------------------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    started: float
    ready_s: float = 0.0
    tree: list[psutil.Process] = field(default_factory=list)

    def processes(self) -> list[psutil.Process]:
        """The server's live process tree (cached: workers keep their pids while it runs)."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        known = {p.pid for p in self.tree}
        self.tree.extend(p for p in procs if p.pid not in known)
        return [p for p in self.tree if p.is_running()]

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / 2**20


def start_bento(bundle: Path, workers: int, tmp: Path, extra_env: dict[str, str]) -> Server:
    port = free_port()
    var = tmp / "bento-var"
    var.mkdir(exist_ok=True)
    # the compiled trees (lleaves) the service switches to after loading: compiled here once, so both workers load
    # them from the cache at start (as a replica that served this version before) and the levels measure the steady
    # state; bench_server waits until /model reports them
    from recsys.ranking.recommender import Recommender

    Recommender.load(bundle).compile_trees(tmp / "compiled")
    env = {**os.environ, "RECSYS_BUNDLE_DIR": str(bundle), "RECSYS_WATCH_INTERVAL": "0",
           "RECSYS_COMPILED_DIR": str(tmp / "compiled"),
           "RECSYS_VAR_DIR": str(var), "RECSYS_FEEDBACK_URL": f"sqlite:///{var}/feedback.db",
           "BENTOML_CONFIG_OPTIONS": f"services.recommender.workers={workers}",
           "BENTOML_HOME": os.environ.get("BENTOML_HOME") or str(tmp / "bentoml_home"),
           "BENTOML_DO_NOT_TRACK": "True", **extra_env}
    env.pop("MLFLOW_TRACKING_URI", None)  # the bundle only: no registry in the measurement
    env.pop("RECSYS_ADMIN_TOKEN", None)
    log = tmp / "bento.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", "service:RecommenderService", "--host", "127.0.0.1",
           "--port", str(port)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=BENTO_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Server("bento", proc, f"http://127.0.0.1:{port}", log, time.time())


def start_floor(workers: int, tmp: Path, extra_env: dict[str, str], answer: Path | None, sync: bool) -> Server:
    """benchmarks/floor_service.py: BentoML with our /predict's shape and a constant answer, with the Bento's
    settings (the same ``--bento-env``, its ``services.recommender.*`` options applied to ``services.floor``)."""
    port = free_port()
    env = {**os.environ, "BENTOML_CONFIG_OPTIONS": f"services.floor.workers={workers}",
           "BENTOML_HOME": os.environ.get("BENTOML_HOME") or str(tmp / "bentoml_home"),
           "BENTOML_DO_NOT_TRACK": "True", **extra_env, "RECSYS_FLOOR_SYNC": "1" if sync else "0"}
    env["BENTOML_CONFIG_OPTIONS"] = env["BENTOML_CONFIG_OPTIONS"].replace("services.recommender.", "services.floor.")
    if answer is not None:
        env["RECSYS_FLOOR_RESPONSE"] = str(answer)
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp / "floor.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", "floor_service:FloorService", "--host", "127.0.0.1",
           "--port", str(port)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Server("floor", proc, f"http://127.0.0.1:{port}", log, time.time())


def start_mlflow(name: str, version: int, tracking_uri: str, workers: int, tmp: Path) -> Server:
    port = free_port()
    bindir = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    log = tmp / "mlflow.log"
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{version}",
           "--env-manager", "local", "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Server("mlflow", proc, f"http://127.0.0.1:{port}", log, time.time())


def log_tail(server: Server, lines: int = 15) -> str:
    try:
        return "\n".join(server.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(server: Server, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{log_tail(server)}")
        try:
            with urllib.request.urlopen(server.url + READY[server.name], timeout=2) as resp:
                if resp.status == 200:
                    server.ready_s = time.time() - server.started
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready within {timeout:.0f} s:\n{log_tail(server)}")


def stop(server: Server) -> None:
    """SIGTERM the server's session and every process of its tree (the Bento's workers have their own sessions),
    then SIGKILL whatever is left after a grace period; only pids this script started."""
    procs = server.processes()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(timeout=5)


def post(server: Server, body: dict[str, Any], timeout: float = 10.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(server.url + ROUTE[server.name], data=data,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:300]


def top_items(server: Server, mix: list[dict[str, Any]]) -> list[list[int] | None]:
    """Top-n item ids per request (None when the request failed): the parity check of the two servers."""
    lists: list[list[int] | None] = []
    for req in mix:
        status, payload = post(server, BODY[server.name](req))
        if status != 200:
            lists.append(None)
        elif FORMAT[server.name] == "bento":
            lists.append([int(i["item_id"]) for i in payload["items"]])
        else:
            rows = sorted(payload["predictions"], key=lambda r: r["rank"])
            lists.append([int(r["item_id"]) for r in rows])
    return lists


def latency_fields(probe: dict[str, Any] | None) -> dict[str, Any]:
    """A level's latency columns from the open-loop probe's summary (None when there was no probe)."""
    keys = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")
    if probe is None:
        return {k: None for k in keys} | {"probe": None}
    return {k: probe[k] for k in keys} | {"probe": probe}


# -- wrk -----------------------------------------------------------------------------------------------------
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def run_wrk(server: Server, bodies: Path, connections: int, duration: float, threads: int, seed: int = 1,
            probe: Callable[[], dict[str, Any]] | None = None, probe_rate: float = 0.0) -> dict[str, Any]:
    """One closed-loop wrk level. With ``probe`` (a body factory) and ``probe_rate`` > 0, an open-loop latency
    probe (benchmarks/openloop.py) sends ``probe_rate`` requests/s of the same mix during the level: its
    percentiles are the level's latencies (wrk's own are kept under ``wrk_latency_ms``, see the module docstring).
    """
    threads = max(1, min(threads, connections))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "--latency", "-s", str(WRK_DIR / "predict.lua"), server.url, "--", str(bodies), FORMAT[server.name]]
    env = {**os.environ, "RECSYS_WRK_SEED": str(seed)}
    prober = None
    if probe is not None and probe_rate > 0:
        prober = OpenLoop(server.url, ROUTE[server.name], probe, probe_rate)
        # skip the first and last half second (wrk opening and closing its connections)
        probe_thread = threading.Thread(target=lambda: (time.sleep(0.5), prober.run(duration - 1.0)), daemon=True)
        probe_thread.start()
    cpu0 = server.cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    wall = time.perf_counter() - wall0
    if prober is not None:
        probe_thread.join(timeout=30)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = server.cpu_seconds() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RECSYS_WRK ")), None)
    if line is None:
        raise RuntimeError(f"no RECSYS_WRK line in wrk's output:\n{done.stdout}")
    raw = json.loads(line.removeprefix("RECSYS_WRK "))
    statuses = {int(k): v for k, v in raw["statuses"].items()}
    requests = raw["requests"]
    non2xx = int(m.group(1)) if (m := _NON2XX.search(done.stdout)) else 0
    sock = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) if (
        m := _SOCKET.search(done.stdout)) else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    n429 = statuses.get(429, 0)
    lat = raw["latency_us"]
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "server": server.name, "connections": connections, "wrk_threads": threads,
        "duration_s": raw["duration_us"] / 1e6, "requests": requests, "ok": ok,
        "rps": requests / (raw["duration_us"] / 1e6), "ok_rps": ok / (raw["duration_us"] / 1e6),
        "wrk_rps": float(m.group(1)) if (m := _RPS.search(done.stdout)) else None,
        "wrk_latency_ms": {k: lat[k] / 1000 for k in ("p50", "p75", "p90", "p95", "p99", "p999", "mean", "max")},
        "little_mean_ms": 1000 * connections / (requests / (raw["duration_us"] / 1e6)) if requests else None,
        **latency_fields(summarize(prober.samples) if prober is not None else None),
        "non2xx": non2xx, "status_429": n429, "status_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "errors": (non2xx - n429) + sum(sock.values()), "socket_errors": sock, "statuses": statuses,
        "server_cpu_s": cpu, "server_cpu_ms_per_request": 1000 * cpu / requests if requests else None,
        "server_cpu_ms_per_2xx": 1000 * cpu / ok if ok else None, "server_cpu_cores": cpu / wall,
        "wrk_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "wrk_stdout": done.stdout,
    }


# -- a CPU profile of one Bento worker under load (py-spy) --------------------------------------------------------
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


def cpu_of(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0


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


def profile_bento(server: Server, args: argparse.Namespace, bodies: Path) -> dict[str, Any]:
    """py-spy on the busiest Bento worker while wrk drives the service at 8 connections for ``--duration``:
    collapsed stacks (``--format raw``) and an SVG flamegraph, two samplers over the same window."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    workers = bento_workers(server)
    if not workers:
        raise RuntimeError("no Bento worker process found")
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    stem = args.json.stem + "-bento-worker"
    collapsed, svg = args.profile_dir / f"{stem}.collapsed.txt", args.profile_dir / f"{stem}.svg"
    window = max(2, round(args.duration) - 2)  # wrk ramps for a second before sampling starts
    level: dict[str, Any] = {}

    def drive() -> None:
        try:
            level.update(run_wrk(server, bodies, 8, args.duration, args.wrk_threads, seed=args.seed + 200))
        except Exception as exc:  # reported below
            level["error"] = str(exc)

    driver = threading.Thread(target=drive, name="wrk-profile")
    driver.start()
    # the busiest worker of this level (the kernel spreads wrk's connections over the workers when they connect,
    # not always evenly): the most CPU in its first second
    before = {w.pid: cpu_of(w) for w in workers}
    time.sleep(1.0)
    worker = max(workers, key=lambda w: cpu_of(w) - before[w.pid])
    base = [spy, "record", "--pid", str(worker.pid), "--rate", str(args.profile_rate), "--duration", str(window),
            "--nonblocking", "--full-filenames"]
    cpu0, t0 = cpu_of(worker), time.perf_counter()
    spies = [subprocess.Popen([*base, "--format", fmt_, "--output", str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for fmt_, path in (("raw", collapsed), ("flamegraph", svg))]
    outputs = [p.communicate(timeout=window + 60)[0] for p in spies]
    cpu1, t1 = cpu_of(worker), time.perf_counter()
    driver.join()
    if "error" in level:
        raise RuntimeError(f"wrk failed during the profile: {level['error']}")
    if spies[0].returncode != 0 or not collapsed.exists():
        raise RuntimeError(f"py-spy failed ({spies[0].returncode}): {outputs[0].strip()[-500:]}")
    cpu_s = (cpu1 - cpu0) * window / (t1 - t0)  # py-spy's start and flush are outside its sampling window
    report = aggregate_profile(collapsed, cpu_s, window, args.profile_rate, level.get("server_cpu_ms_per_request"))
    level.pop("wrk_stdout", None)
    return {"pid": worker.pid, "workers": len(workers), "rate_hz": args.profile_rate, "window_s": window,
            "connections": 8, "collapsed": str(collapsed), "flamegraph": str(svg) if svg.exists() else None,
            "py_spy": [next((ln for ln in o.splitlines() if "Samples:" in ln), o.strip()[-200:]) for o in outputs],
            "level": {k: level.get(k) for k in ("rps", "ok_rps", "p50_ms", "p95_ms", "server_cpu_ms_per_request",
                                                "server_cpu_ms_per_2xx", "server_cpu_cores")},
            **report}


# -- the run -------------------------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def level_ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per connection level: rps, 2xx/s, p95 and CPU per 2xx of ``ours`` over ``theirs``."""
    return [{"connections": a["connections"], "rps": ratio(a["rps"], b["rps"]),
             "ok_rps": ratio(a["ok_rps"], b["ok_rps"]), "p95": ratio(a["p95_ms"], b["p95_ms"]),
             "cpu_per_2xx": ratio(a["server_cpu_ms_per_2xx"], b["server_cpu_ms_per_2xx"])}
            for a, b in zip(ours, theirs, strict=True)]


def resolve_version(name: str, version: int | None, tracking_uri: str) -> int:
    if version is not None:
        return version
    from mlflow import MlflowClient

    return int(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
               .get_model_version_by_alias(name, "champion").version)


def download_bundle(name: str, version: int, tracking_uri: str, dst: Path) -> Path:
    from recsys.registry.release import bundle_path, load_version

    loaded = load_version(name, version, tracking_uri, dst)  # checks every sha256 and that the bundle loads
    del loaded
    return bundle_path(dst / f"v{version}")


def save_answer(server: Server, path: Path) -> bool:
    """A real 10-item answer for a known user: the floor's constant response (same size and shape)."""
    status, payload = post(server, {"user_id": KNOWN_USERS[0], "n": 10})
    if status != 200 or not isinstance(payload, dict):
        err.print(f"{server.name}: no answer to save for the floor ({status}); it uses a synthetic one")
        return False
    path.write_text(json.dumps(payload))
    return True


def run_paced(server: Server, body: Callable[[], dict[str, Any]], rate: float, duration: float) -> dict[str, Any]:
    """The open-loop point: ``rate`` requests/s on a fixed schedule (benchmarks/openloop.py), latencies from the
    schedule (no coordinated omission), the server's CPU over the window."""
    cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
    summary = summarize(OpenLoop(server.url, ROUTE[server.name], body, rate).run(duration))
    wall, cpu = time.perf_counter() - wall0, server.cpu_seconds() - cpu0
    requests, ok = summary["requests"], summary["ok"]
    return {"server": server.name, "connections": "open", "paced": True, "target_rps": rate, "duration_s": wall,
            "requests": requests, "ok": ok, "rps": summary["achieved_rps"], "ok_rps": ok / wall,
            **latency_fields(summary), "non2xx": summary["failed"], "status_429": summary["status_429"],
            "errors": summary["failed"] - summary["status_429"], "server_cpu_s": cpu,
            "server_cpu_ms_per_request": 1000 * cpu / requests if requests else None,
            "server_cpu_ms_per_2xx": 1000 * cpu / ok if ok else None, "server_cpu_cores": cpu / wall}


def bench_server(server: Server, args: argparse.Namespace, bodies: Path, mix: list[dict[str, Any]],
                 parity_mix: list[dict[str, Any]], answer: Path | None = None) -> dict[str, Any]:
    with err.status(f"{server.name}: waiting for readiness …"):
        wait_ready(server)
    err.print(f"{server.name}: ready after {server.ready_s:.1f} s ({len(server.processes())} processes)")
    if server.name == "bento":
        err.print(f"bento: compiled trees in use after {wait_compiled(server.url):.1f} s more")
    parity = top_items(server, parity_mix) if server.name != "floor" else None  # the floor's answer is constant
    if answer is not None:
        save_answer(server, answer)
    with err.status(f"{server.name}: warming up {args.warmup:.0f} s …"):
        run_wrk(server, bodies, 8, args.warmup, args.wrk_threads, seed=args.seed)
    probe = body_factory(FORMAT[server.name], mix, args.seed + 50)
    levels = []
    for i, c in enumerate(args.connections, start=1):
        with err.status(f"{server.name}: {c} connections for {args.duration:.0f} s …"):
            levels.append(run_wrk(server, bodies, c, args.duration, args.wrk_threads, seed=args.seed + i,
                                  probe=probe, probe_rate=args.probe_rate))
        r = levels[-1]
        err.print(f"  {server.name} c={c}: {r['rps']:.0f} rps, probe p95 {fmt(r['p95_ms'], '.1f')} ms, "
                  f"non-2xx {r['non2xx']} (429: {r['status_429']}), {r['server_cpu_ms_per_request']:.2f} CPU ms/req")
    profile = None
    if server.name == "bento" and args.profile:
        with err.status(f"{server.name}: profiling a worker with py-spy at 8 connections for {args.duration:.0f} s …"):
            profile = profile_bento(server, args, bodies)
        err.print(f"  {server.name} profile: {profile['samples']} samples of pid {profile['pid']}, "
                  f"flamegraph {profile['flamegraph']}")
    paced = None
    if args.rate > 0:
        with err.status(f"{server.name}: open loop at {args.rate:.0f} rps for {args.duration:.0f} s …"):
            paced = run_paced(server, body_factory(FORMAT[server.name], mix, args.seed + 101), args.rate,
                              args.duration)
        err.print(f"  {server.name} open loop @{args.rate:g}/s: p50 {fmt(paced['p50_ms'], '.1f')} ms, "
                  f"p95 {fmt(paced['p95_ms'], '.1f')} ms, p99 {fmt(paced['p99_ms'], '.1f')} ms, "
                  f"failed {paced['non2xx']}")
    result = {"ready_s": server.ready_s, "rss_mb": server.rss_mb(), "levels": levels, "paced": paced,
              "parity": parity, "log": scan_log(server)}
    if profile is not None:
        result["profile"] = profile
    return result


def scan_log(server: Server) -> dict[str, Any]:
    """5xx and tracebacks in a server's log. ``ClientDisconnect`` tracebacks (uvicorn/starlette reading the body of
    a request whose connection wrk closed at the end of a level) are counted apart: an artefact of stopping wrk."""
    try:
        lines = server.log.read_text(errors="replace").splitlines()
    except OSError:
        return {"tracebacks": 0, "client_disconnects": 0, "status_5xx_lines": 0, "examples": []}
    tracebacks = sum("Traceback (most recent call last)" in ln for ln in lines)
    disconnects = sum(ln.startswith("starlette.requests.ClientDisconnect") for ln in lines)
    fivexx = [ln for ln in lines if re.search(r"status=5\d\d|\" 5\d\d ", ln)]
    examples = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b", ln)
                and "ClientDisconnect" not in ln][:5] + fivexx[:5]
    return {"tracebacks": tracebacks, "client_disconnects": disconnects, "status_5xx_lines": len(fivexx),
            "examples": examples}


def machine() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                          if ln.startswith("model name")), "")
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    import bentoml
    import mlflow

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "cpu_model": cpu_model, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "loadavg_at_start": os.getloadavg(), "wrk": wrk_version[0] if wrk_version else "",
            "bentoml": bentoml.__version__, "mlflow": mlflow.__version__}


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.time()
    info = machine()
    version = resolve_version(args.model, args.version, args.tracking_uri)
    mix = request_mix(args.bodies, args.seed)
    parity_mix = request_mix(40, args.seed + 1)
    extra_env = dict(kv.split("=", 1) for kv in args.bento_env)
    servers = [name for name in SERVERS if args.floor or name != "floor"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmpdir:
        tmp = Path(tmpdir)
        with err.status(f"downloading {args.model} v{version} …"):
            bundle = download_bundle(args.model, version, args.tracking_uri, tmp / "model")
        bodies = {}
        for fmt_ in set(FORMAT.values()):
            bodies[fmt_] = tmp / f"{fmt_}-bodies.jsonl"
            bodies[fmt_].write_text("".join(wrk_line(fmt_, r) for r in mix))
        answer = tmp / "floor-answer.json"
        for name in servers:
            if name == "bento":
                server = start_bento(bundle, args.workers, tmp, extra_env)
            elif name == "floor":
                server = start_floor(args.workers, tmp, extra_env, answer if answer.exists() else None,
                                     args.floor_sync)
            else:
                server = start_mlflow(args.model, version, args.tracking_uri, args.workers, tmp)
            try:
                results[name] = bench_server(server, args, bodies[FORMAT[name]], mix, parity_mix,
                                             answer if name == "bento" else None)
            finally:
                with err.status(f"{name}: stopping …"):
                    stop(server)
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log, args.keep_logs / server.log.name)
    a, b = results["bento"].pop("parity"), results["mlflow"].pop("parity")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    ratios = level_ratios(results["bento"]["levels"], results["mlflow"]["levels"])
    floor_ratios = level_ratios(results["bento"]["levels"], results["floor"]["levels"]) if args.floor else None
    results.get("floor", {}).pop("parity", None)
    return {
        "benchmark": "serving", "model": args.model, "version": version, "tracking_uri": args.tracking_uri,
        "workers": args.workers, "connections": args.connections, "duration_s": args.duration,
        "warmup_s": args.warmup, "wrk_threads": args.wrk_threads, "bodies": args.bodies, "seed": args.seed,
        "mix": {"known_share": 0.8, "known_users": list(KNOWN_USERS), "n": 10,
                "unknown": ("ids >= 10,000,000, each request with a fresh random profile drawn in the Lua script "
                            "(age 16-70, gender, occupation, 5-digit zip): no replayed profiles")},
        "method": {
            "load": ("wrk 4.1, closed loop, --timeout 10s: throughput, status codes and CPU per level; the level's "
                     f"latencies from an open-loop probe of {args.probe_rate:g} requests/s of the same mix sent "
                     "during it (benchmarks/openloop.py); wrk's own histogram under wrk_latency_ms (it contradicts "
                     "wrk's request count for sub-millisecond answers here: compare little_mean_ms)"),
            "paced": (f"open loop at {args.rate:g} requests/s (benchmarks/openloop.py, aiohttp): requests on a fixed "
                      "schedule whatever the answers take (no coordinated omission; how late sends were is in "
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
        },
        "bento_env": extra_env,
        "servers": results, "ratios_bento_over_mlflow": ratios, "ratios_bento_over_floor": floor_ratios,
        "parity": {"requests": len(a), "compared": len(pairs), "identical": sum(x == y for x, y in pairs)},
        "wall_s": time.time() - t_start, "machine": info,
    }


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


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


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("connection counts must be >= 1")
    return values


def main(argv: list[str] | None = None) -> int:
    from recsys.registry.tracking import default_tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each server (default 2)")
    parser.add_argument("--connections", type=parse_ints, default=[1, 8, 32, 64],
                        help="wrk connection counts (default 1,8,32,64)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per level (default 15)")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds at 8 connections (default 5)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="requests/s of the open-loop point, 0 to skip (default 100)")
    parser.add_argument("--probe-rate", type=float, default=25.0,
                        help="requests/s of the open-loop latency probe during each wrk level, 0 for none "
                             "(default 25)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1; at most 2 advised)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s per level, 1 and 8 connections")
    parser.add_argument("--model", default=MODEL, help=f"registered model (default {MODEL})")
    parser.add_argument("--version", type=int, default=None, help="model version (default: the champion)")
    parser.add_argument("--tracking-uri", default=None,
                        help="registry (default $MLFLOW_TRACKING_URI or the project's var/mlflow/mlflow.db); "
                             "only read")
    parser.add_argument("--bodies", type=int, default=2000, help="pre-generated request bodies (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the request mix (default 7)")
    parser.add_argument("--bento-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the Bento (e.g. RECSYS_MAX_CONCURRENCY=64); repeatable")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the servers' logs into this folder")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the floor, benchmarks/floor_service.py (default on; --no-floor skips it)")
    parser.add_argument("--floor-sync", action="store_true",
                        help="the floor's endpoint synchronous (a def run in the thread pool) "
                             "instead of async def")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy profile of one Bento worker at 8 connections for --duration (needs py-spy)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    parser.add_argument("--profile-dir", type=Path, default=None,
                        help="where the profile's stacks and flamegraph go (default: the --json file's folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.connections, args.warmup = 5.0, [1, 8], min(args.warmup, 2.0)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if any("=" not in kv for kv in args.bento_env):
        parser.error("--bento-env takes KEY=VALUE")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy into the environment)")
    args.profile_dir = args.profile_dir or args.json.parent
    args.tracking_uri = args.tracking_uri or default_tracking_uri()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        report = run(args)
    except KeyboardInterrupt:
        err.print("interrupted; servers stopped")
        return 130
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for name in report["servers"]:  # the raw wrk text stays in the JSON only
        for r in report["servers"][name]["levels"]:
            r["wrk_stdout"] = r["wrk_stdout"].strip().splitlines()
    args.json.write_text(json.dumps(report, indent=2))
    out.print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
