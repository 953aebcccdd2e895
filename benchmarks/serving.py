"""Serving throughput and latency: the BentoML service beside `mlflow models serve` of the same registered version.

    python benchmarks/serving.py [--json PATH] [--workers N] [--connections 1,8,32,64] [--duration S] [--quick]

Both servers run the same ``recsys`` runtime (the MLflow pyfunc, ``RecommenderPyfunc``, calls the same
``Recommender.recommend_batch`` as the Bento's runtime), so the baseline is not handicapped: the difference is
the HTTP layer, validation, routing and bookkeeping around the model. The version (default: the registry's
champion) is downloaded once; (a) the Bento serves that bundle through ``RECSYS_BUNDLE_DIR`` with no
``MLFLOW_TRACKING_URI`` (the registry is not part of the measurement; watcher off, feedback store in a temporary
folder), then (b) ``mlflow models serve -m models:/NAME/VERSION --env-manager local`` is started against the
registry. One server at a time (the load generator shares the machine), each with ``--workers`` processes
(the Bento through ``BENTOML_CONFIG_OPTIONS=services.recommender.workers=N``: ``bentoml serve`` has no
``--workers`` option in 1.4).

Load: ``wrk`` (closed loop, ``--wrk-threads`` threads, default 1) with a Lua script per server
(``benchmarks/wrk/predict.lua``, one body format per server) cycling through the same pre-generated request mix
(80 % known users 1..943, 20 % unknown users with a sign-up profile, n=10; each unknown request gets a fresh
random profile from the script, so the Bento's per-profile answer cache never sees a replayed profile), after a
warm-up, at each connection count for ``--duration`` seconds. Known users are answered from the Bento's
precomputed top-100 (``recsys.serving.cache.RankedCache``, built at load); the pyfunc ranks every request. The
Lua ``response()`` hook tallies status codes (429s apart from other non-2xx); throughput ratios use the 2xx rate
(goodput), and wrk's latency percentiles include the fast 429 answers. The paced point (``--rate``, default
100 rps) is an approximation with plain wrk (wrk2 is not installed): ``--paced-connections`` connections (default
2: one connection cannot reach 100 rps at a 10 ms latency) whose Lua ``delay()`` waits a fixed time between a
response and the next request, bisected over up to 4 probes of 2 s (0 .. ``connections*1000/rate`` ms) for the
achieved rate closest to the target; it is still closed loop (no coordinated-omission correction), and the
achieved rate is reported. CPU per request (and per 2xx response) is the server process tree's user+system CPU
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
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()  # before numpy and LightGBM load (see recsys.runtime); the servers inherit the settings

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENTO_DIR = ROOT / "bentos"
WRK_DIR = Path(__file__).resolve().parent / "wrk"
DEFAULT_JSON = Path("bench-results/serving.json")
MODEL = "content-ranker"
KNOWN_USERS = (1, 943)  # ML-100K user ids
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
               "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
               "retired", "salesman", "scientist", "student", "technician", "writer")
SERVERS = ("bento", "mlflow")

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


BODY = {"bento": bento_body, "mlflow": mlflow_body}


def wrk_line(server: str, req: dict[str, Any]) -> str:
    """A line of the Lua scripts' bodies file: a known user's body, or ``@USER_ID N`` (the script draws a fresh
    profile for each such request, so a repeated line never hits the Bento's per-profile answer cache)."""
    if "profile" in req:
        return f"@{req['user_id']} {req['n']}\n"
    return json.dumps(BODY[server](req)) + "\n"
ROUTE = {"bento": "/predict", "mlflow": "/invocations"}
READY = {"bento": "/readyz", "mlflow": "/ping"}


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
    env = {**os.environ, "RECSYS_BUNDLE_DIR": str(bundle), "RECSYS_WATCH_INTERVAL": "0",
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
        elif server.name == "bento":
            lists.append([int(i["item_id"]) for i in payload["items"]])
        else:
            rows = sorted(payload["predictions"], key=lambda r: r["rank"])
            lists.append([int(r["item_id"]) for r in rows])
    return lists


# -- wrk -----------------------------------------------------------------------------------------------------
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def run_wrk(server: Server, bodies: Path, connections: int, duration: float, threads: int,
            delay_ms: int = 0, seed: int = 1) -> dict[str, Any]:
    threads = max(1, min(threads, connections))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "--latency", "-s", str(WRK_DIR / "predict.lua"), server.url, "--", str(bodies), server.name]
    env = {**os.environ, "RECSYS_WRK_DELAY_MS": str(delay_ms), "RECSYS_WRK_SEED": str(seed)}
    cpu0 = server.cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
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
    requests = raw["requests"]
    non2xx = int(m.group(1)) if (m := _NON2XX.search(done.stdout)) else 0
    sock = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) if (
        m := _SOCKET.search(done.stdout)) else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    n429 = statuses.get(429, 0)
    lat = raw["latency_us"]
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "server": server.name, "connections": connections, "wrk_threads": threads, "delay_ms": delay_ms,
        "duration_s": raw["duration_us"] / 1e6, "requests": requests, "ok": ok,
        "rps": requests / (raw["duration_us"] / 1e6), "ok_rps": ok / (raw["duration_us"] / 1e6),
        "wrk_rps": float(m.group(1)) if (m := _RPS.search(done.stdout)) else None,
        "p50_ms": lat["p50"] / 1000, "p75_ms": lat["p75"] / 1000, "p90_ms": lat["p90"] / 1000,
        "p95_ms": lat["p95"] / 1000, "p99_ms": lat["p99"] / 1000, "p999_ms": lat["p999"] / 1000,
        "mean_ms": lat["mean"] / 1000, "max_ms": lat["max"] / 1000,
        "non2xx": non2xx, "status_429": n429, "status_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "errors": (non2xx - n429) + sum(sock.values()), "socket_errors": sock, "statuses": statuses,
        "server_cpu_s": cpu, "server_cpu_ms_per_request": 1000 * cpu / requests if requests else None,
        "server_cpu_ms_per_2xx": 1000 * cpu / ok if ok else None, "server_cpu_cores": cpu / wall,
        "wrk_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "wrk_stdout": done.stdout,
    }


# -- the run -------------------------------------------------------------------------------------------------
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


def bench_server(server: Server, args: argparse.Namespace, bodies: Path, parity_mix: list[dict[str, Any]]
                 ) -> dict[str, Any]:
    with err.status(f"{server.name}: waiting for readiness …"):
        wait_ready(server)
    err.print(f"{server.name}: ready after {server.ready_s:.1f} s ({len(server.processes())} processes)")
    parity = top_items(server, parity_mix)
    with err.status(f"{server.name}: warming up {args.warmup:.0f} s …"):
        run_wrk(server, bodies, 8, args.warmup, args.wrk_threads, seed=args.seed)
    levels = []
    for i, c in enumerate(args.connections, start=1):
        with err.status(f"{server.name}: {c} connections for {args.duration:.0f} s …"):
            levels.append(run_wrk(server, bodies, c, args.duration, args.wrk_threads, seed=args.seed + i))
        r = levels[-1]
        err.print(f"  {server.name} c={c}: {r['rps']:.0f} rps, p95 {r['p95_ms']:.1f} ms, "
                  f"non-2xx {r['non2xx']} (429: {r['status_429']}), {r['server_cpu_ms_per_request']:.2f} CPU ms/req")
    paced = None
    if args.rate > 0:
        base = next((r for r in levels if r["connections"] == 1), None)
        if base is None:
            base = run_wrk(server, bodies, 1, min(5.0, args.duration), args.wrk_threads, seed=args.seed + 100)
        # the achieved rate falls with the delay but not linearly (wrk's ms timers, idle keep-alive connections):
        # bisect the integer delay in [0, per-connection period] with up to 4 short probes, starting from the
        # period minus the mean latency at 1 connection, and keep the delay whose rate came closest
        conns = args.paced_connections
        period = conns * 1000 / args.rate
        lo, hi = 0, round(period)
        delay = min(hi, max(0, round(period - base["mean_ms"])))
        probes: list[tuple[int, float]] = []
        with err.status(f"{server.name}: calibrating the paced point …"):
            for _ in range(4):
                rps = run_wrk(server, bodies, conns, 2.0, 1, delay_ms=delay, seed=args.seed + 102)["rps"]
                probes.append((delay, rps))
                if abs(rps - args.rate) <= 0.03 * args.rate:
                    break
                if rps > args.rate:
                    lo = delay + 1
                else:
                    hi = delay - 1
                if lo > hi:
                    break
                delay = (lo + hi) // 2
        delay = min(probes, key=lambda p: abs(p[1] - args.rate))[0]
        with err.status(f"{server.name}: paced ~{args.rate:.0f} rps (delay {delay} ms) for {args.duration:.0f} s …"):
            paced = run_wrk(server, bodies, conns, args.duration, 1, delay_ms=delay, seed=args.seed + 101)
        paced["target_rps"] = args.rate
        paced["probes"] = [{"delay_ms": d, "rps": r} for d, r in probes]
        paced["paced"] = True
    return {"ready_s": server.ready_s, "rss_mb": server.rss_mb(), "levels": levels, "paced": paced,
            "parity": parity, "log": scan_log(server)}


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
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmpdir:
        tmp = Path(tmpdir)
        with err.status(f"downloading {args.model} v{version} …"):
            bundle = download_bundle(args.model, version, args.tracking_uri, tmp / "model")
        bodies = {}
        for name in SERVERS:
            bodies[name] = tmp / f"{name}-bodies.jsonl"
            bodies[name].write_text("".join(wrk_line(name, r) for r in mix))
        for name in SERVERS:
            server = (start_bento(bundle, args.workers, tmp, extra_env) if name == "bento"
                      else start_mlflow(args.model, version, args.tracking_uri, args.workers, tmp))
            try:
                results[name] = bench_server(server, args, bodies[name], parity_mix)
            finally:
                with err.status(f"{name}: stopping …"):
                    stop(server)
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log, args.keep_logs / server.log.name)
    a, b = results["bento"].pop("parity"), results["mlflow"].pop("parity")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    ratios = []
    for ours, theirs in zip(results["bento"]["levels"], results["mlflow"]["levels"], strict=True):
        ratios.append({"connections": ours["connections"],
                       "rps": ours["rps"] / theirs["rps"] if theirs["rps"] else None,
                       "ok_rps": ours["ok_rps"] / theirs["ok_rps"] if theirs["ok_rps"] else None,
                       "p95": ours["p95_ms"] / theirs["p95_ms"] if theirs["p95_ms"] else None})
    return {
        "benchmark": "serving", "model": args.model, "version": version, "tracking_uri": args.tracking_uri,
        "workers": args.workers, "connections": args.connections, "duration_s": args.duration,
        "warmup_s": args.warmup, "wrk_threads": args.wrk_threads, "bodies": args.bodies, "seed": args.seed,
        "mix": {"known_share": 0.8, "known_users": list(KNOWN_USERS), "n": 10,
                "unknown": ("ids >= 10,000,000, each request with a fresh random profile drawn in the Lua script "
                            "(age 16-70, gender, occupation, 5-digit zip): no replayed profiles")},
        "method": {
            "load": "wrk 4.1, closed loop, --timeout 10s; latency from wrk's histogram, p95 via the Lua done() hook",
            "paced": (f"approximate {args.rate:g} rps: {args.paced_connections} connection(s), Lua delay() between "
                      "a response and the next request, bisected in 0..connections*1000/rate ms over up to 4 probes "
                      "of 2 s for the achieved rate closest to the target; closed loop, no coordinated-omission "
                      "correction; achieved rate reported"),
            "goodput": ("ratios use 2xx responses per second; wrk's latency percentiles include every response, "
                        "so under 429 shedding they include the fast 429s"),
            "bento": ("bentoml serve service:RecommenderService with RECSYS_BUNDLE_DIR (downloaded once from the "
                      "registry), no MLFLOW_TRACKING_URI, watcher off; workers via BENTOML_CONFIG_OPTIONS"),
            "mlflow": ("mlflow models serve -m models:/NAME/VERSION --env-manager local --workers N (uvicorn); "
                       "its pyfunc runs the same recsys Recommender.recommend_batch: not a handicapped baseline"),
            "cpu": "server process tree user+system CPU seconds over a level / requests in that level",
            "order": "bento first, then mlflow; never both at once",
        },
        "bento_env": extra_env,
        "servers": results, "ratios_bento_over_mlflow": ratios,
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
        s = report["servers"][name]
        rows = list(s["levels"])
        if s["paced"] is not None:
            rows.append(s["paced"])
        for r in rows:
            label = f"{r['connections']} @{r['target_rps']:g}/s" if r.get("paced") else str(r["connections"])
            table.add_row(name, label, f"{r['rps']:.0f}", f"{r['ok_rps']:.0f}", f"{r['p50_ms']:.1f}",
                          f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}", str(r["errors"]), str(r["status_429"]),
                          fmt(r["server_cpu_ms_per_request"]), fmt(r["server_cpu_ms_per_2xx"]))
        table.add_section()
    out.print(table)
    ratios = Table("conns", "2xx/s bento/mlflow", "p95 bento/mlflow", "bento 429 share",
                   title="ours / theirs")
    for r, b in zip(report["ratios_bento_over_mlflow"], report["servers"]["bento"]["levels"], strict=True):
        share = b["status_429"] / b["requests"] if b["requests"] else 0.0
        ratios.add_row(str(r["connections"]), fmt(r["ok_rps"]), fmt(r["p95"]) + (" *" if share else ""),
                       f"{share:.0%}")
    pb, pm = report["servers"]["bento"]["paced"], report["servers"]["mlflow"]["paced"]
    if pb and pm:
        ratios.add_row(f"{pb['connections']} @{pb['target_rps']:g}/s", fmt(pb["ok_rps"] / pm["ok_rps"]),
                       fmt(pb["p95_ms"] / pm["p95_ms"]), f"{pb['status_429'] / max(pb['requests'], 1):.0%}")
    out.print(ratios)
    if any(b["status_429"] for b in report["servers"]["bento"]["levels"]):
        out.print("* the Bento shed load with 429 (traffic max_concurrency is per service, split across the workers);"
                  " its p95 there includes the fast 429 answers, and closed-loop wrk resends at once")
    p = report["parity"]
    b, m = report["servers"]["bento"], report["servers"]["mlflow"]
    out.print(f"same top-10 from both servers: {p['identical']}/{p['compared']} requests; "
              f"ready after {b['ready_s']:.1f} s (bento) / {m['ready_s']:.1f} s (mlflow); "
              f"RSS {b['rss_mb']:.0f} / {m['rss_mb']:.0f} MB")
    out.print("baseline: mlflow models serve runs the same recsys runtime (Recommender.recommend_batch) through "
              "its pyfunc (not handicapped), ranking every request; the Bento serves the downloaded bundle "
              "(RECSYS_BUNDLE_DIR, no registry) and answers known users from its precomputed top-100; unknown "
              "users bring fresh profiles (no cache hits).")
    if pb:
        out.print(f"paced point: {report['method']['paced']}")
    for name in SERVERS:
        log = report["servers"][name]["log"]
        if log["tracebacks"] or log["status_5xx_lines"]:
            out.print(f"{name} log: {log['tracebacks']} tracebacks ({log['client_disconnects']} ClientDisconnect "
                      f"from wrk closing connections at the end of a level), {log['status_5xx_lines']} 5xx lines"
                      + (f"; e.g. {log['examples'][0]}" if log["examples"] else ""))
    out.print(f"wall time {report['wall_s']:.0f} s")


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
                        help="target rps of the paced point, 0 to skip (default 100)")
    parser.add_argument("--paced-connections", type=int, default=2,
                        help="connections of the paced point (default 2)")
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
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.connections, args.warmup = 5.0, [1, 8], min(args.warmup, 2.0)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if any("=" not in kv for kv in args.bento_env):
        parser.error("--bento-env takes KEY=VALUE")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
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
    for name in SERVERS:  # the raw wrk text stays in the JSON only
        for r in [*report["servers"][name]["levels"], report["servers"][name]["paced"]]:
            if r is not None:
                r["wrk_stdout"] = r["wrk_stdout"].strip().splitlines()
    args.json.write_text(json.dumps(report, indent=2))
    out.print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
