"""A server under test as a child process tree: start it on a free loopback port, wait until it answers, read the
CPU seconds and memory of the whole tree, stop every process of it, and scan its log afterwards.

Why the whole tree: a Bento is an arbiter and its workers, and BentoML starts each worker in a session of its own,
so signalling the arbiter's process group leaves workers behind, and the arbiter's own CPU is a small part of what
serving costs. :class:`Server` remembers every pid it has seen in the tree (workers keep theirs while it runs), so
CPU readings before and after a level cover the same processes, and :func:`stop` signals each of them (only pids
this process started, never by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_of(proc: psutil.Process) -> float:
    """User + system CPU seconds of one process (0 once it has gone)."""
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except psutil.NoSuchProcess:
        return 0.0


@dataclass
class Server:
    """A started server: its root process, where it listens, which route takes the load and which answers 200
    once it is ready, and its log file. ``kind`` tells the benchmark what it is (e.g. ``bento``, ``mlflow``)."""

    name: str
    kind: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    ready_path: str
    route: str = "/"
    started: float = field(default_factory=time.time)
    ready_s: float = 0.0
    tree: list[psutil.Process] = field(default_factory=list)

    def processes(self) -> list[psutil.Process]:
        """The live processes of the tree, including every one seen before (cached: pids stay while it runs)."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        known = {p.pid for p in self.tree}
        self.tree.extend(p for p in procs if p.pid not in known)
        return [p for p in self.tree if p.is_running()]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the whole tree so far."""
        return sum(cpu_of(p) for p in self.processes())

    def rss_mb(self) -> float:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / 2**20

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_server(name: str, kind: str, cmd: Sequence[str], *, port: int, cwd: Path, env: Mapping[str, str],
                 log: Path, ready_path: str, route: str = "/") -> Server:
    """Start ``cmd`` (which must listen on ``port``) in a new session, its output into ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdout=fh, stderr=subprocess.STDOUT,  # nosec B603: argv of the servers the benchmark itself starts, no shell
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Server(name, kind, proc, f"http://127.0.0.1:{port}", log, ready_path, route)


def wait_ready(server: Server, timeout: float = 180.0) -> float:
    """Seconds from the start until ``GET ready_path`` answers 200 (RuntimeError with the log's tail when the
    server exits or stays unready)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + server.ready_path, timeout=2) as resp:  # nosec B310: http URL of a server this harness started
                if resp.status == 200:
                    server.ready_s = time.time() - server.started
                    return server.ready_s
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready within {timeout:.0f} s:\n{server.log_tail()}")


def stop(server: Server, grace: float = 10.0) -> None:
    """SIGTERM the server's session and every process of its tree, SIGKILL what is left after ``grace``."""
    procs = server.processes()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace)
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


@contextlib.contextmanager
def running(server: Server, timeout: float = 180.0) -> Iterator[Server]:
    """The server once it is ready; stopped (the whole tree) when the block ends, however it ends."""
    try:
        wait_ready(server, timeout)
        yield server
    finally:
        stop(server)


def post_json(url: str, body: Any, headers: Mapping[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON answer) of one POST; for an HTTP error, its status and the first 300 characters."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310: http URL of a server this harness started
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:300]


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec B310: http URL of a server this harness started
        return json.loads(resp.read())


def scan_log(log: Path) -> dict[str, Any]:
    """5xx and tracebacks in a server's log. ``ClientDisconnect`` tracebacks (uvicorn/starlette reading the body of
    a request whose connection the load generator closed at the end of a level) are counted apart."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {"tracebacks": 0, "client_disconnects": 0, "status_5xx_lines": 0, "examples": []}
    fivexx = [ln for ln in lines if re.search(r"status=5\d\d|\" 5\d\d ", ln)]
    examples = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b", ln)
                and "ClientDisconnect" not in ln][:5] + fivexx[:5]
    return {"tracebacks": sum("Traceback (most recent call last)" in ln for ln in lines),
            "client_disconnects": sum(ln.startswith("starlette.requests.ClientDisconnect") for ln in lines),
            "status_5xx_lines": len(fivexx), "examples": examples}
