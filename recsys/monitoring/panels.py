"""Every dashboard panel's PromQL, run against a real Prometheus: does each return data, and what does it draw?

Grafana cannot run here, so the dashboards are proven by their queries: :func:`panel_queries` reads the committed
JSON, :func:`run_queries` sends each expression to Prometheus' HTTP API (``/api/v1/query``) with Grafana's
variables replaced the way Grafana would (``$__rate_interval`` → ``1m``, ``$__range`` → ``1h``, a template variable
→ ``.*``, which the panels always match with ``=~``), and :func:`render_panels` draws each dashboard's panels from
range queries into one PNG, laid out on Grafana's own grid, for the docs.

A query "has data" when its result holds at least one value that is not NaN: a ratio of two absent rates is NaN in
Prometheus and an empty panel in Grafana alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

DEFAULT_DIR = Path("monitoring") / "grafana" / "dashboards"
"""Where the generated dashboard JSON is committed, relative to the repository root."""
BUILTINS: dict[str, str] = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
"""Grafana's built-in variables and what they become in an instant query (Grafana: from the scrape interval and
the time range)."""
ANY = ".*"
"""What a template variable (``$variant``) becomes: all values, as Grafana's All with ``allValue: .*``."""
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
METRIC = re.compile(r"\b(?:recsys|bentoml)_[a-zA-Z0-9_]+|\bjob:[a-zA-Z0-9_:]+")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class PrometheusError(ValueError):
    """Prometheus could not be reached or did not answer as its HTTP API does (not a panel's fault)."""


class PanelQuery(BaseModel):
    """One target of one panel, as the dashboard JSON holds it."""

    dashboard: str = Field(description="the dashboard's title")
    dashboard_uid: str
    panel: str = Field(description="the panel's title")
    panel_id: int
    panel_type: str
    ref_id: str
    expr: str = Field(description="the PromQL with Grafana's variables still in it")
    legend: str = ""
    instant: bool = False
    unit: str = "short"


class QueryOutcome(BaseModel):
    """What Prometheus answered to one panel query."""

    query: PanelQuery
    sent: str = Field(description="the expression after substitution, as sent")
    has_data: bool
    series: int = Field(0, description="series (or 1 for a scalar) with at least one non-NaN value")
    error: str | None = None


def _panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels") or [])
        else:
            yield panel


def read_dashboards(dashboards_dir: Path) -> list[dict[str, Any]]:
    """The dashboard JSON models under ``dashboards_dir``, by file name."""
    paths = sorted(dashboards_dir.glob("*.json"))
    if not paths:
        raise ValueError(f"no dashboard JSON in {dashboards_dir} (generate it: python -m recsys.monitoring.dashboards"
                         f" --out {dashboards_dir})")
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def queries_of(board: Mapping[str, Any]) -> list[PanelQuery]:
    """The targets of one dashboard's panels (hidden targets and text panels left out)."""
    found = []
    for panel in _panels(board.get("panels") or []):
        unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit") or "short"
        for target in panel.get("targets") or []:
            if target.get("hide") or "expr" not in target:
                continue
            found.append(PanelQuery(
                dashboard=board.get("title", ""), dashboard_uid=board.get("uid", ""), panel=panel.get("title", ""),
                panel_id=panel.get("id", 0), panel_type=panel.get("type", ""), ref_id=target.get("refId", ""),
                expr=target["expr"], legend=target.get("legendFormat") or "", instant=bool(target.get("instant")),
                unit=unit))
    return found


def panel_queries(dashboards_dir: Path) -> list[PanelQuery]:
    """Every panel target with an expression, over the ``*.json`` dashboards in ``dashboards_dir``."""
    return [q for board in read_dashboards(dashboards_dir) for q in queries_of(board)]


def metric_names(expr: str) -> set[str]:
    """The recsys, BentoML and recording-rule (``job:...``) metric names an expression reads."""
    return set(METRIC.findall(expr))


def template_variables(expr: str) -> set[str]:
    """The variables (built-in or template) an expression uses, without ``$``."""
    return {next(g for g in m.groups() if g) for m in VARIABLE.finditer(expr)}


def substitute(expr: str, substitutions: Mapping[str, str] | None = None) -> str:
    """``expr`` with Grafana's variables replaced: the built-ins from ``substitutions`` (over :data:`BUILTINS`), any
    template variable by ``.*``. An unknown built-in (``$__...``) is an error: guessing it would test nothing."""
    values = {**BUILTINS, **(substitutions or {})}

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in values:
            return values[name]
        if name.startswith("__"):
            raise ValueError(f"no value for Grafana's ${name} (pass it in substitutions)")
        return ANY

    return VARIABLE.sub(replace, expr)


def _values(data: Mapping[str, Any]) -> list[list[float]]:
    """The values of each series in a query result (a scalar is one series of one value)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [[float(result[1])]] if result else []
    if kind == "vector":
        return [[float(s["value"][1])] for s in result or []]
    if kind == "matrix":
        return [[float(v) for _, v in s["values"]] for s in result or []]
    return []  # "string": not a panel's kind of answer


def _get(client: httpx.Client, path: str, params: Mapping[str, str | float]) -> dict[str, Any]:
    """One API call; a query error is returned as ``{"error": ...}``, a transport failure raised."""
    try:
        response = client.get(path, params=dict(params))
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus at {client.base_url} is unreachable: {exc}") from exc
    try:
        body: dict[str, Any] = response.json()
    except ValueError as exc:
        raise PrometheusError(f"{client.base_url}{path} answered {response.status_code} without JSON: "
                              f"{response.text[:200]}") from exc
    if body.get("status") != "success":
        return {"error": f"{body.get('errorType', response.status_code)}: {body.get('error', response.text[:200])}"}
    data: dict[str, Any] = body["data"]
    return data


def _timestamp(at: datetime | float | None) -> float | None:
    return at.timestamp() if isinstance(at, datetime) else at


def run_queries(prometheus_url: str, queries: Sequence[PanelQuery], *, at: datetime | float | None = None,
                substitutions: Mapping[str, str] | None = None, timeout: float = 30.0) -> list[QueryOutcome]:
    """Run each query as an instant query (at ``at``, default now) and say whether it returned data or an error.

    An expression Prometheus rejects, or one using an unknown built-in variable, is an outcome with ``error``; an
    unreachable Prometheus raises :class:`PrometheusError`, since then no panel was tested.
    """
    when = _timestamp(at)
    outcomes = []
    with httpx.Client(base_url=prometheus_url.rstrip("/"), timeout=timeout) as client:
        for q in queries:
            try:
                sent = substitute(q.expr, substitutions)
            except ValueError as exc:
                outcomes.append(QueryOutcome(query=q, sent=q.expr, has_data=False, error=str(exc)))
                continue
            params: dict[str, str | float] = {"query": sent} if when is None else {"query": sent, "time": when}
            data = _get(client, "/api/v1/query", params)
            if "error" in data:
                outcomes.append(QueryOutcome(query=q, sent=sent, has_data=False, error=data["error"]))
                continue
            series = sum(1 for values in _values(data) if any(not math.isnan(v) for v in values))
            outcomes.append(QueryOutcome(query=q, sent=sent, has_data=series > 0, series=series))
    return outcomes


# -- rendering ------------------------------------------------------------------------------------------------
def format_value(value: float, unit: str) -> str:
    """A value in a panel's Grafana unit, roughly as Grafana writes it."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value:.1%}"
    if unit == "s":
        for size, suffix in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
            if abs(value) >= size:
                return f"{value / size:.3g} {suffix}"
        return f"{value * 1000:.3g} ms"
    if unit in ("reqps", "eps"):
        return f"{value:.3g}/s"
    return f"{value:.4g}"


def legend_of(legend: str, labels: Mapping[str, str]) -> str:
    """Grafana's legend format (``{{variant}} v{{version}}``) filled from a series' labels."""
    if not legend or legend == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), legend)


def _mapped(value: float, panel: Mapping[str, Any]) -> str | None:
    for mapping in ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("mappings") or []:
        if mapping.get("type") == "value" and not math.isnan(value):
            hit = mapping.get("options", {}).get(f"{value:g}")
            if hit:
                return str(hit.get("text"))
    return None


def _draw(ax: Any, panel: Mapping[str, Any], series: list[tuple[str, list[datetime], list[float]]],
          unit: str) -> None:
    from matplotlib.dates import DateFormatter
    from matplotlib.ticker import FuncFormatter

    ax.set_title(panel.get("title", ""), fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    kind = panel.get("type")
    if kind == "timeseries" and series:
        for label, times, values in series:
            ax.plot(times, values, label=label, linewidth=1)
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=UTC))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
        return
    last = [(label, values[-1]) for label, _, values in series]
    if kind == "bargauge" and series:
        ranks = range(len(last))[::-1]  # the first series on top, as Grafana lists them
        ax.barh(list(ranks), [v for _, v in last], alpha=0.6)
        for rank, (label, v) in zip(ranks, last, strict=True):
            ax.text(0, rank, f" {label}: {format_value(v, unit)}", va="center", fontsize=7)
        ax.set_yticks([])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
        return
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_alpha(0.3)
    text_mode = (panel.get("options") or {}).get("textMode")
    if kind == "table" or text_mode == "name":
        lines = [label for label, _ in last[:8]]  # a table of labels; a stat that shows only the series' name
    else:
        lines = [f"{label}: {_mapped(v, panel) or format_value(v, unit)}" for label, v in last[:8]]
    ax.text(0.5, 0.5, "\n".join(lines) or "No data", ha="center", va="center", transform=ax.transAxes,
            fontsize=12 if len(lines) == 1 else 8, color="black" if lines else "grey")


PANEL_MARGINS = (0.75, 0.12, 0.3, 0.4)
"""Inches of each panel's cell kept free left (tick labels), right, top (title) and bottom (time axis)."""
GRID_UNIT = 0.42
"""Inches of one Grafana grid row in the PNG (the figure is 18 inches wide for the 24 columns)."""


def render_panels(prometheus_url: str, dashboards_dir: Path, out_dir: Path, *, start: datetime, end: datetime,
                  step: float = 15.0, substitutions: Mapping[str, str] | None = None,
                  timeout: float = 30.0) -> list[Path]:
    """Draw each dashboard's panels from range queries over ``start..end`` into ``<out_dir>/<uid>.png``.

    Panels sit where Grafana puts them (their ``gridPos`` on the 24-column grid); a time series is drawn as lines,
    a stat as its last values (value mappings applied), a bar gauge as bars, a table as its rows' labels.
    ``$__range`` is the rendered range. Returns the PNG paths.
    """
    from matplotlib.figure import Figure

    span = f"{max(1, round((end - start).total_seconds()))}s"
    values = {"__range": span, **(substitutions or {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with httpx.Client(base_url=prometheus_url.rstrip("/"), timeout=timeout) as client:
        for board in read_dashboards(dashboards_dir):
            panels = list(_panels(board.get("panels") or []))
            rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=1)
            width, height, header = 18.0, GRID_UNIT * rows + 0.6, 0.6
            fig = Figure(figsize=(width, height))
            fig.suptitle(f"{board.get('title', '')}   {start:%Y-%m-%d %H:%M} – {end:%H:%M} UTC", fontsize=12,
                         y=1 - 0.15 / height)
            left, right, top, bottom = PANEL_MARGINS
            for panel in panels:
                pos = panel["gridPos"]  # Grafana's grid: 24 columns, rows of GRID_UNIT from the top
                x0, x1 = width * pos["x"] / 24 + left, width * (pos["x"] + pos["w"]) / 24 - right
                y_top = height - header - GRID_UNIT * pos["y"] - top
                y_bottom = height - header - GRID_UNIT * (pos["y"] + pos["h"]) + bottom
                ax = fig.add_axes((x0 / width, y_bottom / height, (x1 - x0) / width, (y_top - y_bottom) / height))
                drawn = []
                for q in queries_of({**board, "panels": [panel]}):
                    data = _get(client, "/api/v1/query_range", {"query": substitute(q.expr, values),
                                                                "start": start.timestamp(), "end": end.timestamp(),
                                                                "step": step})
                    for s in data.get("result") or []:
                        points = [(datetime.fromtimestamp(t, UTC), float(v)) for t, v in s["values"]]
                        drawn.append((legend_of(q.legend, s["metric"]), [t for t, _ in points],
                                      [v for _, v in points]))
                unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit") or "short"
                _draw(ax, panel, drawn, unit)
            path = out_dir / f"{board.get('uid', 'dashboard')}.png"
            fig.savefig(path, dpi=90)
            paths.append(path)
    return paths
