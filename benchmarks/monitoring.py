"""`recsys drift` end to end, in a fresh process, on traffic logs of different sizes side by side.

    python -m benchmarks.monitoring [--json PATH] [--quick] [--bundle DIR] [--sizes 10000,100000] [--rounds 3]

Set-up in a temporary folder: the bundle (``--bundle``, default ``var/models/week=28``; one saved without a drift
reference gets one built from its own training weeks, as ``recsys train`` now does) and, per size N, a traffic log
of N rows: the served rows (:func:`recsys.monitoring.reference.served_rows`) of the first N/10 rating events after
the bundle's cut, one request per event as the replay sends them, in the log's JSON-lines format. Each round runs
``recsys drift --bundle B --traffic-dir T --since FIRST --until LAST --json`` once per size (the order alternates
between rounds), so the whole log is the window, with params.yaml's drift section except ``min_rows`` and
``min_users`` at 1 (a small log is still compared: the full path is what is timed). It reports the process's wall
time, the stage's own seconds and its phases (reading the window; the Evidently comparison, its import included;
writing the HTML and JSON), against the target "100k logged rows in <= 10 s". ``recsys drift --help``
(interpreter and CLI start) and ``import evidently`` alone, each in a fresh process, give the fixed costs; the stage
called in this process after a first call (Evidently imported once, as a long-running monitor would) gives the
warm figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from recsys.runtime import prepare_process

prepare_process()  # before numpy loads: thread pools, telemetry off (see recsys.runtime)

import numpy as np
import pandas as pd

from benchmarks.harness.report import arg_parser, err, fmt, machine, out, write_json
from recsys import schema as S
from recsys.monitoring.reference import REFERENCE_FILE, build_reference, served_rows
from recsys.monitoring.sample import REQUEST
from recsys.monitoring.window import write_traffic
from recsys.params import update_params
from recsys.ranking.recommender import Recommender
from recsys.settings import Settings
from recsys.stages.inputs import load_raw

ROOT = Path(__file__).resolve().parents[1]
RECSYS = Path(sys.executable).with_name("recsys")
TARGET_SECONDS = 10.0
EVIDENTLY_IMPORT = "import time; t = time.perf_counter(); import evidently.presets, evidently.metrics; " \
                   "print(time.perf_counter() - t)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "monitoring", "sizes 1000 and 5000 rows, one round")
    parser.add_argument("--bundle", type=Path, default=ROOT / "var" / "models" / "week=28",
                        help="the bundle checked (default var/models/week=28)")
    parser.add_argument("--sizes", default="10000,100000", help="logged rows per log, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="runs per size (default 3)")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.quick:
        args.sizes, args.rounds = [1000, 5000], 1
    return args


def prepare_bundle(source: Path, root: Path, settings: Settings) -> tuple[Path, Recommender]:
    """``source`` when it keeps a reference; else a copy with the reference ``recsys train`` would build."""
    from recsys.data.replay import interactions_before

    rec = Recommender.load(source)
    if (source / REFERENCE_FILE).exists():
        return source, rec
    err.print(f"{source} has no drift reference: building one into a copy")
    ml, clock = load_raw(settings)
    week = int(rec.manifest["as_of_week"])
    reference = build_reference(rec, interactions_before(ml.interactions, clock, week), ml.users,
                                clock.start(week - 4), clock.start(week))
    bundle = root / "bundle"
    rec.save(bundle, frames={REFERENCE_FILE: reference})
    return bundle, rec


def write_log(rec: Recommender, settings: Settings, rows: int, folder: Path) -> tuple[str, str, int]:
    """A traffic log of ``rows`` rows (served rows of the events after the cut); the window covering it."""
    ml, clock = load_raw(settings)
    cut = clock.start(int(rec.manifest["as_of_week"]))
    events = ml.interactions[ml.interactions[S.TS] >= cut].sort_values([S.TS, S.USER, S.ITEM], kind="stable")
    events = events.head(-(-rows // 10))
    if len(events) * 10 < rows:
        raise ValueError(f"only {len(events) * 10} rows of traffic after the cut: use smaller --sizes")
    requests = pd.DataFrame({REQUEST: [f"b{i:09d}" for i in range(len(events))],
                             S.USER: events[S.USER].to_numpy(np.int64), S.TS: events[S.TS].to_numpy(np.int64)})
    served = served_rows(rec, requests, ml.users).head(rows)
    write_traffic(served, folder, rec.feature_names)
    first = pd.Timestamp(served["ts"].min()).isoformat()
    last = (pd.Timestamp(served["ts"].max()) + pd.Timedelta(seconds=1)).isoformat()
    return first, last, len(served)


def params_file(settings: Settings, root: Path) -> Path:
    """params.yaml's drift section with every window compared (``min_rows`` and ``min_users`` 1)."""
    from recsys.stages.inputs import load_drift_config

    config = load_drift_config(settings).model_copy(update={"min_rows": 1, "min_users": 1})
    path = root / "params.yaml"
    update_params(path, {"drift": config.model_dump()})
    return path


def run_drift(bundle: Path, traffic: Path, since: str, until: str, out_dir: Path, params: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run([str(RECSYS), "drift", "--bundle", str(bundle), "--traffic-dir", str(traffic), "--since",
                           since, "--until", until, "--out-dir", str(out_dir), "--params", str(params), "--json"],
                          cwd=ROOT,  # nosec B603: the repo's recsys CLI, argv of paths and dates, no shell
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"recsys drift failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    return {"wall": round(wall, 3), "stage_seconds": result["seconds"], **{k: result["timings"].get(k) for k in
            ("reference", "window", "compare", "save")}, "logged_rows": result["logged_rows"],
            "capped_rows": result["capped_rows"], "rows": result["rows"], "users": result["users"],
            "reference_rows": result["reference_rows"], "status": result["status"], "share": result["share"],
            "report_mb": round(Path(result["report_html"]).stat().st_size / 2**20, 2) if result["report_html"]
            else None}


def warm_runs(bundle: Path, log: dict[str, Any], out_dir: Path, params: Path, rounds: int) -> list[float]:
    """Seconds of the stage called in this process, after one untimed call."""
    from recsys.stages.drift import DriftParams, drift
    from recsys.stages.inputs import load_drift_config

    settings = Settings(params_file=params, var_dir=out_dir)
    run_params = DriftParams(config=load_drift_config(settings), bundle=bundle, traffic_dir=log["folder"],
                             since=log["since"], until=log["until"], out_dir=out_dir)
    drift(settings, run_params)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        drift(settings, run_params)
        seconds.append(round(time.perf_counter() - started, 3))
    return seconds


def fresh(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)  # nosec B603: the repo's recsys CLI, fixed argv, no shell
    return time.perf_counter() - started, proc.stdout


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0, started = time.perf_counter(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        root = Path(tmp)
        bundle, rec = prepare_bundle(args.bundle, root, settings)
        params = params_file(settings, root)
        logs: dict[int, dict[str, Any]] = {}
        for size in args.sizes:
            err.print(f"writing a traffic log of {size:,} rows")
            folder = root / f"traffic-{size}"
            since, until, written = write_log(rec, settings, size, folder)
            logs[size] = {"folder": folder, "since": since, "until": until, "rows": written,
                          "mb": round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 1)}
        runs: dict[int, list[dict[str, Any]]] = {size: [] for size in args.sizes}
        for r in range(args.rounds):
            order = args.sizes if r % 2 == 0 else list(reversed(args.sizes))
            for size in order:
                log = logs[size]
                err.print(f"round {r + 1}/{args.rounds}: recsys drift on {size:,} rows")
                runs[size].append(run_drift(bundle, log["folder"], log["since"], log["until"], root / "out", params))
                shutil.rmtree(root / "out", ignore_errors=True)
        warm = {size: warm_runs(bundle, logs[size], root / "warm", params, args.rounds) for size in args.sizes}
        startup = [fresh([str(RECSYS), "drift", "--help"])[0] for _ in range(args.rounds)]
        imports = [float(fresh([sys.executable, "-c", EVIDENTLY_IMPORT])[1]) for _ in range(args.rounds)]

    def median(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [row[key] for row in rows if row[key] is not None]
        return round(statistics.median(values), 3) if values else None

    keys = ("wall", "stage_seconds", "reference", "window", "compare", "save")
    sizes = {str(size): {"log_mb": logs[size]["mb"], "runs": runs[size],
                         "median": {k: median(runs[size], k) for k in keys}, "warm_in_process": warm[size],
                         "warm_median": round(statistics.median(warm[size]), 3),
                         "max_wall": max(row["wall"] for row in runs[size])} for size in args.sizes}
    return {"benchmark": "monitoring", "started_at": started, "target_seconds": TARGET_SECONDS,
            "bundle": str(args.bundle), "sizes": sizes,
            "cli_start_seconds": round(statistics.median(startup), 3),
            "evidently_import_seconds": round(statistics.median(imports), 3),
            "wall_seconds": round(time.perf_counter() - t0, 1), "quick": args.quick, "machine": machine()}


def render(report: dict[str, Any]) -> Table:
    rounds = len(next(iter(report["sizes"].values()))["runs"])
    table = Table(title=f"recsys drift end to end, fresh process (median of {rounds} runs; seconds)")
    for col in ("logged rows", "log MB", "compared rows", "wall", "max wall", "in stage", "window read",
                "Evidently", "HTML + JSON", f"<= {report['target_seconds']:.0f} s", "warm, in process"):
        table.add_column(col, justify="right")
    for size, entry in report["sizes"].items():
        m, first = entry["median"], entry["runs"][0]
        table.add_row(f"{int(size):,}", fmt(entry["log_mb"], ".1f"),
                      f"{first['rows']:,} of {first['capped_rows']:,}",
                      fmt(m["wall"]), fmt(entry["max_wall"]), fmt(m["stage_seconds"]), fmt(m["window"]),
                      fmt(m["compare"]), fmt(m["save"]),
                      "[green]yes[/]" if entry["max_wall"] <= report["target_seconds"] else "[red]no[/]",
                      fmt(entry["warm_median"]))
    table.caption = (f"fixed costs: `recsys drift --help` {report['cli_start_seconds']:.2f} s, import evidently "
                     f"{report['evidently_import_seconds']:.2f} s (fresh processes)")
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    out.print(render(report))
    write_json(args.json, report)


if __name__ == "__main__":
    main()
