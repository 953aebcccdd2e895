"""The pipeline on synthetic MovieLens at growing sizes: wall time and peak memory of every stage, and growth factors.

    python -m benchmarks.scale [--sizes 1000000,5000000,25000000] [--config configs/scale.yaml]
                               [--workers 1,2] [--work DIR] [--json PATH] [--quick]

For each size N, in a fresh data dir under ``--work``: ``recsys data synth --interactions N``, ``recsys data replay
--all`` (the weekly batches), ``recsys validate --all`` (Great Expectations into the store) and ``recsys train
--as-of-week 28`` with ``--config`` (the bounded generators a large catalog needs; docs/scaling.md), each the real
command in its own process. Peak memory is the process tree's resident set (sampled every 0.2 s, Dask workers
included); training's own steps (candidates, features, ranker, ...) come from its ``stage_seconds``. The growth
exponent of a stage between two sizes is log(cost ratio) / log(size ratio): 1.0 is linear in interactions.
``--workers`` trains the largest size again with ``ranker.engine: dask`` on that many LocalCluster workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from recsys.runtime import prepare_process

prepare_process()

import psutil
import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RECSYS = [str(Path(sys.executable).with_name("recsys"))]
STAGES = ("synth", "replay", "validate", "train")
TRAIN_STEPS = ("tuning", "generators_fit", "features_fit", "candidates", "features", "ranker", "final_fit", "holdout",
               "reference", "answers", "save", "log")


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def run_stage(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run one command; its wall seconds, peak tree RSS (MB) and ``--json`` output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*RECSYS, *args, "--json"], cwd=cwd, env=env,  # nosec B603: the venv's recsys, argv from this module, no shell
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    root = psutil.Process(proc.pid)

    def sample() -> None:
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], tree_rss(root))
            except psutil.Error:
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"`recsys {' '.join(args)}` failed ({proc.returncode}): {err.strip()[-2000:]}")
    try:
        result = json.loads(out)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"`recsys {' '.join(args)} --json` printed more than its JSON result: {out[:500]!r}") from exc
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_mb": round(peak[0] / 2**20, 1), "result": result}


def train_config(config: Path, overrides: dict[str, Any], out: Path) -> Path:
    doc = yaml.safe_load(config.read_text()) or {}
    for section, values in overrides.items():
        doc.setdefault(section, {}).update(values)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def one_size(n: int, work: Path, config: Path, engines: list[dict[str, Any]]) -> dict[str, Any]:
    data_dir, var_dir = work / f"n{n}" / "data", work / f"n{n}" / "var"
    env = {**os.environ, "RECSYS_DATA_DIR": str(data_dir), "RECSYS_VAR_DIR": str(var_dir),
           "RECSYS_PARAMS_FILE": str(config), "PYTHONPATH": str(ROOT)}
    row: dict[str, Any] = {"interactions": n, "stages": {}}
    synth = run_stage(["data", "synth", "--interactions", str(n), "--out", str(data_dir)],
                      {**env, "RECSYS_DATA_DIR": str(ROOT / "data")}, work)
    row["users"], row["items"] = synth["result"]["users"], synth["result"]["items"]
    row["stages"]["synth"] = {k: synth[k] for k in ("seconds", "peak_mb")}
    for name, args in (("replay", ["data", "replay", "--all"]), ("validate", ["validate", "--all"])):
        done = run_stage(args, env, work)
        row["stages"][name] = {k: done[k] for k in ("seconds", "peak_mb")}
    row["train"] = []
    for engine in engines:
        cfg = train_config(config, {"ranker": engine}, work / f"n{n}" / "train.yaml")
        done = run_stage(["train", "--as-of-week", "28", "--config", str(cfg), "--out",
                          str(work / f"n{n}" / "model")], env, work)
        result = done["result"]
        ndcg = (result.get("holdout") or {}).get("metrics", {}).get("all", {}).get("ranker", {}).get("ndcg@10")
        row["train"].append({"engine": engine, "seconds": done["seconds"], "peak_mb": done["peak_mb"],
                             "steps": result.get("stage_seconds") or {}, "ndcg@10": ndcg,
                             "best_iteration": result.get("best_iteration")})
    row["stages"]["train"] = {k: row["train"][0][k] for k in ("seconds", "peak_mb")}
    return row


def exponent(a: float, b: float, n_a: int, n_b: int) -> float | None:
    if a <= 0 or b <= 0:
        return None
    return round(math.log(b / a) / math.log(n_b / n_a), 2)


def growth(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Growth exponent of each stage's time and memory (and training's steps) from the first size to the last."""
    if len(rows) < 2:
        return {}
    first, last = rows[0], rows[-1]
    n0, n1 = first["interactions"], last["interactions"]
    out: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        a, b = first["stages"][stage], last["stages"][stage]
        out[stage] = {"time": exponent(a["seconds"], b["seconds"], n0, n1),
                      "memory": exponent(a["peak_mb"], b["peak_mb"], n0, n1)}
    for step in TRAIN_STEPS:
        a_s, b_s = first["train"][0]["steps"].get(step), last["train"][0]["steps"].get(step)
        if a_s is not None and b_s is not None:
            out[f"train.{step}"] = {"time": exponent(a_s, b_s, n0, n1), "memory": None}
    return out


def write(path: Path, config: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    doc = {"config": str(config), "cores": os.cpu_count(), "sizes": rows, "growth": growth(rows)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return doc


def render(doc: dict[str, Any]) -> None:
    console = Console(width=200)
    rows = doc["sizes"]
    table = Table("stage", *[f"{r['interactions']:,} ({r['users']:,} users, {r['items']:,} items)" for r in rows],
                  "time exponent", "memory exponent", title="wall seconds / peak MB per stage (2 cores)")
    grow = doc["growth"]
    for stage in STAGES:
        table.add_row(stage, *[f"{r['stages'][stage]['seconds']:.1f} s / {r['stages'][stage]['peak_mb']:,.0f} MB"
                               for r in rows],
                      str(grow.get(stage, {}).get("time", "–")), str(grow.get(stage, {}).get("memory", "–")))
    for step in TRAIN_STEPS:
        cells = [f"{r['train'][0]['steps'][step]:.1f} s" if step in r["train"][0]["steps"] else "–" for r in rows]
        table.add_row(f"  train: {step}", *cells, str(grow.get(f"train.{step}", {}).get("time", "–")), "")
    console.print(table)
    engines = Table("interactions", "engine", "seconds", "peak MB", "ranker s", "NDCG@10 held out",
                    title="the same training on each engine")
    for r in rows:
        for t in r["train"]:
            engine = t["engine"].get("engine", "local")
            label = engine if engine == "local" else f"dask, {t['engine'].get('dask_workers')} worker(s)"
            engines.add_row(f"{r['interactions']:,}", label, f"{t['seconds']:.1f}", f"{t['peak_mb']:,.0f}",
                            f"{t['steps'].get('ranker', float('nan')):.1f}",
                            "–" if t["ndcg@10"] is None else f"{t['ndcg@10']:.4f}")
    console.print(engines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000,25000000")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "scale.yaml")
    parser.add_argument("--workers", default="1,2", help="Dask workers to train the largest size with ('' none)")
    parser.add_argument("--work", type=Path, default=None, help="where the data sets go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data sets")
    parser.add_argument("--json", type=Path, default=Path("bench-results/scale.json"))
    parser.add_argument("--quick", action="store_true", help="100k and 200k interactions, 1 Dask worker: a smoke run")
    args = parser.parse_args()
    sizes = [100_000, 200_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    workers = [1] if args.quick else [int(w) for w in args.workers.split(",") if w]
    work = args.work or Path(tempfile.mkdtemp(prefix="recsys-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for i, n in enumerate(sizes):
            engines: list[dict[str, Any]] = [{"engine": "local"}]
            if i == len(sizes) - 1:
                engines += [{"engine": "dask", "dask_workers": w} for w in workers]
            rows.append(one_size(n, work, args.config.resolve(), engines))
            write(args.json, args.config, rows)  # what is measured so far survives a later failure
            print(f"{n:,}: " + ", ".join(f"{s} {rows[-1]['stages'][s]['seconds']:.0f} s" for s in STAGES),
                  flush=True)
            if not args.keep:
                shutil.rmtree(work / f"n{n}" / "data", ignore_errors=True)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    render(write(args.json, args.config, rows))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
