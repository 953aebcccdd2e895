"""What every benchmark starts from and ends with: its command line, consoles for tables (stdout) and progress
(stderr), number formatting, ratios and percentiles, the facts about the machine a figure was measured on, and the
JSON file the figures go to (``bench-results/NAME.json`` by default, git-ignored)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

RESULTS = Path("bench-results")

out = Console(highlight=False, width=120)
"""Tables and results (stdout)."""
err = Console(stderr=True, highlight=False)
"""Progress and errors (stderr)."""


def arg_parser(doc: str | None, name: str, quick: str) -> argparse.ArgumentParser:
    """The command line every benchmark shares: its docstring's first paragraph as description, ``--json`` (default
    ``bench-results/<name>.json``) and ``--quick`` (``quick`` says what that smoke run does; its figures are not
    the benchmark's)."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}",
                                     description=doc.split("\n\n")[0] if doc else None)
    default = RESULTS / f"{name}.json"
    parser.add_argument("--json", type=Path, default=default, help=f"results file (default {default})")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {quick}")
    return parser


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the report (indented JSON) and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    out.print(f"results: {path}")


def fmt(x: float | None, spec: str = ".2f") -> str:
    """A number for a table cell; ``–`` when there is none."""
    return "–" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def percentiles(values: Iterable[float], qs: Iterable[float] = (50, 95, 99)) -> dict[str, float | int | None]:
    """``n``, ``pQ`` for each ``q`` (numpy's linear interpolation), ``min`` and ``max`` (None when empty)."""
    arr = np.asarray(list(values), dtype=float)
    stats: dict[str, float | int | None] = {"n": len(arr)}
    for q in qs:
        stats[f"p{q:g}".replace(".", "")] = float(np.percentile(arr, q)) if len(arr) else None
    stats["min"] = float(arr.min()) if len(arr) else None
    stats["max"] = float(arr.max()) if len(arr) else None
    return stats


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss: KiB on Linux, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def machine(**extra: Any) -> dict[str, Any]:
    """Python, platform, CPUs (count and model), memory and the load average now, plus ``extra``."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                          if ln.startswith("model name")), "")
    memory_gb = None
    with contextlib.suppress(OSError, ValueError):
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "cpu_model": cpu_model, "memory_gb": memory_gb, "loadavg": os.getloadavg(), **extra}


def cli_main(parse_args: Any, run: Any, print_report: Any) -> Any:
    """The ``main`` of a benchmark: parse the arguments, run, print the tables, write the JSON; returns 0."""

    def main(argv: list[str] | None = None) -> int:
        args = parse_args(argv)
        report = run(args)
        print_report(report)
        write_json(args.json, report)
        return 0

    return main
