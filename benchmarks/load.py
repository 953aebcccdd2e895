"""The load a serving benchmark applies to one server, the same for every server it compares: a warm-up, then one
closed-loop wrk level per connection count (each with an open-loop latency probe beside it), then an open-loop
point at a fixed rate.

Closed loop (wrk) says how many answers per second a server gives and what each costs in CPU; it cannot say what
latency a request sees at a given load (a slow answer delays the next request: coordinated omission), so latencies
come from the open-loop client (benchmarks.harness.openloop): during each wrk level a probe of ``probe_rate``
requests/s, and the paced point, which sends the mix at exactly ``rate`` requests/s whatever the answers take.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.openloop import paced_level
from benchmarks.harness.processes import Server
from benchmarks.harness.report import err, fmt
from benchmarks.harness.wrk import wrk_level
from benchmarks.mix import body_factory


@dataclass(frozen=True)
class LoadPlan:
    connections: list[int]
    duration: float
    """Seconds per level (wrk and the paced point)."""
    warmup: float
    """Seconds of wrk at 8 connections before the levels (not measured)."""
    probe_rate: float
    """Requests/s of the open-loop probe during each wrk level (0: none)."""
    rate: float
    """Requests/s of the paced point (0: none)."""
    wrk_threads: int = 1
    seed: int = 7

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoadPlan:
        return cls(args.connections, args.duration, args.warmup, args.probe_rate, args.rate, args.wrk_threads,
                   args.seed)

    def describe(self) -> dict[str, Any]:
        return {"connections": self.connections, "duration_s": self.duration, "warmup_s": self.warmup,
                "probe_rate": self.probe_rate, "rate": self.rate, "wrk_threads": self.wrk_threads,
                "seed": self.seed}


def warm_up(server: Server, bodies: Path, body_format: str, plan: LoadPlan) -> None:
    if plan.warmup > 0:
        with err.status(f"{server.name}: warming up {plan.warmup:.0f} s …"):
            wrk_level(server, bodies, body_format, 8, plan.warmup, plan.wrk_threads, seed=plan.seed)


def closed_levels(server: Server, bodies: Path, body_format: str, mix: list[dict[str, Any]], plan: LoadPlan,
                  seed: int | None = None) -> list[dict[str, Any]]:
    """One wrk level per connection count, each with its probe; ``seed`` (default the plan's) seeds both, so
    two servers measured with the same seed get the same requests."""
    seed = plan.seed if seed is None else seed
    probe = body_factory(mix, body_format, seed + 50)
    levels = []
    for i, c in enumerate(plan.connections, start=1):
        with err.status(f"{server.name}: {c} connections for {plan.duration:.0f} s …"):
            r = wrk_level(server, bodies, body_format, c, plan.duration, plan.wrk_threads, seed=seed + i,
                          probe_body=probe, probe_rate=plan.probe_rate)
        levels.append(r)
        err.print(f"  {server.name} c={c}: {r['rps']:.0f} rps, probe p95 {fmt(r['p95_ms'], '.1f')} ms, "
                  f"non-2xx {r['non2xx']} (429: {r['status_429']}), {fmt(r['server_cpu_ms_per_request'])} CPU ms/req")
    return levels


def paced_point(server: Server, body_format: str, mix: list[dict[str, Any]], plan: LoadPlan,
                seed: int | None = None) -> dict[str, Any] | None:
    """The open-loop point at ``plan.rate`` requests/s (None when the rate is 0)."""
    if plan.rate <= 0:
        return None
    seed = plan.seed if seed is None else seed
    with err.status(f"{server.name}: open loop at {plan.rate:.0f} rps for {plan.duration:.0f} s …"):
        paced = paced_level(server, body_factory(mix, body_format, seed + 101), plan.rate, plan.duration)
    err.print(f"  {server.name} open loop @{plan.rate:g}/s: p50 {fmt(paced['p50_ms'], '.1f')} ms, "
              f"p95 {fmt(paced['p95_ms'], '.1f')} ms, p99 {fmt(paced['p99_ms'], '.1f')} ms, failed {paced['non2xx']}")
    return paced


def parse_connections(text: str) -> list[int]:
    """``--connections 1,8,32``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("connection counts must be >= 1")
    return values
