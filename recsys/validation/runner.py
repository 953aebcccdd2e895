"""The checkpoint runner: validate one incoming weekly batch, then accept it into the store or quarantine it.

:func:`validate_week` is the entry point (the ``recsys validate --week W`` command and the pipeline call it):

1. read ``<batches_dir>/week=WW/interactions.{parquet,csv}`` (:func:`~recsys.validation.reader.read_batch`);
2. validate the users and items reference tables and the batch with Great Expectations (file-mode context under
   ``<var_dir>/validation/gx``, Data Docs under ``<var_dir>/validation/data_docs``);
3. on success write the batch to ``<data_dir>/store/week=WW/`` (see :mod:`recsys.validation.store`); on any
   failure, including an unreadable file, copy it to ``<data_dir>/quarantine/week=WW/<stamp>/`` with the GX
   result and a summary, leave the store untouched and dispatch a ``batch_quarantined`` notification.

:func:`check_batch` is the side-effect-free core (one frame, one verdict), used by tests and the demo.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys import notify
from recsys import schema as S
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock, interactions_of_week
from recsys.notify import Channel, Notifier
from recsys.settings import Settings
from recsys.validation import store
from recsys.validation.gx_runner import GxRunner, SuiteRun
from recsys.validation.reader import BatchFileError, find_batch_file, read_batch
from recsys.validation.suites import (
    KNOWN,
    History,
    batch_expectations,
    items_expectations,
    unknown_ids,
    users_expectations,
    with_known_flags,
)


class FailedExpectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str = Field(description="'interactions', 'users' or 'items'")
    check: str = Field(description="our short name, e.g. 'rating.range'")
    expectation: str = Field(description="the GX expectation type, e.g. 'expect_column_values_to_be_between'")
    column: str | None = None
    unexpected_count: int | None = None
    examples: list[Any] = Field(default_factory=list, description="unexpected values, or the observed value")
    observed: Any = None
    exception: str | None = None


class ValidationOutcome(BaseModel):
    """What happened to one weekly batch."""

    model_config = ConfigDict(extra="forbid")

    week: int
    success: bool
    rows: int = 0
    new_users: int = Field(0, description="distinct user ids not in any earlier accepted week")
    new_items: int = Field(0, description="distinct item ids not in any earlier accepted week")
    unknown_users: int = Field(0, description="distinct user ids missing from the users table (allowed, counted)")
    failed: list[FailedExpectation] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="checks relaxed or skipped, and why")
    error: str | None = Field(None, description="the BatchFileError message when the file could not be read")
    volume_band: tuple[int, int] | None = Field(None, description="learned row-count band; None = default band")
    history_weeks: list[int] = Field(default_factory=list)
    source_path: Path | None = None
    store_path: Path | None = None
    quarantine_path: Path | None = None
    data_docs: Path | None = None
    run_id: str | None = None
    seconds: float = 0.0

    @property
    def failed_checks(self) -> list[str]:
        return sorted({f.check for f in self.failed})


@dataclass(frozen=True)
class Reference:
    """The reference tables and the replay clock a batch is checked against."""

    users: pd.DataFrame
    items: pd.DataFrame
    clock: ReplayClock


_REFERENCES: dict[tuple[str, tuple[int, ...]], Reference] = {}


def load_reference(raw_dir: Path) -> Reference:
    """Users, items and the replay clock from the raw MovieLens files (cached while the files are unchanged)."""
    paths = [raw_dir / f"ml-100k.{k}" for k in ("inter", "user", "item")]
    key = (str(raw_dir.resolve()), tuple(p.stat().st_mtime_ns if p.exists() else -1 for p in paths))
    if key not in _REFERENCES:
        ml = load_movielens(raw_dir)
        _REFERENCES[key] = Reference(ml.users, ml.items, ReplayClock.from_interactions(ml.interactions))
    return _REFERENCES[key]


@dataclass(frozen=True)
class BatchCheck:
    """The side-effect-free verdict on one batch frame."""

    week: int
    runs: list[SuiteRun]
    failed: list[FailedExpectation]
    notes: list[str]
    volume_band: tuple[int, int] | None
    unknown_users: int

    @property
    def success(self) -> bool:
        return not self.failed

    @property
    def failed_checks(self) -> list[str]:
        return sorted({f.check for f in self.failed})


def _failures(run: SuiteRun) -> list[FailedExpectation]:
    return [FailedExpectation(**{k: v for k, v in r.items() if k not in ("success", "unexpected_percent")})
            for r in run.failed()]


def check_reference(reference: Reference, runner: GxRunner) -> list[SuiteRun]:
    return [runner.run("users", "users", users_expectations(), reference.users),
            runner.run("items", "items", items_expectations(), reference.items)]


def check_batch(batch: pd.DataFrame, week: int, reference: Reference, runner: GxRunner, *,
                history: History | None = None, now: int | None = None,
                reference_runs: list[SuiteRun] | None = None) -> BatchCheck:
    """Validate one batch frame of ``week`` (and the reference tables unless their runs are given)."""
    history = history or History()
    now = int(time.time()) if now is None else now
    ids = {S.ITEM: reference.items[S.ITEM].to_numpy(), S.USER: reference.users[S.USER].to_numpy()}
    expectations, notes = batch_expectations(week, reference.clock, now, history)
    runs = list(reference_runs) if reference_runs is not None else check_reference(reference, runner)
    runs.append(runner.run(f"interactions_week_{week:02d}", "interactions", expectations,
                           with_known_flags(batch, ids[S.ITEM], ids[S.USER])))
    failed = [f for r in runs for f in _failures(r)]
    for f in failed:  # a known-id check names the id column and its unknown ids, not the derived flag's values
        column = next((c for c, flag in KNOWN.items() if f.column == flag), None)
        if column is not None:
            f.column, f.examples = column, unknown_ids(batch, column, ids[column])
    unknown = len(unknown_ids(batch, S.USER, ids[S.USER], n=len(batch)))
    return BatchCheck(week=week, runs=runs, failed=failed, notes=notes, volume_band=history.volume_band(),
                      unknown_users=unknown)


def _examples(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values[:5]) if values else "–"


def render_summary(week: int, source: Path | None, failed: list[FailedExpectation], *, rows: int,
                   error: str | None = None, notes: list[str] | None = None) -> str:
    """A short Markdown account of why a batch was rejected."""
    lines = [f"# Week {week:02d} batch quarantined", "", f"- file: `{source}`" if source else "- file: (none)",
             f"- rows: {rows}", ""]
    if error:
        lines += ["The file could not be read as a batch:", "", f"    {error}", ""]
    if failed:
        lines += ["| table | check | expectation | column | unexpected | examples |",
                  "|---|---|---|---|---|---|"]
        for f in failed:
            count = "–" if f.unexpected_count is None else str(f.unexpected_count)
            shown = _examples(f.examples) if f.examples else (f.exception or "–")
            lines.append(f"| {f.table} | {f.check} | {f.expectation} | {f.column or '–'} | {count} | {shown} |")
        lines.append("")
    if notes:
        lines += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def _runner(settings: Settings) -> GxRunner:
    root = settings.var_dir / "validation"
    return GxRunner(project_dir=root / "gx", docs_dir=root / "data_docs")


def _quarantine_and_notify(settings: Settings, outcome: ValidationOutcome, result: dict[str, Any],
                           sender: Notifier) -> None:
    summary = render_summary(outcome.week, outcome.source_path, outcome.failed, rows=outcome.rows,
                             error=outcome.error, notes=outcome.notes)
    outcome.quarantine_path = store.quarantine(settings, outcome.week, outcome.source_path, result, summary)
    sender.event("batch_quarantined", {
        "week": outcome.week, "quarantine_path": str(outcome.quarantine_path),
        "source_path": str(outcome.source_path) if outcome.source_path else None, "rows": outcome.rows,
        "failed_checks": outcome.failed_checks, "error": outcome.error, "run_id": outcome.run_id,
        "data_docs": str(outcome.data_docs) if outcome.data_docs else None}, body=summary)


def validate_week(settings: Settings, week: int, *, now: int | datetime | None = None,
                  channels: list[Channel] | None = None, reference: Reference | None = None) -> ValidationOutcome:
    """Validate the incoming batch of ``week``; accept it into the store or quarantine it (see module doc).

    ``now`` (unix seconds or an aware datetime; default: the wall clock) bounds the timestamps from above.
    ``channels`` default to :func:`recsys.notify.channels` (built first: a misconfigured channel fails before
    anything is read, naming the variable). Raises BatchFileError only when the week's
    folder holds no batch file at all (nothing to quarantine); an unreadable file gives a failed outcome.
    """
    started = time.perf_counter()
    sender = notify.notifier(settings, channels)
    try:
        outcome, runs = _validate_week(settings, week, now, sender, reference, started)
    finally:
        sender.close()
    if runs:
        outcome.data_docs = _runner(settings).publish(runs)
    return outcome


def validate_weeks(settings: Settings, weeks: Iterable[int], *, reference: Reference | None = None,
                   channels: list[Channel] | None = None) -> list[ValidationOutcome]:
    """:func:`validate_week` for each of ``weeks`` in order, with one notifier, and the Data Docs built once at the
    end for every run (the site builder costs more than the checks: 3.5 of 6.2 s a week when built per week)."""
    started = time.perf_counter()
    sender = notify.notifier(settings, channels)
    outcomes, runs = [], []
    try:
        for week in weeks:
            outcome, week_runs = _validate_week(settings, week, None, sender, reference, started)
            outcomes.append(outcome)
            runs += week_runs
            started = time.perf_counter()
    finally:
        sender.close()
    if runs:
        docs = _runner(settings).publish(runs)
        for outcome in outcomes:
            outcome.data_docs = docs
    return outcomes


def _validate_week(settings: Settings, week: int, now: int | datetime | None, sender: Notifier,
                   reference: Reference | None, started: float) -> tuple[ValidationOutcome, list[SuiteRun]]:
    """Check one week and accept or quarantine it; its suite runs are returned for the Data Docs."""
    now_ts = int(now.timestamp()) if isinstance(now, datetime) else (int(time.time()) if now is None else int(now))
    ref = reference or load_reference(settings.raw_dir)
    ref.clock.check_week(week)
    source = find_batch_file(store.week_dir(settings.batches_dir, week))
    runner = _runner(settings)
    hist = store.history(settings, week)
    outcome = ValidationOutcome(week=week, success=False, source_path=source, history_weeks=list(hist.weeks),
                                volume_band=hist.volume_band())
    try:
        batch = read_batch(source, week)
    except BatchFileError as exc:
        outcome.error = str(exc)
        outcome.data_docs = runner.docs_index
        _quarantine_and_notify(settings, outcome, {"success": False, "error": str(exc), "week": week}, sender)
        outcome.seconds = time.perf_counter() - started
        return outcome, []

    check = check_batch(batch, week, ref, runner, history=hist, now=now_ts)
    outcome.rows, outcome.failed, outcome.notes = len(batch), check.failed, check.notes
    outcome.unknown_users, outcome.run_id = check.unknown_users, check.runs[-1].run_id
    if S.USER in batch.columns and S.ITEM in batch.columns:
        seen_users, seen_items = store.seen_ids(settings, list(hist.weeks))
        outcome.new_users = _unseen(batch[S.USER], seen_users)
        outcome.new_items = _unseen(batch[S.ITEM], seen_items)
    outcome.data_docs = runner.docs_index  # the site the runs are published to (rebuilt after the checks)
    if check.success:
        outcome.success = True
        outcome.store_path = store.accept(settings, week, batch, run_id=outcome.run_id)
    else:
        result = {"success": False, "week": week, "suites": {r.name: r.raw for r in check.runs}}
        _quarantine_and_notify(settings, outcome, result, sender)
    outcome.seconds = time.perf_counter() - started
    return outcome, check.runs


def _unseen(column: pd.Series, seen: np.ndarray) -> int:
    """How many distinct values of ``column`` (NaN aside) are not in the sorted ``seen``."""
    values = pd.Index(pd.unique(column.dropna()))
    return int(len(values) - values.isin(seen).sum())


def batch_of_week(interactions: pd.DataFrame, clock: ReplayClock, week: int) -> pd.DataFrame:
    """The replay's batch of ``week`` with the batch dtypes (what ``write_week`` stores), for tests and demos."""
    return interactions_of_week(interactions, clock, week).assign(**{S.WEEK: np.int16(week)})
