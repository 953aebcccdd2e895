"""``recsys monitor ctr``: attributed CTR per model version against its baseline (a typed degradation signal)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, serving_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="Watch served traffic: CTR degradation per model version, the live recommendation metrics.",
                  no_args_is_help=True)


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


@app.command()
def live(
    until: Annotated[datetime | None, typer.Option(help="Window end (UTC); default: the newest impression.")] = None,
    window_minutes: Annotated[float, typer.Option("--window-minutes", min=0.01, help="Window length.")] = 60,
    catalog_items: Annotated[int | None, typer.Option(min=1, help="Catalog size (default: the raw item "
                                                                  "table's).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Coverage, CTR and conversion per variant and version, the split's SRM test, the last retrain; the service
    exports the result as gauges."""
    from datetime import timedelta

    from recsys.monitoring.live import LiveConfig
    from recsys.stages.live import LiveParams, monitor_live

    cfg = serving_settings(None)
    params = LiveParams(until=until, catalog_items=catalog_items,
                        config=LiveConfig(window=timedelta(minutes=window_minutes)))
    result = run(lambda: monitor_live(cfg, params, reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        m = result.metrics
        table = Table("variant", "version", "impressions", "CTR", "conversion", "share")
        for row in m.variants:
            table.add_row(row.variant, str(row.version), f"{row.impressions:,}", _pct(row.ctr), _pct(row.conversion),
                          _pct(m.shares.get(row.variant)))
        yield table
        srm = "-" if m.srm_p_value is None else f"p={m.srm_p_value:.3g} ({'ok' if m.srm_ok else 'MISMATCH'})"
        yield (f"coverage {m.coverage:.1%} ({m.served_items:,} of {m.catalog_items:,} items); SRM {srm}; last retrain "
               f"{m.last_retrain_at or '-'}; {result.latest_path}")

    emit(result, as_json, render)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
