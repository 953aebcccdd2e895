"""The dashboard check stage: run every Grafana panel's PromQL against a Prometheus, optionally render PNGs.

A panel passes when each of its targets returned data (one non-NaN value at least); a target that errs or is empty
names the panel in ``failing``. The dashboards are read from their committed JSON (``monitoring/grafana/dashboards``
by default), i.e. exactly what Grafana provisions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.monitoring.panels import BUILTINS, DEFAULT_DIR, PrometheusError, QueryOutcome
from recsys.stages.base import SILENT, Reporter, StageError, StageResult


class DashboardCheckParams(BaseModel):
    prometheus_url: str = Field(description="Prometheus base URL, e.g. http://localhost:9090")
    dashboards_dir: Path = Field(DEFAULT_DIR, description="the dashboard JSON files")
    rate_interval: str = Field(BUILTINS["__rate_interval"], description="what $__rate_interval stands for")
    range: str = Field(BUILTINS["__range"], description="what $__range stands for in the instant queries")
    render_dir: Path | None = Field(None, description="also draw each dashboard as <uid>.png here")
    render_hours: float = Field(1.0, gt=0, description="the rendered time range, up to now")
    render_step: float = Field(15.0, gt=0, description="seconds between the rendered points")


class PanelCheck(BaseModel):
    dashboard: str
    panel: str
    panel_id: int
    has_data: bool
    empty: list[str] = Field(default_factory=list, description="ref ids of the targets without data")
    errors: list[str] = Field(default_factory=list, description="'<ref>: <message>' of the targets that failed")
    outcomes: list[QueryOutcome]


class DashboardCheckResult(StageResult):
    prometheus_url: str
    checked_at: datetime
    panels: list[PanelCheck]
    failing: int = Field(description="panels with a target that returned no data or an error")
    rendered: list[Path] = Field(default_factory=list)


def check_dashboards(params: DashboardCheckParams, *, reporter: Reporter = SILENT) -> DashboardCheckResult:
    """Query every panel once (instant, now) and group the outcomes by panel; render when asked."""
    from recsys.monitoring.panels import panel_queries, render_panels, run_queries

    if not params.dashboards_dir.is_dir():
        raise StageError(f"{params.dashboards_dir} is not a directory (run from the repository root, or pass "
                         "--dashboards)")
    queries = panel_queries(params.dashboards_dir)
    substitutions = {"__rate_interval": params.rate_interval, "__interval": params.rate_interval,
                     "__range": params.range}
    now = datetime.now(UTC)
    reporter.note(f"{len(queries)} panel queries from {params.dashboards_dir} against {params.prometheus_url}")
    try:
        with reporter.status("querying Prometheus"):
            outcomes = run_queries(params.prometheus_url, queries, at=now, substitutions=substitutions)
        rendered: list[Path] = []
        if params.render_dir is not None:
            with reporter.status(f"rendering into {params.render_dir}"):
                rendered = render_panels(params.prometheus_url, params.dashboards_dir, params.render_dir,
                                         start=now - timedelta(hours=params.render_hours), end=now,
                                         step=params.render_step, substitutions={"__rate_interval":
                                                                                 params.rate_interval})
    except PrometheusError as exc:
        raise StageError(str(exc)) from exc
    by_panel: dict[tuple[str, int], list[QueryOutcome]] = {}
    for outcome in outcomes:
        by_panel.setdefault((outcome.query.dashboard_uid, outcome.query.panel_id), []).append(outcome)
    panels = []
    for group in by_panel.values():
        first = group[0].query
        empty = [o.query.ref_id for o in group if not o.has_data and o.error is None]
        errors = [f"{o.query.ref_id}: {o.error}" for o in group if o.error is not None]
        panels.append(PanelCheck(dashboard=first.dashboard, panel=first.panel, panel_id=first.panel_id,
                                 has_data=not empty and not errors, empty=empty, errors=errors, outcomes=group))
    return DashboardCheckResult(prometheus_url=params.prometheus_url, checked_at=now, panels=panels,
                                failing=sum(not p.has_data for p in panels), rendered=rendered)
