"""``recsys monitor ctr``: attributed CTR per model version against its baseline (a typed degradation signal);
``recsys monitor dashboards``: every Grafana panel's query against a Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, serving_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="Watch served traffic: CTR degradation per model version; the Grafana dashboards' queries.",
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
def dashboards(
    prometheus: Annotated[str, typer.Option("--prometheus", help="Prometheus base URL (http://host:9090).")],
    dashboards_dir: Annotated[Path, typer.Option("--dashboards", help="The dashboard JSON files.")] = Path(
        "monitoring/grafana/dashboards"),
    rate_interval: Annotated[str, typer.Option("--rate-interval", help="What $__rate_interval stands for "
                                                                       "(Grafana: 4x the scrape interval).")] = "1m",
    range_: Annotated[str, typer.Option("--range", help="What $__range stands for (the dashboard's time "
                                                        "range).")] = "1h",
    render: Annotated[Path | None, typer.Option("--render", help="Also draw each dashboard as <uid>.png in this "
                                                                 "directory, from the last --render-hours.")] = None,
    render_hours: Annotated[float, typer.Option("--render-hours", min=0.01, help="Rendered range.")] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Run every panel's PromQL once; exit 2 when a panel returned no data (or an error), 0 when all did."""
    from recsys.stages.dashboards import DashboardCheckParams, check_dashboards

    params = DashboardCheckParams(prometheus_url=prometheus, dashboards_dir=dashboards_dir,
                                  rate_interval=rate_interval, range=range_, render_dir=render,
                                  render_hours=render_hours)
    result = run(lambda: check_dashboards(params, reporter=REPORTER))

    def rendered() -> Iterator[RenderableType]:
        from rich.table import Table
        from rich.text import Text

        table = Table("dashboard", "panel", "data")
        for p in result.panels:
            verdict = "yes" if p.has_data else "; ".join([*p.errors, *(f"{ref}: no data" for ref in p.empty)])
            table.add_row(Text(p.dashboard), Text(p.panel), Text(verdict), style=None if p.has_data else "red")
        yield table
        yield f"{len(result.panels) - result.failing}/{len(result.panels)} panels returned data"
        yield from (str(path) for path in result.rendered)

    emit(result, as_json, rendered)
    if result.failing:
        raise typer.Exit(2)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
