"""Offline quality of every candidate generator and the two-stage ranker, under both protocols in one run, and
the ablations behind the ranker's design.

    python -m benchmarks.offline_quality [--json PATH] [--cuts 12,16,20] [--quick] [--config FILE] [--no-ablation]

Protocols (docs/protocols.md): (a) the rolling-origin temporal backtest over every cut week of the config,
pooled per (cut, user), reported apart for the design cuts and the report cuts (the headline), for all users and
the warm, cold and long-tail slices; (b) RecBole's random 80/10/10 split, beside RecBole's published BPR. Each
table is model × metric@10 with the ranker's gain over the best single generator and its user-clustered paired
bootstrap 95 % CI. Then, on the design cuts only: the ranker without each feature group and with other LightGBM
settings or candidate counts (``recsys.evaluation.ablation``), each against the full ranker with its CI, and the
candidate union's recall@K. The JSON holds all of it, plus wall time and peak memory. Data are fetched (cached)
if missing.
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

import pandas as pd

from benchmarks.harness.report import arg_parser, machine, peak_rss_mb, write_json
from recsys.cli.common import REPORTER
from recsys.cli.evaluate import parse_cuts
from recsys.config import TrainConfig
from recsys.data.fetch import DataUnavailableError
from recsys.evaluation.ablation import Variant, ablation, ablation_table, recall_table
from recsys.evaluation.report import json_safe
from recsys.features.builder import FEATURE_GROUPS
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
    parser.add_argument("--no-ablation", dest="ablation", action="store_false",
                        help="skip the ablations on the design cuts")
    parser.add_argument("--seeds", default="0,1,2",
                        help="LightGBM seeds each ablation variant is trained with, its NDCG the mean (default 0,1,2)")
    return parser.parse_args(argv)


def ablation_variants(cfg: TrainConfig) -> dict[str, Variant]:
    """Leave each feature group out; other objectives, truncation levels, labels and candidate counts."""
    variants = {f"without {group}": Variant(drop=(group,)) for group in [*FEATURE_GROUPS, "generators"]}
    objective = "rank_xendcg" if cfg.ranker.objective == "lambdarank" else "lambdarank"
    variants[f"objective {objective}"] = Variant(ranker={"objective": objective})
    for level in (10, 50):
        if level != cfg.ranker.truncation_level:
            variants[f"truncation level {level}"] = Variant(ranker={"truncation_level": level})
    if cfg.ranker.graded_labels:
        variants["binary labels"] = Variant(binary=True)
    for count in (25, 50):
        if count < cfg.candidates.per_generator:
            variants[f"{count} candidates per generator"] = Variant(per_generator=count)
    return variants


def run_ablation(cfg: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    """The ablation and candidate recall tables on the design cuts (JSON rows and markdown)."""
    from recsys.stages.inputs import load_training_data

    settings = load(Settings).model_copy(update={"training_source": "raw"})
    data = load_training_data(settings)
    cuts = cfg.backtest.design_cuts()[-1:] if args.quick else cfg.backtest.design_cuts()
    t0 = time.perf_counter()
    with REPORTER.progress("ablation (design cuts)", "cuts") as track:
        result = ablation(data.ml, data.clock, cuts, cfg, ablation_variants(cfg), progress=track,
                          seeds=tuple(int(x) for x in args.seeds.split(",")))
    table = ablation_table(result.per_user, args.resamples)
    recall = recall_table(result.recall)
    return {"cuts": cuts, "seeds": args.seeds, "seconds": round(time.perf_counter() - t0, 1),
            "table": [{k: json_safe(v) for k, v in row.items()} for row in table.to_dict("records")],
            "recall": recall.to_dict("records"),
            "markdown": ablation_markdown(table, recall, cuts, args.seeds)}


def ablation_markdown(table: pd.DataFrame, recall: pd.DataFrame, cuts: list[int], seeds: str) -> str:
    def cell(row: pd.Series) -> str:
        if pd.isna(row.get("gain")):
            return f"{row['ndcg@10']:.4f}"
        return f"{row['gain']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"

    wide = {s: table[table["slice"] == s].set_index("variant") for s in ("all", "warm", "cold")}
    lines = [f"## Ablations on the design cuts ({cuts[0]}..{cuts[-1]})", "",
             "Full ranker's NDCG@10 minus the variant's (a positive gain: what the variant removes pays), with the "
             "user-clustered 95 % CI; every variant trained with LightGBM seeds " + str(seeds) + ", a user's NDCG the "
             "mean over them.", "",
             "| variant | NDCG@10 | gain, all users | warm users | cold-start users |", "|---|---:|---|---|---|"]
    for variant in wide["all"].sort_values("gain", ascending=False, na_position="first").index:
        row = wide["all"].loc[variant]
        lines.append(f"| {variant} | {row['ndcg@10']:.4f} | {cell(row)} | "
                     f"{cell(wide['warm'].loc[variant]) if variant in wide['warm'].index else '–'} | "
                     f"{cell(wide['cold'].loc[variant]) if variant in wide['cold'].index else '–'} |")
    lines += ["", "Candidate union's recall (share of test positives among the union of each generator's top K) "
              "and mean union size:", "", "| K per generator | recall, all | warm | cold | union size |",
              "|---:|---:|---:|---:|---:|"]
    by = {s: recall[recall["slice"] == s].set_index("k") for s in ("all", "warm", "cold")}
    for k in by["all"].index:
        lines.append(f"| {k} | {by['all'].loc[k, 'recall']:.4f} | {by['warm'].loc[k, 'recall']:.4f} | "
                     f"{by['cold'].loc[k, 'recall']:.4f} | {by['all'].loc[k, 'candidates']:.0f} |")
    return "\n".join(lines)


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
    ablations = run_ablation(cfg, args) if args.ablation else None
    wall = time.perf_counter() - t0
    quick = ", QUICK run: not the benchmark's numbers" if args.quick else ""
    backtest = seconds.get("temporal_backtest", seconds.get("temporal_design", 0.0))
    ablation_s = f", ablations {ablations['seconds']:.0f} s" if ablations else ""
    header = (f"# Offline quality on MovieLens-100K (data {result.data_hash}{quick})\n\n"
              f"wall {wall:.0f} s (backtest {backtest:.0f} s, RecBole {seconds['recbole']:.0f} s{ablation_s}), "
              f"peak memory {peak_rss_mb():.0f} MB, {os.cpu_count()} CPU(s)")
    return {
        "benchmark": "offline_quality",
        "started_at": started,
        "quick": bool(args.quick),
        "data_hash": result.data_hash,
        "cuts": result.cuts,
        "config": cfg.model_dump(mode="json"),
        "protocols": protocols,
        "ablations": ablations,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine": machine(),
        "markdown": "\n\n".join([header, *(p.markdown for p in result.protocols.values()),
                                  *([ablations["markdown"]] if ablations else [])]),
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
