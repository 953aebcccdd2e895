"""Detection through the whole loop: inject a drift at time T into the replay, then check every 15 simulated minutes.

    python -m benchmarks.detection [--json PATH] [--bundle DIR] [--at 1998-04-06T00:00:00] [--quick]

For each scenario (no injection, a user-mix shift to one occupation, a context shift of +12 h, an item shock) a
fresh ``bentoml serve`` of the bundle (2 workers, every request in the traffic log) answers the simulator's replay
of the weeks after the bundle's cut (recsys.experiments.simulator, unpaced). Then the monitor is replayed on the
logs' clock: at every 15-minute boundary of the simulated time the drift stage checks the rows since its previous
verdict (``since_last_verdict``: a window with too few rows or users is deferred and keeps growing) and the CTR check
looks at the mature impressions since its previous verdict. Boundaries without new rows are skipped (their check
would defer again, on the same rows). Reported per scenario: verdicts (not deferred checks), false alarms before T
and in the no-injection run, and whether the first verdict after T flagged it. Goal (issue 7): the first check
after T flags each injection; no false alarm over >= 50 checks without one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()

from benchmarks.harness.processes import running
from benchmarks.harness.report import arg_parser, cli_main, machine, out
from benchmarks.systems import bundle_env, start_bento, wait_compiled
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock
from recsys.experiments.attribution import read_impressions
from recsys.experiments.simulator import Injection, SimulationConfig, simulate
from recsys.monitoring.ctr import CtrConfig, check_ctr
from recsys.serving.feedback import FeedbackStore
from recsys.settings import Settings
from recsys.stages.drift import DriftParams, drift
from recsys.stages.inputs import load_drift_config, load_section

ROOT = Path(__file__).resolve().parents[1]
STEP = timedelta(minutes=15)
QUICK = "the no-injection and context scenarios, 3,000 requests"
SCENARIOS = {
    "none": None,
    "user_mix (occupation:student)": {"kind": "user_mix", "segment": "occupation:student"},
    "context (+12 h)": {"kind": "context", "hour_shift": 12},
    "item_shock (20 items, 80 %)": {"kind": "item_shock", "shock_items": 20, "shock_share": 0.8},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "detection", QUICK)
    parser.add_argument("--bundle", type=Path, default=ROOT / "var" / "models" / "week=28")
    parser.add_argument("--raw", type=Path, default=ROOT / "data" / "raw" / "ml-100k")
    parser.add_argument("--at", type=datetime.fromisoformat, default=None,
                        help="injection time T (a 15-minute boundary); default: the no-injection run's first drift "
                             "verdict from --after on, so that the monitor's next window starts at T")
    parser.add_argument("--after", type=datetime.fromisoformat, default=datetime(1998, 4, 6, tzinfo=UTC))
    parser.add_argument("--requests", type=int, default=None, help="at most this many requests per scenario")
    args = parser.parse_args(argv)
    for name in ("at", "after"):
        value = getattr(args, name)
        if value is not None and value.tzinfo is None:
            setattr(args, name, value.replace(tzinfo=UTC))
    if args.quick:
        args.requests = 3000
    return args


def _boundaries(times: list[datetime]) -> list[datetime]:
    """The 15-minute boundaries right after each distinct quarter hour that holds a row, in order."""
    marks = {datetime.fromtimestamp((int(t.timestamp()) // 900 + 1) * 900, UTC) for t in times}
    return sorted(marks)


def drift_checks(var: Path, bundle: Path, settings: Settings) -> list[dict[str, Any]]:
    """The drift stage at every boundary with new rows, on the logs' clock, as a 15-minute monitor would run it."""
    traffic = var / "serving" / "traffic"
    times = [datetime.fromisoformat(json.loads(line)["ts"]) for path in sorted(traffic.glob("traffic-*.jsonl"))
             for line in path.read_text().splitlines() if line.strip()]
    config = load_drift_config(settings)
    checks = []
    for at in _boundaries(times):
        result = drift(settings, DriftParams(config=config, bundle=bundle, traffic_dir=traffic, until=at,
                                             since_last_verdict=True, out_dir=var / "drift"))
        checks.append({"at": at, "status": result.status, "detected": result.drift_detected,
                       "window_start": result.window_start, "users": result.users, "rows": result.rows,
                       "drifted": [c.column for c in result.drifted][:5]})
    return checks


def ctr_checks(var: Path, cfg: CtrConfig) -> list[dict[str, Any]]:
    """The CTR check at every boundary with new mature impressions, over those since its previous verdict."""
    impressions = read_impressions(var / "serving" / "assignments")
    store = FeedbackStore(f"sqlite:///{var}/feedback.db")
    events = store.between()
    store.close()
    checks, start = [], impressions[0].ts if impressions else None
    for at in _boundaries([imp.ts + cfg.attribution_window for imp in impressions]):
        assert start is not None
        report = check_ctr(impressions, events, start, at, cfg)
        statuses = [v.status for v in report.versions]
        if statuses and all(s == "insufficient_data" for s in statuses):
            continue  # deferred: the window keeps growing
        checks.append({"at": at, "status": "degraded" if report.performance_degraded else "ok",
                       "detected": report.performance_degraded, "window_start": start,
                       "drop": max((v.relative_drop or 0 for v in report.versions), default=None)})
        start = at - cfg.attribution_window  # the next window: impressions not yet judged
    return checks


def summarise(checks: list[dict[str, Any]], at: datetime, injected: bool) -> dict[str, Any]:
    verdicts = [c for c in checks if c["status"] != "insufficient_data"]
    before = [c for c in verdicts if c["at"] <= at]
    after = [c for c in verdicts if c["at"] > at]
    first = after[0] if after else None
    return {"checks": len(checks), "verdicts": len(verdicts),
            "false_alarms": sum(c["detected"] for c in (before if injected else verdicts)),
            "verdicts_judged_for_false_alarms": len(before if injected else verdicts),
            "first_after_T": None if first is None else {
                "at": first["at"], "detected": first["detected"], "window_start": first["window_start"],
                "minutes_after_T": (first["at"] - at).total_seconds() / 60},
            "detected_after_T": sum(c["detected"] for c in after), "verdicts_after_T": len(after)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    ml = load_movielens(args.raw)
    clock = ReplayClock.from_interactions(ml.interactions)
    cut = int(json.loads((args.bundle / "manifest.json").read_text())["as_of_week"])
    ctr_cfg = load_section(Settings(), "ctr", CtrConfig)
    scenarios = dict(list(SCENARIOS.items())[::2]) if args.quick else SCENARIOS
    results: dict[str, Any] = {}
    at = args.at
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        for name, spec in scenarios.items():
            var = Path(tmp) / name.split()[0]
            env = bundle_env(args.bundle, Path(tmp) / "compiled", {"RECSYS_TRAFFIC_RATE": "1"})
            if spec is not None and at is None:  # right after a verdict: the monitor's next window starts at T
                at = next(c["at"] for c in results["none"]["drift_checks"]
                          if c["status"] != "insufficient_data" and c["at"] >= args.after)
            inject = None if spec is None else Injection(at=at, **spec)
            with running(start_bento(var, 2, env)) as server:
                wait_compiled(server)
                out.print(f"[{name}] replaying against {server.url} …")
                sim = simulate(ml.interactions, ml.users, clock, SimulationConfig(
                    url=server.url, from_week=cut, rate=1e6, concurrency=64, max_requests=args.requests,
                    duration=1800, inject=inject), from_week=cut)
            settings = Settings(var_dir=var)
            out.print(f"[{name}] {sim.requests:,} requests; replaying the monitor …")
            drift_log, ctr_log = drift_checks(var, args.bundle, settings), ctr_checks(var, ctr_cfg)
            results[name] = {"requests": sim.requests, "feedback_acked": sim.feedback_acked,
                             "drift": summarise(drift_log, at or args.after, spec is not None),
                             "ctr": summarise(ctr_log, at or args.after, spec is not None),
                             "drift_checks": drift_log, "ctr_checks": ctr_log}
    return {"benchmark": "detection", "machine": machine(), "bundle": str(args.bundle), "cut": cut,
            "injected_at": at, "check_every_minutes": 15, "scenarios": results}


def print_report(report: dict[str, Any]) -> None:
    table = Table("scenario", "check", "verdicts", "false alarms (of)", "first verdict after T",
                  "flags after T", title=f"injected at {report['injected_at']:%Y-%m-%d %H:%M} UTC, checks every "
                                         f"{report['check_every_minutes']} simulated minutes")
    for name, res in report["scenarios"].items():
        for check in ("drift", "ctr"):
            s = res[check]
            first = s["first_after_T"]
            first_text = "–" if name == "none" or first is None else (
                f"{'FLAGGED' if first['detected'] else 'missed'} (+{first['minutes_after_T']:.0f} min)")
            table.add_row(name, check, str(s["verdicts"]),
                          f"{s['false_alarms']} ({s['verdicts_judged_for_false_alarms']})", first_text,
                          "–" if name == "none" else f"{s['detected_after_T']}/{s['verdicts_after_T']}")
    out.print(table)


main = cli_main(parse_args, run, print_report)


if __name__ == "__main__":
    sys.exit(main())
