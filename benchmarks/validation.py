"""Validating one weekly batch with Great Expectations: cold (fresh process) and warm (GX imported), in one run.

    python -m benchmarks.validation [--json PATH] [--repeats 3] [--cold-week 20] [--bytecode both] [--quick]

Sets up a temporary data/var folder with the real ML-100K raw files, replays every week as a batch file
(``write_week``) and measures, against the target "one weekly batch in <= 5 s, GX context set-up included":

(a) warm: one process validates week 0 (not counted: it pays the GX import), then weeks 1..31 in order;
    per-week ``validate_week`` seconds, p50/p95/max;
(b) cold: a fresh subprocess (benchmarks.validation_cold) runs ``validate_week`` for ``--cold-week`` (all earlier
    weeks accepted), repeated;
    the process's wall time and its phases: interpreter start, our imports, ``import great_expectations``,
    GX context set-up, validation, Data Docs build, GX store writes (suites and results JSON), batch store
    write, the rest of validate_week, interpreter exit. "validate_week cold" = GX import + validate_week;
(c) ``import great_expectations`` alone in a fresh subprocess.

Cold figures depend on whether the site-packages have compiled bytecode: ``as-is`` runs the subprocesses with
the environment unchanged (a venv installed by uv without ``--compile-bytecode`` and PYTHONDONTWRITEBYTECODE=1
recompiles every module on every start); ``cached`` points PYTHONPYCACHEPREFIX at a temporary folder, primed
by one untimed run (what a venv with compiled bytecode gives). ``--bytecode both`` (default) measures both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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

prepare_process()  # before numpy loads: thread pools, GX analytics off (see recsys.runtime)

from benchmarks.harness.report import arg_parser, err, machine, out, write_json
from recsys.data.fetch import DataUnavailableError, fetch_movielens
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock, write_week
from recsys.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 5.0
MODES = ("as-is", "cached")
PHASES = ["interpreter_start", "our_imports", "gx_import", "context_setup", "validation", "docs_build",
          "gx_store_write", "batch_store_write", "other", "interpreter_exit"]

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "validation", "warm weeks 0..5, cold week 5 once, bytecode as is")
    parser.add_argument("--repeats", type=int, default=3, help="cold runs and import-only runs (default 3)")
    parser.add_argument("--cold-week", type=int, default=20, help="the week validated cold (default 20)")
    parser.add_argument("--bytecode", choices=[*MODES, "both"], default="both",
                        help="cold runs with the environment as is, with cached bytecode, or both (default)")
    args = parser.parse_args(argv)
    args.warm_weeks = None  # every week
    if args.quick:
        args.repeats, args.cold_week, args.bytecode, args.warm_weeks = 1, 5, "as-is", 6
    return args


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"n": len(values), "p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3), "min": round(ordered[0], 3)}


def setup(root: Path) -> tuple[Settings, ReplayClock]:
    settings = Settings(data_dir=root / "data", var_dir=root / "var")
    source = Settings().raw_dir
    fetch_movielens(source, Settings().wheel_cache)
    shutil.copytree(source, settings.raw_dir)
    ml = load_movielens(settings.raw_dir)
    clock = ReplayClock.from_interactions(ml.interactions)
    for week in range(clock.n_weeks):
        write_week(ml.interactions, clock, week, settings.batches_dir)
    return settings, clock


def child_env(mode: str, pycache: Path) -> dict[str, str]:
    env = dict(os.environ)
    if mode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def cold_run(root: Path, week: int, now: int, env: dict[str, str]) -> dict[str, Any]:
    spawned = time.time()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.validation_cold", "validate", repr(spawned), str(root),  # nosec B603: this interpreter on a module of this repo, no shell
                           str(week), str(now)], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    ended = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"cold run failed:\n{proc.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    row["interpreter_exit"] = ended - row.pop("end")
    row["wall"] = ended - spawned
    row["validate_week_cold"] = row["gx_import"] + row["validate_week"]
    return row


def import_run(env: dict[str, str]) -> dict[str, float]:
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.validation_cold", "gx-import"], cwd=ROOT, env=env,  # nosec B603: this interpreter on a module of this repo, no shell
                          capture_output=True, text=True, check=True)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall": time.time() - started}


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0, started = time.perf_counter(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    modes = list(MODES) if args.bytecode == "both" else [args.bytecode]
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        root = Path(tmp)
        err.print(f"set-up in {root}: raw ML-100K files and every weekly batch")
        settings, clock = setup(root)
        now = clock.start(clock.n_weeks + 1)

        weeks = clock.n_weeks if args.warm_weeks is None else min(args.warm_weeks, clock.n_weeks)
        if not 0 < args.cold_week < weeks:
            raise ValueError(f"--cold-week must be in 1..{weeks - 1}")
        err.print(f"warm: validate_week 0..{weeks - 1} in one process (week 0 not counted)")
        from recsys.validation.runner import validate_week

        warm: list[dict[str, Any]] = []
        for week in range(weeks):
            outcome = validate_week(settings, week, now=now, channels=[])
            warm.append({"week": week, "seconds": round(outcome.seconds, 3), "success": outcome.success,
                         "rows": outcome.rows})
        first, counted = warm[0], warm[1:]

        cold: dict[str, Any] = {}
        imports: dict[str, Any] = {}
        for mode in modes:
            env = child_env(mode, root / "pycache")
            if mode == "cached":
                err.print("cached bytecode: one untimed run to fill the cache")
                cold_run(root, args.cold_week, now, env)
            err.print(f"cold ({mode}): {args.repeats} fresh process(es) validating week {args.cold_week}")
            runs = [cold_run(root, args.cold_week, now, env) for _ in range(args.repeats)]
            err.print(f"import only ({mode}): {args.repeats} fresh process(es)")
            imports[mode] = [import_run(env) for _ in range(args.repeats)]
            cold[mode] = {"runs": runs,
                          "median": {k: round(statistics.median(r[k] for r in runs), 3)
                                     for k in [*PHASES, "validate_week", "validate_week_cold", "wall"]},
                          "all_success": all(r["success"] for r in runs)}

    warm_stats = stats([r["seconds"] for r in counted])
    return {
        "benchmark": "validation",
        "started_at": started,
        "target_seconds": TARGET_SECONDS,
        "cold_week": args.cold_week,
        "warm": {"first_week_seconds": first["seconds"], "weeks": counted, **warm_stats,
                 "all_success": all(r["success"] for r in warm)},
        "cold": cold,
        "gx_import_only": {mode: {"runs": runs, "median_import": round(statistics.median(r["import"] for r in runs), 3),
                                  "median_wall": round(statistics.median(r["wall"] for r in runs), 3)}
                           for mode, runs in imports.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "quick": args.quick,
        "machine": machine(PYTHONDONTWRITEBYTECODE=os.environ.get("PYTHONDONTWRITEBYTECODE")),
    }


def render(report: dict[str, Any]) -> list[Table]:
    modes = list(report["cold"])
    target = report["target_seconds"]

    def verdict(seconds: float) -> str:
        return "[green]yes[/]" if seconds <= target else "[red]no[/]"

    cold = Table(title=f"Cold: a fresh process validates week {report['cold_week']:02d} (median seconds of "
                       f"{len(report['cold'][modes[0]]['runs'])} runs)")
    cold.add_column("phase")
    for mode in modes:
        cold.add_column(f"bytecode {mode}", justify="right")
    for phase in PHASES:
        cold.add_row(phase.replace("_", " "), *(f"{report['cold'][m]['median'][phase]:.2f}" for m in modes))
    cold.add_section()
    cold.add_row("[bold]validate_week cold[/] (GX import + call)",
                 *(f"[bold]{report['cold'][m]['median']['validate_week_cold']:.2f}[/]" for m in modes))
    cold.add_row("process wall", *(f"{report['cold'][m]['median']['wall']:.2f}" for m in modes))
    cold.add_row(f"validate_week cold <= {target:.0f} s",
                 *(verdict(report["cold"][m]["median"]["validate_week_cold"]) for m in modes))
    cold.add_row("import great_expectations alone",
                 *(f"{report['gx_import_only'][m]['median_import']:.2f}" for m in modes))
    cold.add_row("  its process wall", *(f"{report['gx_import_only'][m]['median_wall']:.2f}" for m in modes))

    w = report["warm"]
    warm = Table(title=f"Warm: one process validates weeks 1..{len(w['weeks'])} (seconds per week)")
    for col in ["first week (pays GX import)", "p50", "p95", "max", f"max <= {target:.0f} s", "all accepted"]:
        warm.add_column(col, justify="right")
    warm.add_row(f"{w['first_week_seconds']:.2f}", f"{w['p50']:.2f}", f"{w['p95']:.2f}", f"{w['max']:.2f}",
                 verdict(w["max"]), "yes" if w["all_success"] else "[red]no[/]")
    return [cold, warm]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (DataUnavailableError, ValueError, RuntimeError) as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        return 1
    for table in render(report):
        out.print(table)
    out.print(f"wall {report['wall_seconds']:.0f} s, {os.cpu_count()} CPU(s)")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
