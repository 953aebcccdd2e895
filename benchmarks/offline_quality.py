"""Offline quality of every candidate generator and the two-stage ranker, under both protocols in one run.

    python -m benchmarks.offline_quality [--json PATH] [--cuts 12,16,20] [--quick] [--config FILE]

Protocols (docs/protocols.md): (a) the rolling-origin temporal backtest over every cut week of the
config, pooled per (cut, user), reported for all users and the warm, cold and long-tail slices; (b) RecBole's
random 80/10/10 split, beside RecBole's published BPR. Each table is model × metric@10 with the ranker's gain
over the best single generator and its paired-bootstrap 95 % CI. The JSON holds, per protocol, every model's
metrics per slice, fit seconds and the gains, plus wall time and peak memory. Data are fetched (cached) if
missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from recsys.runtime import quiet_threads

quiet_threads()  # before numpy and LightGBM load (see recsys.runtime)

from benchmarks.harness.report import arg_parser, machine, peak_rss_mb, write_json
from recsys.cli.common import REPORTER
from recsys.cli.evaluate import parse_cuts
from recsys.data.fetch import DataUnavailableError
from recsys.settings import Settings, load
from recsys.stages.base import StageError
from recsys.stages.data import fetch
from recsys.stages.evaluate import EvaluateParams, evaluate
from recsys.stages.inputs import load_train_config

QUICK_CUTS = [20, 28]
"""--quick: two cuts instead of every one (a smoke run; its numbers are not the benchmark's)."""
REFERENCE = {"model": "BPR", "source": "RecBole's published ML-100K results (same 80/10/10 protocol)",
             "ndcg@10": [0.28, 0.29], "recall@10": [0.24, 0.25]}

err = Console(stderr=True, highlight=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "offline_quality", f"backtest cuts {QUICK_CUTS} only")
    parser.add_argument("--cuts", help="backtest cut weeks, comma-separated (default: all of the config)")
    parser.add_argument("--config", type=Path, help="JSON file with TrainConfig fields")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluate stage on the whole raw download (both protocols), with the machine's figures around it."""
    t0, started = time.perf_counter(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    settings = load(Settings).model_copy(update={"training_source": "raw"})
    cfg = load_train_config(settings, args.config)
    fetch(settings)
    cuts = parse_cuts(args.cuts) or (QUICK_CUTS if args.quick else cfg.backtest.cuts())
    result = evaluate(settings, EvaluateParams(protocol="both", cuts=cuts, config=cfg, n_resamples=args.resamples),
                      reporter=REPORTER)
    protocols = {name: {**p.summary, "wall_seconds": p.seconds} for name, p in result.protocols.items()}
    protocols["recbole"]["reference"] = REFERENCE
    seconds = {name: p.seconds for name, p in result.protocols.items()}
    wall = time.perf_counter() - t0
    quick = ", QUICK run: not the benchmark's numbers" if args.quick else ""
    header = (f"# Offline quality on MovieLens-100K (data {result.data_hash}{quick})\n\n"
              f"wall {wall:.0f} s (backtest {seconds['temporal_backtest']:.0f} s, RecBole "
              f"{seconds['recbole']:.0f} s), peak memory {peak_rss_mb():.0f} MB, {os.cpu_count()} CPU(s)")
    return {
        "benchmark": "offline_quality",
        "started_at": started,
        "quick": bool(args.quick),
        "data_hash": result.data_hash,
        "cuts": result.cuts,
        "config": cfg.model_dump(mode="json"),
        "protocols": protocols,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine": machine(),
        "markdown": "\n\n".join([header, *(p.markdown for p in result.protocols.values())]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (StageError, DataUnavailableError, ValueError) as exc:  # SettingsError is a ValueError
        err.print(Text(f"error: {exc}", style="bold red"), soft_wrap=True)
        return 1
    print(report["markdown"] + "\n")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
