"""The replay clock of a schedule: which replay week an orchestrator's logical date stands for, and what a retrain
at that point trains and gates.

A scheduled run at logical date ``d`` handles the week that *ended* last before ``d``: with ``start`` the Monday of
replay week 0 (``RECSYS_REPLAY_START``, default the data's own week 0, 1997-09-15 for MovieLens-100K), week W
covers ``[start + 7W days, start + 7(W+1) days)`` and the run for it is due at ``start + 7(W+1) days`` (the Monday
after). So a weekly backfill over Mondays 1997-09-22 … 1998-04-27 (UTC) replays weeks 0 … 31, and a live
deployment sets ``RECSYS_REPLAY_START`` to a recent Monday to replay one week per calendar week.

A retrain after week W has seen weeks ≤ W: its "now" is W + 1. It trains as of ``now - H`` (H the held-out
horizon, ``params.yaml`` backtest.horizon) so that the gate can score it, and the champion of the time, on the H
newest weeks ``[now - H, now)``. An asset-triggered run (drift, a CTR drop) has no logical date: its "now" is the
week after the newest validated batch.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, Field

from recsys.config import TrainConfig
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult


class WeekParams(BaseModel):
    logical_date: datetime | None = Field(None, description="the run's logical date (naive: UTC)")
    week: int | None = Field(None, description="the week itself (a run's explicit param): overrides the date")


class WeekResult(StageResult):
    logical_date: datetime | None
    replay_start: date = Field(description="the Monday of replay week 0")
    week: int = Field(description="the replay week that ended last before the logical date")
    n_weeks: int = Field(description="weeks in the replay timeline (0..n_weeks-1)")
    in_range: bool = Field(description="the week is inside the timeline (false: nothing to replay)")
    week_start: datetime
    week_end: datetime


class RetrainPlanParams(BaseModel):
    logical_date: datetime | None = Field(None, description="the run's logical date; None: after the newest "
                                                            "validated batch (an asset-triggered run)")
    week: int | None = Field(None, description="the newest week the retrain sees (a run's explicit param): "
                                               "overrides the date")
    config: TrainConfig = Field(default_factory=TrainConfig)


class RetrainPlanResult(StageResult):
    now_week: int = Field(description="'now': the first week the run has not seen")
    as_of_week: int = Field(description="train on weeks < this one (now - H)")
    gate_week: int = Field(description="the gate scores weeks [gate_week - H, gate_week)")
    through_week: int = Field(description="the newest week the run knows (now - 1): training reads the store up "
                                          "to it, so a rerun trains and hashes the same data")
    horizon: int
    validated_through: int | None = Field(description="the newest validated week in the store")
    trainable: bool = Field(description="a retrain is possible now (the DAG skips the rest when false)")
    reason: str = Field(description="why, in one line")
    source: str = Field(description="week, logical date or store")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _origin(settings: Settings) -> tuple[date, int]:
    """The Monday of replay week 0 for schedules, and the number of weeks in the data's timeline."""
    from recsys.stages.inputs import load_raw

    _, clock = load_raw(settings)
    data_start = datetime.fromtimestamp(clock.origin, UTC).date()
    return settings.replay_start or data_start, clock.n_weeks


def week_at(start: date, logical_date: datetime) -> int:
    """The replay week that ended last before ``logical_date`` (see the module docstring); may be out of range."""
    origin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return (_utc(logical_date) - origin) // timedelta(days=7) - 1


def replay_week(settings: Settings, params: WeekParams, *, reporter: Reporter = SILENT) -> WeekResult:
    """Map a logical date (or an explicit week) to its replay week (``recsys schedule week``)."""
    start, n_weeks = _origin(settings)
    if params.week is None and params.logical_date is None:
        raise StageError("give the run's logical date or the week")
    week = params.week if params.week is not None else week_at(start, params.logical_date)  # type: ignore[arg-type]
    origin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    when = "the week given" if params.week is not None else f"{params.logical_date}"
    reporter.note(f"replay week 0 starts on {start.isoformat()}; {when} -> week {week}")
    return WeekResult(logical_date=None if params.logical_date is None else _utc(params.logical_date),
                      replay_start=start, week=week, n_weeks=n_weeks, in_range=0 <= week < n_weeks,
                      week_start=origin + timedelta(days=7 * week), week_end=origin + timedelta(days=7 * (week + 1)))


def retrain_plan(settings: Settings, params: RetrainPlanParams, *, reporter: Reporter = SILENT) -> RetrainPlanResult:
    """What a retrain at ``params.logical_date`` trains and gates, and whether it can (``recsys schedule retrain``).

    Not trainable (a skip, not an error): the week is before the first trainable one (the ranker needs 2H + 1
    weeks of history), past the timeline, or not validated yet (its batch was quarantined or never ingested).
    """
    from recsys.ranking.train import training_starts
    from recsys.validation.store import accepted_weeks

    h = params.config.backtest.horizon
    weeks = accepted_weeks(settings)
    newest = weeks[-1] if weeks else None
    if params.week is not None or params.logical_date is not None:
        start, n_weeks = _origin(settings)
        if params.week is not None:
            week, source = params.week, "week"
        else:
            week, source = week_at(start, params.logical_date), "logical date"  # type: ignore[arg-type]
        if not 0 <= week < n_weeks:
            return RetrainPlanResult(now_week=week + 1, as_of_week=week + 1 - h, gate_week=week + 1,
                                     through_week=week, horizon=h,
                                     validated_through=newest, trainable=False, source=source,
                                     reason=f"week {week} is outside the replay timeline 0..{n_weeks - 1}")
        now = week + 1
    else:
        if newest is None:
            raise StageError(f"no validated weeks in {settings.store_dir}: run `recsys validate` first")
        now, source = newest + 1, "store"
    as_of = now - h
    reason = f"train as of week {as_of} on weeks < {as_of}, gate on weeks {as_of}..{now - 1}"
    trainable = True
    if as_of < 1 or not training_starts(as_of, params.config):
        trainable = False
        reason = (f"week {now - 1} is too early: the first retrain is after week {3 * h} (the ranker needs "
                  f"{2 * h + 1} weeks of history and the gate {h} more)")
    elif now - 1 not in weeks:
        trainable = False
        reason = f"week {now - 1} is not validated (quarantined or not ingested yet): nothing is retrained"
    reporter.note(reason)
    return RetrainPlanResult(now_week=now, as_of_week=as_of, gate_week=now, through_week=now - 1, horizon=h,
                             validated_through=newest,
                             trainable=trainable, reason=reason, source=source)
