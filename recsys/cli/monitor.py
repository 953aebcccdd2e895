"""``recsys monitor ctr``: attributed CTR per model version against its baseline (a typed degradation signal)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, serving_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="Watch served traffic: CTR degradation per model version.", no_args_is_help=True)


@app.command()
def ctr(
    since: Annotated[datetime | None, typer.Option(help="Window start (UTC); default: --until minus "
                                                        "ctr.window_hours.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Window end (UTC); default: the newest "
                                                        "impression.")] = None,
    window_hours: Annotated[float | None, typer.Option("--window-hours", min=0.001, help="Window length "
                                                       "(default: params.yaml ctr.window_hours).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Each version's CTR over the window against its first impressions; exit 0 either way (read the result)."""
    from recsys.monitoring.ctr import CtrConfig
    from recsys.stages.inputs import load_section
    from recsys.stages.monitor import CtrParams, monitor_ctr

    cfg = serving_settings(None)
    config = run(lambda: load_section(cfg, "ctr", CtrConfig, window_hours=window_hours))
    result = run(lambda: monitor_ctr(cfg, CtrParams(since=since, until=until, config=config), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        rep = result.report
        table = Table("variant", "version", "status", "baseline CTR", "impressions", "CTR", "drop", "p")
        for ch in rep.versions:
            table.add_row(ch.variant, str(ch.version), ch.status, _pct(ch.baseline_ctr), f"{ch.impressions:,}",
                          _pct(ch.ctr), _pct(ch.relative_drop), "-" if ch.p_value is None else f"{ch.p_value:.3g}")
        yield table
        verdict = "PERFORMANCE DEGRADED" if result.performance_degraded else "no degradation"
        yield f"{verdict} (window {rep.start:%Y-%m-%d %H:%M} .. {rep.end:%Y-%m-%d %H:%M}); {result.latest_path}"

    emit(result, as_json, render)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
