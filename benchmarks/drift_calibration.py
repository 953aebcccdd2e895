"""How often the drift check cries wolf, and whether it sees injected drift: the figures behind params.yaml's drift.

    python -m benchmarks.drift_calibration [--json PATH] [--quick] [--bundles DIR,DIR,...] [--seed 0]

No service: for each bundle (default: every ``var/models/week=*`` with four weeks of data after its cut W; one
saved without a reference gets the one ``recsys train`` builds), the rating events of weeks W..W+3 become requests
as the replay sends them and their served rows are computed (:func:`recsys.monitoring.reference.served_rows`). The
monitor is then replayed as it will run: every 15 simulated minutes it looks at the rows since its previous verdict
and, once they pass ``min_rows`` and ``min_users`` after the per-user cap, gives a verdict (the Evidently
comparison of :mod:`recsys.monitoring.drift`, with params.yaml's drift section); else it waits.

- **No injection**: every verdict over the four weeks; a flag is a false alarm.
- **Injected at T** (every verdict time but the last, so each window after T is wholly shifted): from T on,
  (a) every requesting user is replaced by an 18-24-year-old, (b) by a student (a known user by a known one active
  around the cut, a cold start by any user's profile, each user always by the same one, seeded), (c) every
  request's context is the local time of a market 12 h ahead (hour and weekday); the first verdict after T counts.

The JSON holds every verdict's columns and scores; the tables give the counts and, per column, the margin: its
largest natural distance (no injection) and its threshold.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
from recsys.config import DriftConfig
from recsys.data.replay import interactions_before
from recsys.monitoring.drift import VOTING, Column, compare, drift_columns
from recsys.monitoring.reference import HOUR, TS_COL, WEEKDAY, build_reference, load_reference, served_rows
from recsys.monitoring.sample import REQUEST, bounded_sample, cap_per_user
from recsys.ranking.recommender import Recommender
from recsys.settings import Settings
from recsys.stages.inputs import load_drift_config, load_raw

ROOT = Path(__file__).resolve().parents[1]
CHECK_SECONDS = 15 * 60
SCENARIOS = ("none", "age_18_24", "students", "context_plus_12h")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arg_parser(__doc__, "drift_calibration", "the first bundle, three injection times")
    parser.add_argument("--bundles", default=None, help="bundle directories, comma-separated (default: every "
                        "var/models/week=* with four weeks after its cut)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user replacement (default 0)")
    return parser.parse_args(argv)


class Replay:
    """One bundle's serving weeks, and the monitor's verdicts over them."""

    def __init__(self, rec: Recommender, reference: pd.DataFrame, ml: Any, clock: Any, cfg: DriftConfig,
                 seed: int) -> None:
        self.rec, self.reference, self.ml, self.cfg = rec, reference, ml, cfg
        self.week = int(rec.manifest["as_of_week"])
        self.start, self.end = clock.start(self.week), clock.start(self.week + 4)
        inter = ml.interactions
        events = inter[(inter[S.TS] >= self.start) & (inter[S.TS] < self.end)]
        events = events.sort_values([S.TS, S.USER, S.ITEM], kind="stable")
        users = np.unique(ml.users[S.USER].to_numpy(np.int64))
        self.known = {int(u): rec.is_known(int(u)) for u in users}
        self.requests = pd.DataFrame({REQUEST: np.arange(len(events)), S.USER: events[S.USER].to_numpy(np.int64),
                                      S.TS: events[S.TS].to_numpy(np.int64)})
        self.cold = ~self.requests[S.USER].map(self.known).to_numpy(bool)
        self.rows = self.served(self.requests, self.cold)
        active = inter[(inter[S.TS] >= clock.start(self.week - 4)) & (inter[S.TS] < self.end)][S.USER].unique()
        profiles = ml.users.set_index(S.USER)
        self.bands = {"age_18_24": profiles.index[profiles[S.AGE].between(18, 24)].to_numpy(np.int64),
                      "students": profiles.index[profiles[S.OCCUPATION].astype(str) == "student"].to_numpy(np.int64)}
        self.active = set(int(u) for u in active)
        self.columns: list[Column] = drift_columns(rec.feature_names, cfg)
        self.rng = np.random.default_rng(seed)

    def served(self, requests: pd.DataFrame, cold: np.ndarray) -> pd.DataFrame:
        rows = served_rows(self.rec, requests, self.ml.users, cold=cold)
        return rows.assign(_t=rows[TS_COL].astype("int64") // 10**9)

    def replaced(self, since: int, band: str) -> pd.DataFrame:
        """The rows after ``since`` with every user replaced by one of the band (see the module docstring)."""
        after = self.requests[self.requests[S.TS] >= since].copy()
        cold = self.cold[self.requests[S.TS].to_numpy() >= since]
        pool = self.bands[band]
        known_pool = np.array([u for u in pool if self.known.get(int(u)) and int(u) in self.active])
        mapping = {}
        for user, is_cold in dict(zip(after[S.USER], cold, strict=True)).items():
            mapping[user] = int(self.rng.choice(pool if is_cold else known_pool))
        after[S.USER] = after[S.USER].map(mapping)
        return self.served(after, cold)

    def injected(self, scenario: str, since: int) -> pd.DataFrame:
        """The rows from ``since`` on with the scenario's drift."""
        return self.shifted_context(since) if scenario == "context_plus_12h" else self.replaced(since, scenario)

    def shifted_context(self, since: int, hours: int = 12) -> pd.DataFrame:
        after = self.rows[self.rows["_t"] >= since].copy()
        local = after[TS_COL] + pd.Timedelta(hours=hours)
        after[HOUR], after[WEEKDAY] = local.dt.hour, local.dt.weekday
        return after

    def verdicts(self, rows: pd.DataFrame, since: int, first_only: bool = False) -> list[dict[str, Any]]:
        """The monitor over ``rows`` from ``since``: a verdict every time the rows since the last one suffice."""
        cfg, stamps, last, found = self.cfg, rows["_t"].to_numpy(), since, []
        for check in range(since + CHECK_SECONDS, self.end + 1, CHECK_SECONDS):
            inside = (stamps >= last) & (stamps < check)
            if inside.sum() < cfg.min_rows:
                continue
            window = cap_per_user(rows[inside], cfg.per_user, cfg.seed)
            users = int(window[S.USER].nunique())
            if users < cfg.min_users or len(window) < cfg.min_rows:
                continue
            used = bounded_sample(window, cfg.max_rows, cfg.seed)
            result = compare(self.reference, used, self.columns, cfg.share_threshold)
            found.append({"week": self.week, "start": last, "end": check, "users": users, "rows": len(used),
                          "share": round(result.share, 4), "flagged": result.share >= cfg.share_threshold,
                          "drifted": [c.name for c in result.columns if c.drifted and c.role in VOTING],
                          "scores": {c.name: round(c.score, 4) for c in result.columns}})
            last = check
            if first_only:
                break
        return found


def bundles_of(args: argparse.Namespace, n_weeks: int) -> list[Path]:
    if args.bundles:
        return [Path(p) for p in args.bundles.split(",") if p.strip()]
    found = sorted((ROOT / "var" / "models").glob("week=*"), key=lambda p: int(p.name.split("=")[1]))
    return [p for p in found if (p / "manifest.json").exists() and int(p.name.split("=")[1]) + 4 <= n_weeks]


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0, started = time.perf_counter(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    settings = Settings()
    cfg = load_drift_config(settings)
    ml, clock = load_raw(settings)
    paths = bundles_of(args, clock.n_weeks)
    if args.quick:
        paths = paths[-1:]
    if not paths:
        raise SystemExit("no bundle with four weeks after its cut: pass --bundles")
    verdicts: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    for path in paths:
        rec = Recommender.load(path)
        reference, _ = load_reference(path)
        week = int(rec.manifest["as_of_week"])
        if reference is None:
            reference = build_reference(rec, interactions_before(ml.interactions, clock, week), ml.users,
                                        clock.start(week - cfg.reference_weeks), clock.start(week),
                                        per_user=cfg.per_user, max_rows=cfg.reference_rows, seed=cfg.seed)
        replay = Replay(rec, reference, ml, clock, cfg, args.seed)
        base = replay.verdicts(replay.rows, replay.start)
        verdicts["none"] += base
        times = [v["end"] for v in base[:-1]][: 3 if args.quick else None]
        err.print(f"week {week}: {len(base)} verdicts without injection, {len(times)} injection times")
        for when in times:
            for scenario in SCENARIOS[1:]:
                first = replay.verdicts(replay.injected(scenario, when), when, first_only=True)
                verdicts[scenario] += [{**v, "injected_at": when} for v in first]
    return {"benchmark": "drift_calibration", "started_at": started, "config": cfg.model_dump(),
            "bundles": [str(p) for p in paths], "columns": {c.name: {"role": c.role, "method": c.method,
                                                                     "threshold": c.threshold}
                                                            for c in drift_columns(rec.feature_names, cfg)},
            "summary": summarise(verdicts), "verdicts": verdicts,
            "wall_seconds": round(time.perf_counter() - t0, 1), "quick": args.quick, "machine": machine()}


def summarise(verdicts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario, found in verdicts.items():
        summary[scenario] = {"verdicts": len(found), "flagged": sum(v["flagged"] for v in found),
                             "by_week": {str(w): [sum(v["flagged"] for v in found if v["week"] == w),
                                                  sum(v["week"] == w for v in found)]
                                         for w in sorted({v["week"] for v in found})}}
    none = verdicts["none"]
    if none:
        summary["natural_max"] = {name: max(v["scores"].get(name, 0.0) for v in none) for name in none[0]["scores"]}
    for scenario in SCENARIOS[1:]:
        hits = [v for v in verdicts[scenario] if v["flagged"]]
        summary[scenario]["flagged_by"] = pd.Series([c for v in hits for c in v["drifted"]]).value_counts().to_dict()
    return summary


def render(report: dict[str, Any]) -> list[Table]:
    s = report["summary"]
    counts = Table(title="Verdicts: without injection (false alarms) and first verdict after an injection")
    for col in ("scenario", "verdicts", "flagged", "rate", "per week (flagged/verdicts)", "flagged by"):
        counts.add_column(col, justify="left" if col in ("scenario", "per week (flagged/verdicts)", "flagged by")
                          else "right")
    for scenario in SCENARIOS:
        entry = s[scenario]
        rate = entry["flagged"] / entry["verdicts"] if entry["verdicts"] else None
        weeks = " ".join(f"{w}:{a}/{b}" for w, (a, b) in entry["by_week"].items())
        by = ", ".join(f"{k} {v}" for k, v in list(entry.get("flagged_by", {}).items())[:3])
        counts.add_row(scenario, str(entry["verdicts"]), str(entry["flagged"]), fmt(rate), weeks, by)
    margins = Table(title="Margins: each column's largest distance without injection against its threshold")
    for col in ("column", "role", "threshold", "natural max", "max / threshold"):
        margins.add_column(col, justify="left" if col in ("column", "role") else "right")
    columns = report["columns"]
    natural = s.get("natural_max", {})
    ranked = sorted(natural, key=lambda n: -natural[n] / columns[n]["threshold"])
    for name in ranked[:12]:
        margins.add_row(name, columns[name]["role"], fmt(columns[name]["threshold"]), fmt(natural[name]),
                        fmt(natural[name] / columns[name]["threshold"]))
    return [counts, margins]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    for table in render(report):
        out.print(table)
    write_json(args.json, report)


if __name__ == "__main__":
    main()
