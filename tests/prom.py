"""A real Prometheus for tests: started from a config text on a free port, its data in a temporary dir, stopped after.

``with prometheus_server(config) as url:`` yields the base URL once ``/-/ready`` answers 200. The binary is
``$PATH``'s ``prometheus`` (Debian: ``apt-get install prometheus``); ``requires_prometheus`` skips a test without it.
No deadline of its own: pytest-timeout bounds every wait, and a Prometheus that exits while starting fails at once
with its log.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
requires_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary (apt-get install prometheus)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def prometheus_server(config_text: str, port: int | None = None, *, args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run ``prometheus`` with ``config_text`` as its config and yield ``http://127.0.0.1:<port>`` once it is ready.

    ``--web.enable-lifecycle`` is on (``POST /-/quit``, ``/-/reload``); ``args`` are further flags.
    """
    if PROMETHEUS is None:
        pytest.skip("no prometheus binary (apt-get install prometheus)")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(config_text, encoding="utf-8")
        log = (Path(tmp) / "prometheus.log").open("w+", encoding="utf-8")
        cmd = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={Path(tmp) / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn", *args]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not _ready(url):
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{log.read()[-3000:]}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    """The result of an instant query (a vector's samples); raises on a query error."""
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for_samples(url: str, metric: str, samples: int) -> None:
    """Poll until Prometheus holds at least ``samples`` samples of ``metric`` (i.e. that many scrapes)."""
    expr = f"max(count_over_time({metric}[1h]))"
    while not (result := instant(url, expr)) or float(result[0]["value"][1]) < samples:
        time.sleep(0.2)
