"""The replay clock of a scheduler (``recsys schedule``): logical dates to replay weeks, and what a retrain at a
date trains and gates (or why it cannot), on the real data's timeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.settings import Settings
from recsys.stages.schedule import RetrainPlanParams, WeekParams, replay_week, retrain_plan, week_at

runner = CliRunner()


@pytest.mark.parametrize(("when", "week"), [
    (datetime(1997, 9, 22, 3, tzinfo=UTC), 0),   # the Monday after week 0
    (datetime(1997, 9, 21, 23, tzinfo=UTC), -1),  # week 0 has not ended yet
    (datetime(1997, 12, 15, 3, tzinfo=UTC), 12),
    (datetime(1998, 4, 27, 3, tzinfo=UTC), 31),
    (datetime(1998, 4, 29, 12), 31),              # naive: UTC; mid-week still means the week that ended
])
def test_a_logical_date_stands_for_the_week_that_ended_before_it(when: datetime, week: int) -> None:
    assert week_at(date(1997, 9, 15), when) == week


@pytest.fixture
def settings(tmp_path: Path, raw_data_dir: Callable[[Path], Path]) -> Settings:
    return Settings(data_dir=raw_data_dir(tmp_path), var_dir=tmp_path / "var")


def test_the_data_sets_week_zero_unless_a_start_is_configured(settings: Settings) -> None:
    result = replay_week(settings, WeekParams(logical_date=datetime(1997, 12, 15, 3)))
    assert (result.replay_start, result.week, result.in_range, result.n_weeks) == (date(1997, 9, 15), 12, True, 32)
    assert result.week_start == datetime(1997, 12, 8, tzinfo=UTC) and result.week_end == datetime(1997, 12, 15,
                                                                                                   tzinfo=UTC)
    live = settings.model_copy(update={"replay_start": date(2026, 11, 2)})
    assert replay_week(live, WeekParams(logical_date=datetime(2026, 11, 30, 3))).week == 3
    past = replay_week(settings, WeekParams(logical_date=datetime(2026, 12, 7)))
    assert not past.in_range and past.week > 31
    assert replay_week(settings, WeekParams(week=7, logical_date=datetime(2026, 12, 7))).week == 7  # a param wins


def test_a_replay_start_must_be_a_monday() -> None:
    with pytest.raises(ValueError, match="is a Tuesday"):
        Settings(replay_start=date(2026, 12, 1))


def test_a_retrain_plan_trains_as_of_now_minus_h_on_validated_weeks_only(settings: Settings) -> None:
    too_early = retrain_plan(settings, RetrainPlanParams(logical_date=datetime(1997, 12, 8, 3)))
    assert not too_early.trainable and "too early" in too_early.reason and too_early.now_week == 12
    unvalidated = retrain_plan(settings, RetrainPlanParams(week=12))
    assert not unvalidated.trainable and "week 12 is not validated" in unvalidated.reason
    past = retrain_plan(settings, RetrainPlanParams(logical_date=datetime(2026, 12, 7)))
    assert not past.trainable and "outside the replay timeline" in past.reason

    invoke = ["data", "replay", "--week", "12"]
    env = {"RECSYS_DATA_DIR": str(settings.data_dir), "RECSYS_VAR_DIR": str(settings.var_dir)}
    assert runner.invoke(app, invoke, env=env).exit_code == 0
    assert runner.invoke(app, ["validate", "--week", "12"], env=env).exit_code == 0
    plan = retrain_plan(settings, RetrainPlanParams(logical_date=datetime(1997, 12, 15, 3)))
    assert plan.trainable, plan.reason
    assert (plan.now_week, plan.as_of_week, plan.gate_week, plan.through_week) == (13, 9, 13, 12)
    # an asset-triggered run has no date: after the newest validated week
    assert retrain_plan(settings, RetrainPlanParams()).now_week == 13

    shown = runner.invoke(app, ["schedule", "retrain", "--date", "1997-12-15T03:00:00", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["trainable"] is True


def test_the_cli_names_what_is_missing(settings: Settings) -> None:
    env = {"RECSYS_DATA_DIR": str(settings.data_dir), "RECSYS_VAR_DIR": str(settings.var_dir)}
    result = runner.invoke(app, ["schedule", "week"], env=env)
    assert result.exit_code == 1 and "give the run's logical date or the week" in result.stderr
    result = runner.invoke(app, ["schedule", "retrain"], env=env)
    assert result.exit_code == 1 and "no validated weeks" in result.stderr
    result = runner.invoke(app, ["schedule", "week", "--date", "next tuesday"], env=env)
    assert result.exit_code == 2 and "--date" in result.output
