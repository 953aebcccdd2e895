"""The retrain-trigger stage: whether the monitor DAG emits ``drift_detected`` and/or ``performance_degraded``.

It reads the latest drift result (``<var_dir>/monitoring/drift/latest.json``) and the latest CTR result
(``<var_dir>/monitoring/ctr/latest.json``); a missing file is "no data" for that signal, a corrupt one a
:class:`StageError` naming it. The decision itself (freshness, cooldown, minimum new traffic) is
:func:`recsys.monitoring.signals.decide`. New traffic is counted in the assignment log on the logs' own clock (a
replay logs 1998 time): after the last trigger's ``log_position`` (the newest impression it had counted), or, with
no trigger yet, over the fresh results' checked windows. Freshness and the cooldown are on the wall clock.

Storage, in ``<var_dir>/monitoring/signals/``: ``history.jsonl`` (one :class:`Trigger` per line, appended and
fsynced: the audit trail, readable with ``tail``/``jq`` like the other monitoring files) and ``state.json`` (the
last trigger, replaced atomically: write a temporary file, fsync, ``os.replace``), which the decision reads. Both
are tiny and written at most once per cooldown, so JSON files are enough and need no schema, unlike a SQLite
table; the history line is written before the state, so a crash between the two can at worst fire again (a
retrain too many), never swallow a trigger that was not emitted. The read-decide-record sequence holds an
exclusive ``fcntl.flock`` on ``.lock`` beside them, so two concurrent calls cannot both fire. ``dry_run`` decides
the same way and writes nothing (not even the directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field, ValidationError

from recsys.monitoring.ctr import CtrReport
from recsys.monitoring.metrics import CTR_DIR, DRIFT_DIR, LATEST
from recsys.monitoring.signals import SIGNALS_DIR, Decision, Observation, SignalConfig, Trigger
from recsys.settings import ServingSettings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult

HISTORY = "history.jsonl"
STATE = "state.json"
LOCK = ".lock"


def clock() -> datetime:
    """The wall clock (a test replaces it, or passes ``SignalParams.now``)."""
    return datetime.now(UTC)


class SignalParams(BaseModel):
    config: SignalConfig = Field(default_factory=SignalConfig)
    dry_run: bool = Field(False, description="decide without recording a trigger")
    run_id: str | None = Field(None, description="recorded with a trigger (e.g. the DAG run's id)")
    now: datetime | None = Field(None, description="the wall-clock time to decide at; default: now")


class SignalState(BaseModel):
    """``state.json``: the last trigger, and how many were recorded."""

    last_trigger: Trigger | None = None
    triggers: int = 0


class SignalsResult(StageResult):
    drift: Decision
    performance: Decision
    fire_drift: bool = Field(description="emit the drift_detected asset")
    fire_performance: bool = Field(description="emit the performance_degraded asset")
    fired: bool = Field(description="either fired (one trigger recorded for both)")
    cooldown_until: datetime | None = Field(description="end of the cooldown in effect after this call")
    last_trigger: Trigger | None = Field(description="the last recorded trigger (this one when it fired; in a dry "
                                                     "run, the one it would record)")
    new_impressions: int = Field(description="impressions counted since the last trigger (or in the window)")
    counted_since: datetime | None = Field(description="start of the count, on the logs' clock")
    min_impressions: int
    recorded: Path | None = Field(description="the history file the trigger was appended to; None: nothing "
                                              "recorded (nothing fired, or a dry run)")
    dry_run: bool
    decided_at: datetime


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _corrupt(path: Path, what: str, exc: Exception) -> StageError:
    from recsys.stages.inputs import describe_validation

    why = describe_validation(exc) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
    return StageError(f"{path}: not a readable {what} ({why}); rerun the check or remove the file")


def observe_drift(path: Path) -> Observation:
    from recsys.stages.drift import read_latest

    if not path.exists():
        return Observation(source=path, present=False)
    try:
        res = read_latest(path.parent)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise _corrupt(path, "drift result", exc) from exc
    assert res is not None
    facts = {"status": res.status, "share": res.share, "share_threshold": res.share_threshold,
             "drifted": [c.column for c in res.drifted],
             "score_drifted": bool(res.score_drift is not None and res.score_drift.drifted),
             "model_version": res.model_version, "rows": res.rows, "window_start": res.window_start,
             "window_end": res.window_end}
    return Observation(source=path, present=True, checked_at=_utc(res.checked_at), detected=res.drift_detected,
                       verdict=f"drift check {res.status}: {res.reason}", window_start=res.window_start,
                       window_end=res.window_end, facts=facts)


def observe_ctr(path: Path) -> Observation:
    if not path.exists():
        return Observation(source=path, present=False)
    try:
        rep = CtrReport.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise _corrupt(path, "CTR result", exc) from exc
    degraded = [ch for ch in rep.versions if ch.status == "degraded"]
    facts: dict[str, Any] = {
        "degraded": [ch.model_dump(mode="json", include={"variant", "version", "impressions", "ctr", "baseline_ctr",
                                                         "relative_drop", "p_value"}) for ch in degraded],
        "versions": len(rep.versions), "window_start": rep.start, "window_end": rep.end}
    if degraded:
        verdict = "CTR degraded: " + ", ".join(
            f"{ch.variant} v{ch.version} {_pct(ch.ctr)} vs baseline {_pct(ch.baseline_ctr)} (drop "
            f"{_pct(ch.relative_drop)})" for ch in degraded)
    else:
        verdict = f"no version degraded ({len(rep.versions)} checked)"
    return Observation(source=path, present=True, checked_at=None if rep.checked_at is None else _utc(rep.checked_at),
                       detected=rep.performance_degraded, verdict=verdict, window_start=rep.start,
                       window_end=rep.end, facts=facts)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def read_state(folder: Path) -> SignalState:
    path = folder / STATE
    if not path.exists():
        return SignalState()
    try:
        return SignalState.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise _corrupt(path, "trigger state", exc) from exc


@contextlib.contextmanager
def _locked(folder: Path, dry_run: bool) -> Iterator[None]:
    """An exclusive lock on ``<folder>/.lock`` (created); a dry run takes a shared one, and only if it exists."""
    lock = folder / LOCK
    if dry_run and not lock.exists():
        yield
        return
    if not dry_run:
        folder.mkdir(parents=True, exist_ok=True)
    fh: IO[bytes]
    with lock.open("rb" if dry_run else "ab") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH if dry_run else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _count(settings: ServingSettings, since: datetime | None, until: datetime | None,
           after: bool) -> tuple[int, datetime | None]:
    """Impressions in ``[since, until)`` (``after``: strictly after ``since``), and the newest one's time."""
    from recsys.experiments.attribution import read_impressions

    imps = read_impressions(settings.assignment_path, since, until)
    if after and since is not None:
        imps = [imp for imp in imps if imp.ts > since]
    return len(imps), (imps[-1].ts if imps else None)


def _record(folder: Path, state: SignalState, trigger: Trigger) -> Path:
    history = folder / HISTORY
    with history.open("a", encoding="utf-8") as fh:
        fh.write(trigger.model_dump_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    new = SignalState(last_trigger=trigger, triggers=state.triggers + 1)
    tmp = folder / f".{STATE}.tmp"
    with tmp.open("w", encoding="utf-8") as out:
        out.write(new.model_dump_json(indent=2))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / STATE)
    return history


def signals(settings: ServingSettings, params: SignalParams, *, reporter: Reporter = SILENT) -> SignalsResult:
    """Decide both signals; when one fires (and not ``dry_run``) record the trigger. See the module docstring."""
    from recsys.monitoring.signals import cooldown_end, counted_window, decide

    cfg = params.config
    now = _utc(params.now) if params.now is not None else clock()
    folder = settings.var_dir / SIGNALS_DIR
    with _locked(folder, params.dry_run):
        drift_obs = observe_drift(settings.var_dir / DRIFT_DIR / LATEST)
        ctr_obs = observe_ctr(settings.var_dir / CTR_DIR / LATEST)
        state = read_state(folder)
        last = state.last_trigger
        if last is not None and last.log_position is not None:
            since: datetime | None = last.log_position
            new, newest = _count(settings, since, None, after=True)
            position: datetime | None = newest or last.log_position
        else:
            since, until = counted_window([drift_obs, ctr_obs], now, cfg)
            new, newest = _count(settings, since, until, after=False) if since is not None else (0, None)
            position = newest or until
        reporter.note(f"{new:,} impressions logged since {since.isoformat() if since else '-'} (logs' clock); "
                      f"last trigger {last.at.isoformat() if last else 'none'}")
        drift = decide("drift check", drift_obs, now, cfg, last, new)
        perf = decide("CTR check", ctr_obs, now, cfg, last, new)
        recorded = None
        if drift.fired or perf.fired:
            fired = [name for name, d in (("drift", drift), ("performance", perf)) if d.fired]
            trigger = Trigger(at=now, signals=fired, run_id=params.run_id, new_impressions=new,
                              log_position=position,
                              facts={name: d.facts for name, d in (("drift", drift), ("performance", perf))
                                     if d.fired})
            if not params.dry_run:
                recorded = _record(folder, state, trigger)
            last = trigger
    until_ = cooldown_end(last, cfg)
    return SignalsResult(drift=drift, performance=perf, fire_drift=drift.fired, fire_performance=perf.fired,
                         fired=drift.fired or perf.fired,
                         cooldown_until=until_ if until_ is not None and until_ > now else None,
                         last_trigger=last, new_impressions=new, counted_since=since,
                         min_impressions=cfg.min_impressions, recorded=recorded, dry_run=params.dry_run,
                         decided_at=now)
