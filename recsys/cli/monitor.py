"""``recsys monitor ctr``: attributed CTR per model version against its baseline (a typed degradation signal);
``recsys monitor live``: the live recommendation metrics the service exports; ``recsys monitor dashboards``: every
Grafana panel's query against a Prometheus; ``recsys monitor stack``: Prometheus and Alertmanager beside the
service; ``recsys monitor signals``: whether drift or a CTR drop fires a retrain trigger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, serving_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="Watch served traffic: CTR degradation per model version, the live recommendation metrics, "
                       "the Grafana dashboards' queries, the local Prometheus and Alertmanager.",
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


@app.command()
def signals(
    cooldown_hours: Annotated[float | None, typer.Option("--cooldown-hours", min=0, help="At most one trigger per "
                                                         "this many hours (default: signals.cooldown_hours, "
                                                         "24).")] = None,
    min_impressions: Annotated[int | None, typer.Option("--min-impressions", min=0, help="New impressions needed "
                                                        "since the last trigger (default: signals.min_impressions, "
                                                        "500).")] = None,
    max_age_minutes: Annotated[float | None, typer.Option("--max-age-minutes", min=0.01, help="An older check "
                                                          "result is stale (default: signals.max_age_minutes, "
                                                          "60).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide without recording a trigger.")] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Recorded with the trigger (the DAG run).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Whether the latest drift and CTR results fire a retrain trigger (fire_drift, fire_performance), after the
    cooldown and the minimum new traffic; exit 0 either way (read the result)."""
    from recsys.monitoring.signals import SignalConfig
    from recsys.stages.inputs import load_section
    from recsys.stages.signals import SignalParams
    from recsys.stages.signals import signals as decide

    cfg = serving_settings(None)
    config = run(lambda: load_section(cfg, "signals", SignalConfig, cooldown_hours=cooldown_hours,
                                      min_impressions=min_impressions, max_age_minutes=max_age_minutes))
    result = run(lambda: decide(cfg, SignalParams(config=config, dry_run=dry_run, run_id=run_id), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        table = Table("signal", "raised", "fired", "reason")
        for name, d in (("drift", result.drift), ("performance", result.performance)):
            table.add_row(name, "yes" if d.raised else "no", "YES" if d.fired else "no", d.reason)
        yield table
        until = result.cooldown_until.isoformat() if result.cooldown_until else "-"
        yield (f"{result.new_impressions:,} new impressions (min {result.min_impressions:,}); cooldown until {until};"
               f" recorded: {result.recorded or '-'}{' (dry run)' if result.dry_run else ''}")

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


@app.command()
def stack(
    target: Annotated[str, typer.Option(help="The service to scrape (host:port).")] = "localhost:3000",
    prometheus_port: Annotated[int, typer.Option(min=1, max=65535)] = 9090,
    alertmanager_port: Annotated[int, typer.Option(min=1, max=65535)] = 9093,
    scrape_interval: Annotated[str, typer.Option(help="Scrape and rule evaluation interval.")] = "15s",
) -> None:
    """Run Prometheus (the repository's rules) and Alertmanager (its routing, to RECSYS_SMTP_* and
    RECSYS_SLACK_WEBHOOK_URL) beside the service until interrupted."""
    import signal
    import threading

    from recsys.monitoring.stack import running
    from recsys.settings import Settings, load
    from recsys.stages.stack import StackParams, start_stack

    cfg = run(lambda: load(Settings))
    params = StackParams(target=target, prometheus_port=prometheus_port, alertmanager_port=alertmanager_port,
                         scrape_interval=scrape_interval)
    result, daemons = run(lambda: start_stack(cfg, params))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running(*daemons):
        to = [name for name, on in (("e-mail", result.email), ("Slack", result.slack)) if on] or ["nobody (set "
              "RECSYS_SMTP_HOST/RECSYS_SMTP_TO or RECSYS_SLACK_WEBHOOK_URL)"]
        REPORTER.note(f"Prometheus {result.prometheus_url} (alerts: {result.prometheus_url}/alerts), Alertmanager "
                      f"{result.alertmanager_url}; alerts go to {' and '.join(to)}; Ctrl-C stops both")
        while not stop.wait(1.0):
            if any(d.proc.poll() is not None for d in daemons):
                dead = next(d for d in daemons if d.proc.poll() is not None)
                REPORTER.note(f"{dead.name} exited: {dead.log_tail(500)}")
                raise typer.Exit(1)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
