"""A real Prometheus for tests, through the library's runner (:mod:`recsys.monitoring.stack`, which ``make
monitoring`` and the soak benchmark use too): started on a free port with its data in a temporary dir, stopped after.

``with prometheus_server(config) as url:`` yields the base URL once ``/-/ready`` answers 200; ``config`` is the
configuration as data. The binary is ``$PATH``'s ``prometheus`` (Debian: ``apt-get install prometheus``);
``requires_prometheus`` skips a test without it. No deadline of its own: pytest-timeout bounds every wait.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from recsys.monitoring import stack
from tests.receivers import free_port

requires_prometheus = pytest.mark.skipif(not stack.has_binary("prometheus"),
                                         reason="no prometheus binary (apt-get install prometheus)")


@contextlib.contextmanager
def prometheus_server(config: Mapping[str, Any], port: int | None = None) -> Iterator[str]:
    """Run Prometheus with ``config`` and yield ``http://127.0.0.1:<port>`` once it is ready."""
    with tempfile.TemporaryDirectory(prefix="prometheus-") as tmp:
        daemon = stack.start_prometheus(config, Path(tmp), port or free_port())
        with stack.running(daemon):
            yield daemon.url


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    """The result of an instant query (a vector's samples); raises on a query error."""
    return stack.query(url, expr)


def wait_for_samples(url: str, metric: str, samples: int) -> None:
    """Poll until Prometheus holds at least ``samples`` samples of ``metric`` (i.e. that many scrapes)."""
    expr = f"max(count_over_time({metric}[1h]))"
    while not (result := instant(url, expr)) or float(result[0]["value"][1]) < samples:
        time.sleep(0.2)
