"""``recsys schedule``: the replay clock of a scheduler: a logical date's replay week, and what a retrain then does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, settings
from recsys.cli.train import ConfigOption

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="The replay clock of a scheduler (Airflow's logical dates): RECSYS_REPLAY_START.",
                  no_args_is_help=True)
DateOption = Annotated[datetime | None, typer.Option("--date", help="The run's logical date (UTC), e.g. 1997-12-08.")]
WeekOption = Annotated[int | None, typer.Option("--week", help="The replay week itself (overrides --date).")]


@app.command()
def week(logical_date: DateOption = None, replay_week_: WeekOption = None, as_json: JsonOption = False) -> None:
    """The replay week a run at this logical date handles (the week that ended last before it)."""
    from recsys.stages.schedule import WeekParams, replay_week

    cfg = settings()
    result = run(lambda: replay_week(cfg, WeekParams(logical_date=logical_date, week=replay_week_),
                                     reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        where = "" if result.in_range else f" (outside the timeline 0..{result.n_weeks - 1}: nothing to replay)"
        when = "the week given" if result.logical_date is None else f"{result.logical_date:%Y-%m-%d %H:%M} UTC"
        yield (f"{when} -> replay week {result.week}{where}: "
               f"{result.week_start:%Y-%m-%d} .. {result.week_end:%Y-%m-%d} (week 0 starts {result.replay_start})")

    emit(result, as_json, render)


@app.command()
def retrain(
    logical_date: Annotated[datetime | None, typer.Option(
        "--date", help="The run's logical date (UTC); default: after the newest validated batch.")] = None,
    newest_week: Annotated[int | None, typer.Option(
        "--week", help="The newest week the retrain sees (overrides --date).")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """What a retrain at this logical date trains and gates, and whether it can (exit 0 either way)."""
    from recsys.stages.inputs import load_train_config
    from recsys.stages.schedule import RetrainPlanParams, retrain_plan

    cfg = settings()
    result = run(lambda: retrain_plan(cfg, RetrainPlanParams(logical_date=logical_date, week=newest_week,
                                                             config=load_train_config(cfg, config)),
                                      reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        yield f"{'trainable' if result.trainable else 'not trainable'} (now = week {result.now_week}): {result.reason}"

    emit(result, as_json, render)
