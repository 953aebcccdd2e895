"""``recsys simulate``: replay the weeks after the champion's cut as real users asking a live service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, settings

if TYPE_CHECKING:
    from rich.console import RenderableType


class InjectKind(StrEnum):
    user_mix = "user_mix"
    context = "context"
    item_shock = "item_shock"


def simulate(
    url: Annotated[str, typer.Option(help="The service's base URL.")] = "http://127.0.0.1:3000",
    from_week: Annotated[int | None, typer.Option(
        "--from-week", min=0, help="First replayed week (default: the served champion's training cut).")] = None,
    to_week: Annotated[int | None, typer.Option("--to-week", min=0, help="Last replayed week (inclusive).")] = None,
    rate: Annotated[float, typer.Option(min=0.001, help="Most requests per second.")] = 200.0,
    week_seconds: Annotated[float, typer.Option(
        "--week-seconds", min=0, help="Time compression: one data week in this many seconds (0: as fast as "
                                      "--rate allows).")] = 0.0,
    duration: Annotated[float, typer.Option(min=0.001, help="Stop after this many seconds.")] = 600.0,
    max_requests: Annotated[int | None, typer.Option("--max-requests", min=1, help="Stop after this many "
                                                                                  "requests.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice (a seed replays identically).")] = 0,
    n: Annotated[int, typer.Option(min=1, max=100, help="Items asked per request.")] = 10,
    click_horizon_days: Annotated[float, typer.Option(
        "--click-horizon-days", min=0.001, help="A rating this long after an impression that showed the item "
                                                "is a click on it.")] = 1.0,
    dismiss_rate: Annotated[float, typer.Option(
        "--dismiss-rate", min=0, max=1, help="Share of answers whose best unwatched item is dismissed.")] = 0.0,
    exclude_seen: Annotated[bool, typer.Option(
        "--exclude-seen/--no-exclude-seen", help="Send what the user rated earlier in the replay as exclude (the "
                                                 "service then ranks in full instead of looking up).")] = True,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Requests in flight at most.")] = 32,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the service to be up with a "
                                                    "champion.")] = 0.0,
    inject: Annotated[InjectKind | None, typer.Option(
        help="Drift to inject from --inject-at: user_mix (only --segment visits), context (hour shifted by "
             "--hour-shift), item_shock (a block of long-tail items suddenly popular).")] = None,
    inject_at: Annotated[datetime | None, typer.Option(
        "--inject-at", help="Simulated time (UTC) the drift starts, e.g. 1998-04-13T00:00:00.")] = None,
    segment: Annotated[str, typer.Option(help="user_mix: age:LO-HI, occupation:NAME or gender:M|F.")] = "age:18-24",
    hour_shift: Annotated[int, typer.Option("--hour-shift", min=1, max=23, help="context: hours added.")] = 12,
    shock_items: Annotated[int, typer.Option("--shock-items", min=1, max=500, help="item_shock: block "
                                                                                   "size.")] = 20,
    shock_share: Annotated[float, typer.Option("--shock-share", min=0.001, max=1, help="item_shock: share of "
                                                                                       "later ratings moved.")] = 0.8,
    as_json: JsonOption = False,
) -> None:
    """Replay real users (in their real order; new users as cold starts) against a live service, with clicks."""
    from recsys.cli.common import fail
    from recsys.experiments.simulator import Injection, SimulationConfig
    from recsys.stages.simulate import SimulateParams
    from recsys.stages.simulate import simulate as simulate_stage

    if (inject is None) != (inject_at is None):
        fail("--inject and --inject-at go together")
    injection = None if inject is None else run(lambda: Injection(
        kind=inject.value, at=inject_at, segment=segment, hour_shift=hour_shift, shock_items=shock_items,
        shock_share=shock_share))
    cfg = settings()
    params = run(lambda: SimulationConfig(
        url=url.rstrip("/"), from_week=from_week, to_week=to_week, n=n, rate=rate, week_seconds=week_seconds,
        duration=duration, max_requests=max_requests, seed=seed, click_horizon_days=click_horizon_days,
        dismiss_rate=dismiss_rate, exclude_seen=exclude_seen, concurrency=concurrency, inject=injection))
    result = run(lambda: simulate_stage(cfg, SimulateParams(simulation=params, wait=wait), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        sim = result.simulation
        yield (f"weeks {sim.from_week}..{sim.to_week} ({sim.sim_start:%Y-%m-%d} .. {sim.sim_end:%Y-%m-%d %H:%M}): "
               f"{sim.requests:,} requests in {sim.seconds:.1f} s ({sim.requests_per_second:,.0f}/s), "
               f"{sim.answered:,} answered, {sim.failed_requests} failed, {sim.fallback:,} cold starts; "
               f"stopped by {sim.stopped_by}")
        yield (f"feedback: {sim.feedback_acked:,}/{sim.feedback_sent:,} acknowledged, {sim.feedback_failed} "
               f"never acknowledged, {sim.duplicates} duplicates")
        table = Table("variant", "requests", "clicks", "watches", "dismisses", "clicks/request")
        for variant, tally in sim.by_variant.items():
            share = tally.clicks / tally.requests if tally.requests else 0.0
            table.add_row(variant, f"{tally.requests:,}", f"{tally.clicks:,}", f"{tally.watches:,}",
                          f"{tally.dismisses:,}", f"{share:.3f}")
        yield table

    emit(result, as_json, render)
