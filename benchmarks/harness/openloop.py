"""Open-loop HTTP load with per-request latencies: the client, a paced level of a server under test, and the
latency probe that runs beside a closed-loop wrk level (benchmarks.serving, benchmarks.swap).

One asyncio loop (uvloop, aiohttp with a keep-alive pool) sends a request every ``1/rate`` seconds on a fixed
schedule, whatever the answers take, so a slow answer delays no later request (no coordinated omission). Each
latency runs from the send to the whole answer read; how late each send was against its schedule is reported
apart (``send_late_p99_ms``: the generator's own lag, near zero unless the machine starves it). At most
``max_in_flight`` requests are outstanding; a request due beyond that is not sent and counts as failed (status
-1: the server fell behind). At a few hundred requests per second it needs a fraction of a core, so it can
share a 2-core machine with the server it measures.

Why not wrk's latencies: on this machine wrk 4.1's latency histogram contradicts its own request count for fast
answers (at 1 connection it reported a 6 ms mean latency while completing 1,650 sequential requests per second,
i.e. 0.6 ms each; a plain keep-alive client measured p99 1.1 ms on the same server), so benchmarks/serving.py
takes throughput from wrk and latencies from this (:func:`probe`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import uvloop

from benchmarks.harness.processes import Server


@dataclass
class Sample:
    t: float
    """When the request was due (``time.perf_counter()``)."""
    status: int
    """HTTP status; 0 for a connection error or timeout, -1 when not sent (too many in flight)."""
    latency_s: float | None = None
    payload: Any = None
    """What ``keep`` took from a 200 answer's JSON (e.g. the model version)."""
    late_s: float = 0.0
    """How long after its due time the request was sent (the generator's own lag; small unless it is starved)."""


@dataclass
class OpenLoop:
    base_url: str
    path: str
    body: Callable[[], dict[str, Any]]
    """Called once per request for its JSON body."""
    rate: float
    keep: Callable[[dict[str, Any]], Any] | None = None
    max_in_flight: int = 256
    timeout_s: float = 10.0
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, duration_s: float | None = None) -> list[Sample]:
        """Send until ``stop`` is set (or for ``duration_s``); returns the samples (also kept in ``samples``)."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # uvloop: less client overhead
            runner.run(self._run(duration_s))
        return self.samples

    def start(self) -> threading.Thread:
        """Run in a daemon thread until :attr:`stop` is set."""
        thread = threading.Thread(target=self.run, name="open-loop", daemon=True)
        thread.start()
        return thread

    async def _run(self, duration_s: float | None) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        in_flight: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(self.base_url, connector=connector, timeout=timeout) as session:

            async def one(body: dict[str, Any], due: float) -> None:
                sent = time.perf_counter()
                try:
                    async with session.post(self.path, json=body) as resp:
                        payload: Any = await resp.json(content_type=None) if resp.status == 200 else await resp.read()
                        latency = time.perf_counter() - sent
                        kept = self.keep(payload) if self.keep is not None and resp.status == 200 else None
                        self.samples.append(Sample(due, resp.status, latency, kept, sent - due))
                except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
                    self.samples.append(Sample(due, 0, None, None, sent - due))

            interval = 1.0 / self.rate
            start = next_at = time.perf_counter()
            while not self.stop.is_set() and (duration_s is None or next_at - start < duration_s):
                if len(in_flight) >= self.max_in_flight:
                    self.samples.append(Sample(next_at, -1))
                else:
                    task = asyncio.create_task(one(self.body(), next_at))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if in_flight:
                await asyncio.wait(in_flight, timeout=self.timeout_s + 5)


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Counts, achieved rate and latency percentiles (ms) of the answered requests."""
    answered = [s.latency_s * 1000 for s in samples if s.latency_s is not None]
    span = samples[-1].t - samples[0].t if len(samples) > 1 else 0.0
    pct = {f"p{q:g}".replace(".", ""): (float(np.percentile(answered, q)) if answered else None)
           for q in (50, 90, 95, 99, 99.9)}
    return {"requests": len(samples), "ok": sum(s.status == 200 for s in samples),
            "status_429": sum(s.status == 429 for s in samples),
            "failed": sum(s.status != 200 for s in samples),
            "achieved_rps": len(samples) / span if span else None,
            **{f"{k}_ms": v for k, v in pct.items()},
            "mean_ms": float(np.mean(answered)) if answered else None,
            "max_ms": max(answered) if answered else None,
            "send_late_p99_ms": float(np.percentile([s.late_s * 1000 for s in samples], 99)) if samples else None}


def latency_fields(summary: dict[str, Any] | None) -> dict[str, Any]:
    """A level's latency columns (ms) from an open-loop summary; all None when nothing was probed."""
    keys = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")
    if summary is None:
        return {k: None for k in keys} | {"probe": None}
    return {k: summary[k] for k in keys} | {"probe": summary}


@contextmanager
def probe(server: Server, body: Callable[[], dict[str, Any]] | None, rate: float,
          duration: float) -> Iterator[Callable[[], dict[str, Any] | None]]:
    """An open-loop probe of ``rate`` requests/s to ``server`` while the block runs another load for ``duration``
    seconds; it skips that load's first and last half second (connections opening and closing). Yields a function
    giving the probe's summary (None without ``body`` or with rate 0) once the block is done."""
    if body is None or rate <= 0:
        yield lambda: None
        return
    loop = OpenLoop(server.url, server.route, body, rate)

    def run() -> None:
        time.sleep(0.5)
        loop.run(max(0.5, duration - 1.0))

    thread = threading.Thread(target=run, name="open-loop-probe", daemon=True)
    thread.start()
    try:
        yield lambda: summarize(loop.samples) if loop.samples else None
    finally:
        thread.join(timeout=duration + 30)


def paced_level(server: Server, body: Callable[[], dict[str, Any]], rate: float, duration: float) -> dict[str, Any]:
    """``rate`` requests/s on a fixed schedule for ``duration`` seconds: latencies from the schedule (no
    coordinated omission), status counts, and the server tree's CPU per request and per 2xx over the window."""
    cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
    summary = summarize(OpenLoop(server.url, server.route, body, rate).run(duration))
    wall, cpu = time.perf_counter() - wall0, server.cpu_seconds() - cpu0
    requests, ok = summary["requests"], summary["ok"]
    return {"server": server.name, "connections": "open", "paced": True, "target_rps": rate, "duration_s": wall,
            "requests": requests, "ok": ok, "rps": summary["achieved_rps"], "ok_rps": ok / wall,
            **latency_fields(summary), "non2xx": summary["failed"], "status_429": summary["status_429"],
            "errors": summary["failed"] - summary["status_429"], "server_cpu_s": cpu,
            "server_cpu_ms_per_request": 1000 * cpu / requests if requests else None,
            "server_cpu_ms_per_2xx": 1000 * cpu / ok if ok else None, "server_cpu_cores": cpu / wall}
