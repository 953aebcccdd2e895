"""The Grafana dashboards of the recommendation service, as code (Grafana Foundation SDK), and their JSON files.

Six dashboards read the service's ``/metrics`` through the Prometheus data source provisioned with the fixed uid
``prometheus`` (``monitoring/grafana/provisioning``): Service, Models, Recommendations, Experiment, Drift and SLO.
The JSON under ``monitoring/grafana/dashboards`` is generated from here and committed, so Grafana provisions it
without Python; ``python -m recsys.monitoring.dashboards --out monitoring/grafana/dashboards`` regenerates it, and
a unit test fails when the committed files are stale.

The panels use raw metrics only (no recording rules), so they work against any Prometheus scraping the service.
A ratio whose numerator has no series yet (no 5xx, no cache hit, no cold start) is written with :func:`share`,
which answers 0 rather than "No data" while its denominator exists. The only template variable is ``$variant``
(a regex, always matched with ``=~``); :mod:`recsys.monitoring.panels` runs every panel's query against a real
Prometheus with the variables substituted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, ThresholdsConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphTresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    GridPos,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from recsys.monitoring.panels import DEFAULT_DIR

DATASOURCE_UID = "prometheus"
"""The provisioned data source's uid (``provisioning/datasources/prometheus.yaml``): dashboards refer to it only."""
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
REFRESH = "30s"
RATE = "$__rate_interval"
AVAILABILITY_SLO = 0.999
LATENCY_SLO = 0.99
LATENCY_TARGET = "0.05"
"""The latency SLI's bound in seconds, spelled as BentoML's bucket label (``le="0.05"``)."""
VARIANT = 'variant=~"$variant"'

Panel = timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel
Steps = Sequence[tuple[str, float | None]]


# -- PromQL fragments ------------------------------------------------------------------------------------------
def rate(metric: str, selector: str = "", window: str = RATE) -> str:
    return f"rate({metric}{{{selector}}}[{window}])"


def share(part: str, whole: str, by: str = "") -> str:
    """``sum(part) / sum(whole)`` per the ``by`` labels, 0 where ``part`` has no series but ``whole`` has.

    A counter with labels appears only once it is first incremented: without the ``or`` a service that never
    answered 5xx would show "No data" for its error share instead of 0 %.
    """
    agg = f"sum by ({by})" if by else "sum"
    return f"({agg} ({part}) or 0 * {agg} ({whole})) / {agg} ({whole})"


def quantile(q: float, bucket: str, selector: str = "", by: str = "", window: str = RATE) -> str:
    labels = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(bucket, selector, window)}))"


def requests_5xx(window: str = RATE) -> str:
    return rate("bentoml_service_request_total", 'http_response_code=~"5.."', window)


def requests_all(window: str = RATE) -> str:
    return rate("bentoml_service_request_total", "", window)


def availability_bad(window: str) -> str:
    """The share of answers that were 5xx over ``window`` (1 - the availability SLI)."""
    return share(requests_5xx(window), requests_all(window))


def latency_sli(window: str) -> str:
    """The share of /predict answers within the latency target over ``window``."""
    within = rate("bentoml_service_request_duration_seconds_bucket", f'endpoint="/predict", le="{LATENCY_TARGET}"',
                  window)
    count = rate("bentoml_service_request_duration_seconds_count", 'endpoint="/predict"', window)
    return f"sum({within}) / sum({count})"


# -- panel helpers --------------------------------------------------------------------------------------------
def query(expr: str, legend: str = "", *, instant: bool = False, as_table: bool = False) -> Dataquery:
    q = Dataquery().expr(expr).datasource(DATASOURCE).legend_format(legend or "__auto")
    if as_table:
        q = q.format(PromQueryFormat.TABLE)
    return q.instant() if instant or as_table else q.range()


def thresholds(steps: Steps) -> ThresholdsConfig:
    """Absolute steps ``(color, from)``; the first one's ``from`` is None (the base)."""
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for c, v in steps])


def states(**texts: tuple[str, str]) -> list[Any]:
    """Value mappings for a 0/1 gauge: ``states(**{"0": ("ok", "green"), "1": ("DRIFT", "red")})``."""
    return [ValueMap(options={value: ValueMappingResult(text=text, color=color, index=i)
                              for i, (value, (text, color)) in enumerate(texts.items())})]


def _common(panel: Panel, title: str, description: str, queries: Sequence[Dataquery], unit: str,
            steps: Steps | None, decimals: int | None) -> None:
    panel.title(title).description(description).datasource(DATASOURCE).unit(unit)
    for ref, q in zip("ABCDEFGH", queries, strict=False):
        panel.with_target(q.ref_id(ref))
    if steps is not None:
        panel.thresholds(thresholds(steps))
    if decimals is not None:
        panel.decimals(decimals)


def graph(title: str, description: str, queries: Sequence[Dataquery], *, unit: str = "short",
          lo: float | None = 0, hi: float | None = None, steps: Steps | None = None, calcs: Sequence[str] = (),
          width: int = 12, height: int = 8, decimals: int | None = None) -> timeseries.Panel:
    """A time series; ``steps`` are drawn as dashed threshold lines, ``calcs`` make the legend a table."""
    panel = timeseries.Panel()
    _common(panel, title, description, queries, unit, steps, decimals)
    legend = common.VizLegendOptions().show_legend(True).placement(LegendPlacement.BOTTOM)
    legend = legend.display_mode(LegendDisplayMode.TABLE if calcs else LegendDisplayMode.LIST).calcs(list(calcs))
    panel.legend(legend).tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    panel.fill_opacity(10).line_width(1).span(width).height(height)
    if steps is not None:
        panel.thresholds_style(common.GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.DASHED))
    if lo is not None:
        panel.min(lo)
    if hi is not None:
        panel.max(hi)
    return panel


def single(title: str, description: str, queries: Sequence[Dataquery], *, unit: str = "short",
           steps: Steps | None = None, mappings: list[Any] | None = None,
           text: BigValueTextMode = BigValueTextMode.AUTO, spark: bool = False, width: int = 6, height: int = 4,
           decimals: int | None = None) -> stat.Panel:
    """A stat (the last value of each series), coloured by ``steps`` or ``mappings``."""
    panel = stat.Panel()
    _common(panel, title, description, queries, unit, steps or [("green", None)], decimals)
    panel.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    panel.color_mode(BigValueColorMode.VALUE).text_mode(text).orientation(VizOrientation.AUTO)
    panel.graph_mode(BigValueGraphMode.AREA if spark else BigValueGraphMode.NONE).span(width).height(height)
    if mappings:
        panel.mappings(mappings)
    return panel


def bars(title: str, description: str, queries: Sequence[Dataquery], *, unit: str = "short",
         steps: Steps | None = None, width: int = 12, height: int = 8) -> bargauge.Panel:
    """Horizontal bars, one per series (a top-k)."""
    panel = bargauge.Panel()
    _common(panel, title, description, queries, unit, steps or [("green", None)], None)
    panel.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    return panel.orientation(VizOrientation.HORIZONTAL).span(width).height(height)


def grid(title: str, description: str, queries: Sequence[Dataquery], *, hide: Sequence[str] = (),
         width: int = 12, height: int = 6) -> table.Panel:
    """A table of the series' labels (``hide``: columns left out)."""
    panel = table.Panel()
    _common(panel, title, description, queries, "short", None, None)
    organize = DataTransformerConfig(id_val="organize", options={"excludeByName": {c: True for c in hide}})
    return panel.with_transformation(organize).show_header(True).span(width).height(height)


def variant_variable() -> QueryVariable:
    """``$variant``: the served aliases (champion, challenger, ...), All by default (``.*``)."""
    return (QueryVariable("variant").label("variant").datasource(DATASOURCE)
            .query("label_values(recsys_predict_requests_total, variant)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .include_all(True).all_value(".*").multi(True)
            .current(VariableOption(selected=True, text="All", value="$__all")))


def dashboard(uid: str, title: str, description: str, panels: Sequence[Panel], *, since: str = "now-6h",
              variables: Sequence[QueryVariable] = ()) -> Dashboard:
    """Panels laid out left to right, wrapping at Grafana's 24 columns, with ids 1, 2, ... in that order."""
    board = (Dashboard(title).uid(uid).description(description).tags(["recsys"]).refresh(REFRESH)
             .time(since, "now").timezone("utc").readonly())
    for variable in variables:
        board.with_variable(variable)
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        pos = panel.build().grid_pos or GridPos()
        if x + pos.w > 24:
            x, y, row_height = 0, y + row_height, 0
        panel.id(panel_id).grid_pos(GridPos(h=pos.h, w=pos.w, x=x, y=y))
        x, row_height = x + pos.w, max(row_height, pos.h)
        board.with_panel(panel)
    return board


# -- the dashboards -------------------------------------------------------------------------------------------
def service() -> Dashboard:
    predict = 'endpoint="/predict"'
    latency = [query(quantile(q, "bentoml_service_request_duration_seconds_bucket", predict), f"p{int(q * 100)}")
               for q in (0.5, 0.95, 0.99)]
    by_version = [query(quantile(q, "recsys_request_latency_seconds_bucket", 'endpoint="predict"', "version"),
                        f"p{int(q * 100)} v{{{{version}}}}") for q in (0.5, 0.95, 0.99)]
    share_steps = [("green", None), ("orange", 0.001), ("red", 0.01)]
    return dashboard("recsys-service", "recsys / Service", "Traffic, latency and errors of the recommendation "
                     "service (BentoML's own metrics and the service's).", [
        graph("Request rate by endpoint and code", "Every answer, 429 and 5xx included.",
              [query(f"sum by (endpoint, http_response_code) ({requests_all()})",
                     "{{endpoint}} {{http_response_code}}")], unit="reqps", calcs=["mean", "max"]),
        graph("/predict latency (BentoML)", "Whole request as the HTTP server timed it, every status.",
              latency, unit="s", steps=[("green", None), ("red", float(LATENCY_TARGET))], calcs=["mean", "max"]),
        graph("/predict latency by model version", "The endpoint handler's time, successes only, per served "
              "version; the ranking inside it is the last series.",
              [*by_version, query(quantile(0.95, "recsys_predict_latency_seconds_bucket"), "p95 ranking")],
              unit="s", calcs=["mean", "max"]),
        graph("5xx share by endpoint", "Share of answers that were server errors (503: no model, 504: timeout).",
              [query(share(requests_5xx(), requests_all(), "endpoint"), "{{endpoint}}")],
              unit="percentunit", steps=share_steps, calcs=["mean", "max"]),
        graph("429 share by endpoint", "Share of answers refused by the rate limiter.",
              [query(share(rate("bentoml_service_request_total", 'http_response_code="429"'), requests_all(),
                               "endpoint"), "{{endpoint}}")],
              unit="percentunit", steps=[("green", None), ("orange", 0.01), ("red", 0.05)], calcs=["mean", "max"]),
        graph("In-flight requests", "Requests being handled right now, summed over the workers.",
              [query("sum by (endpoint) (bentoml_service_request_in_progress)", "{{endpoint}}")],
              calcs=["mean", "max"]),
        graph("Feedback events by type", "Events received by /feedback per second; stored=false were not written.",
              [query(f"sum by (event, stored) ({rate('recsys_feedback_events_total')})",
                     "{{event}} stored={{stored}}")],
              unit="eps", calcs=["mean", "max"]),
        single("Log entries dropped", "Traffic and assignment log entries lost to a full queue in the range "
               "(should be 0).",
               [query("sum(increase(recsys_log_dropped_total[$__range])) or vector(0)", "dropped", instant=True)],
               steps=[("green", None), ("red", 1)], width=12, height=8),
    ])


def models() -> Dashboard:
    age_steps = [("green", None), ("orange", 7 * 86400), ("red", 30 * 86400)]
    return dashboard("recsys-models", "recsys / Models", "Which model version serves each alias, how old it is, "
                     "how swaps went and whether the registry answers.", [
        grid("Serving model per alias", "recsys_model_info: one row per alias (champion, challenger, shadow).",
             [query("max by (alias, name, version, run_id, data_hash) (recsys_model_info)", as_table=True)],
             hide=["Time", "Value"], width=16),
        single("Version per alias", "The registered version each alias serves.",
               [query("max by (alias, version) (recsys_model_info)", "{{alias}}: v{{version}}", instant=True)],
               text=BigValueTextMode.NAME, width=8, height=6),
        graph("Time since the model was loaded", "Per alias, since this service loaded it (restarts reset it).",
              [query("max by (alias) (recsys_model_age_seconds)", "{{alias}}")], unit="s", width=8),
        graph("Time since the model was registered", "Per alias, since its version was registered in MLflow.",
              [query("time() - max by (alias) (recsys_model_registered_timestamp_seconds)", "{{alias}}")],
              unit="s", steps=age_steps, width=8),
        single("Since the last retrain", "Wall-clock time since the last training run finished.",
               [query("time() - max(recsys_last_retrain_timestamp_seconds)", "last retrain", instant=True)],
               unit="s", steps=age_steps, width=8, height=8),
        single("Model swaps in the range", "Model loads by outcome (a failed one keeps the old model serving).",
               [query("sum by (outcome) (increase(recsys_model_swaps_total[$__range]))", "{{outcome}}",
                      instant=True)], text=BigValueTextMode.VALUE_AND_NAME, decimals=0),
        single("Compiled", "1: the alias's model runs compiled (lleaves), 0: interpreted LightGBM.",
               [query("max by (alias) (recsys_model_compiled)", "{{alias}}", instant=True)],
               mappings=states(**{"0": ("interpreted", "orange"), "1": ("compiled", "green")}),
               text=BigValueTextMode.VALUE_AND_NAME),
        single("Registry", "Whether the service's last look-up in the MLflow registry succeeded.",
               [query("min(recsys_registry_up)", "registry", instant=True)],
               mappings=states(**{"0": ("DOWN", "red"), "1": ("UP", "green")})),
        single("Registry errors in the range", "Failed registry look-ups (the current model kept serving).",
               [query("sum(increase(recsys_registry_errors_total[$__range]))", "errors", instant=True)],
               steps=[("green", None), ("orange", 1), ("red", 10)], decimals=0, spark=True),
    ])


def recommendations() -> Dashboard:
    ok = f'{VARIANT}, status="200"'
    scores = [query(quantile(q, "recsys_predict_score_bucket", VARIANT, "variant"), f"p{int(q * 100)} {{{{variant}}}}")
              for q in (0.1, 0.5, 0.9)]
    return dashboard("recsys-recommendations", "recsys / Recommendations", "What the service recommends: cold "
                     "starts, coverage, scores, candidates, the precomputed cache and the shadow model.", [
        graph("Predictions by variant and status", "/predict answers per served alias.",
              [query(f"sum by (variant, status) ({rate('recsys_predict_requests_total', VARIANT)})",
                     "{{variant}} {{status}}")], unit="reqps", calcs=["mean"]),
        graph("Fallback (cold-start) share", "Successful predictions for users the model has never seen, ranked "
              "by the cold-start policy.",
              [query(share(rate("recsys_predict_fallback_total", VARIANT), rate("recsys_predict_requests_total", ok),
                           "variant"), "{{variant}}")], unit="percentunit", hi=1, calcs=["mean", "lastNotNull"]),
        graph("Catalog coverage", "Share of the catalog recommended at least once in the window.",
              [query("max by (window) (recsys_catalog_coverage)", "{{window}}")], unit="percentunit", hi=1),
        graph("Score distribution by variant", "Quantiles of the ranker scores of the served items.",
              scores, unit="short", lo=None),
        graph("Candidates per request", "Candidates the ranker scored per /predict request.",
              [query(quantile(0.5, "recsys_predict_candidates_bucket"), "p50"),
               query(quantile(0.95, "recsys_predict_candidates_bucket"), "p95"),
               query(f"sum({rate('recsys_predict_candidates_sum')}) / sum({rate('recsys_predict_candidates_count')})",
                     "mean")], calcs=["mean"]),
        graph("Precomputed-answer cache hit ratio", "Lookups answered from the precomputed top-k.",
              [query(share(rate("recsys_predict_cache_total", 'result="hit"'), rate("recsys_predict_cache_total")),
                     "hit ratio")], unit="percentunit", hi=1, steps=[("red", None), ("orange", 0.5), ("green", 0.8)]),
        graph("Shadow overlap@10", "How much of the served top 10 the shadow model would also have served.",
              [query(quantile(0.5, "recsys_shadow_overlap_bucket"), "p50"),
               query(f"sum({rate('recsys_shadow_overlap_sum')}) / sum({rate('recsys_shadow_overlap_count')})",
                     "mean")], unit="percentunit", hi=1, width=24),
    ], variables=[variant_variable()])


def experiment() -> Dashboard:
    live = f"sum by (variant) ({rate('recsys_predict_requests_total', VARIANT)})"
    total = f"scalar(sum({rate('recsys_predict_requests_total')}))"
    return dashboard("recsys-experiment", "recsys / Experiment", "The A/B test: CTR and conversion per variant "
                     "and version, assignment shares, sample-ratio mismatch and impressions.", [
        graph("CTR per variant and version", "Clicks per impression in the live check's window.",
              [query(f"max by (variant, version, window) (recsys_variant_ctr{{{VARIANT}}})",
                     "{{variant}} v{{version}} ({{window}})")], unit="percentunit", calcs=["lastNotNull"]),
        graph("Conversion per variant and version", "Watches per impression in the live check's window.",
              [query(f"max by (variant, version, window) (recsys_variant_conversion{{{VARIANT}}})",
                     "{{variant}} v{{version}} ({{window}})")], unit="percentunit", calcs=["lastNotNull"]),
        graph("Attributed CTR against baseline", "The CTR monitor's CTR per version (solid) and its baseline.",
              [query(f"max by (variant, version) (recsys_ctr{{{VARIANT}}})", "{{variant}} v{{version}}"),
               query(f"max by (variant, version) (recsys_ctr_baseline{{{VARIANT}}})",
                     "baseline {{variant}} v{{version}}")], unit="percentunit", calcs=["lastNotNull"]),
        graph("Assignment share", "Logged share of users assigned to each variant (window) and the live share "
              "of /predict requests.",
              [query(f"max by (variant, window) (recsys_assignment_share{{{VARIANT}}})",
                     "logged {{variant}} ({{window}})"),
               query(f"{live} / {total}", "live {{variant}}")], unit="percentunit", hi=1, calcs=["lastNotNull"]),
        single("SRM p-value", "Chi-square test of the assignment counts against the planned split; below 0.001 the "
               "split is broken and the experiment's results are not trustworthy.",
               [query("min by (window) (recsys_srm_p_value)", "{{window}}", instant=True)],
               steps=[("red", None), ("orange", 0.001), ("green", 0.01)], decimals=4, spark=True, width=8, height=8),
        graph("Impressions per variant and version", "Items shown in the live check's window.",
              [query(f"sum by (variant, version, window) (recsys_variant_impressions{{{VARIANT}}})",
                     "{{variant}} v{{version}} ({{window}})")], calcs=["lastNotNull"], width=8),
        single("Since the live check", "Time since the experiment's live metrics were last computed.",
               [query("time() - max(recsys_live_checked_timestamp_seconds)", "live check", instant=True)],
               unit="s", steps=[("green", None), ("orange", 3600), ("red", 6 * 3600)], width=8, height=8),
    ], variables=[variant_variable()])


def drift() -> Dashboard:
    checked_steps = [("green", None), ("orange", 3600), ("red", 6 * 3600)]
    flag = states(**{"0": ("no", "green"), "1": ("YES", "red")})
    return dashboard("recsys-drift", "recsys / Drift", "The drift check (served traffic against the bundle's "
                     "reference) and the CTR degradation monitor.", [
        graph("Drift share", "Share of feature and context columns drifted in each check; the dashed line is "
              "drift.share_threshold. NaN (a gap): too little data for a verdict.",
              [query("max(recsys_drift_share)", "drift share")], unit="percentunit", hi=1,
              steps=[("green", None), ("red", 0.02)]),
        single("Drift detected", "The latest check's verdict.", [query("max(recsys_drift_detected)", "drift",
               instant=True)], mappings=flag, width=4, height=8),
        single("Since the drift check", "Time since the latest drift check ran (stale: the monitor stopped).",
               [query("time() - max(recsys_drift_checked_timestamp_seconds)", "drift check", instant=True)],
               unit="s", steps=checked_steps, width=4, height=8),
        single("CTR degraded", "The CTR monitor's verdict: a version's CTR fell significantly below its baseline.",
               [query("max(recsys_ctr_degraded)", "degraded", instant=True)], mappings=flag, width=4, height=8),
        bars("Top drifted columns", "The ten largest drift scores of the latest check (normed Wasserstein or "
             "Jensen-Shannon, per column's method).",
             [query("topk(10, max by (column, role) (recsys_drift_column_score))", "{{column}} ({{role}})",
                    instant=True)], width=12, height=10),
        graph("Columns drifted", "Columns over their threshold in each check, by role.",
              [query("sum by (role) (recsys_drift_column_drifted)", "{{role}}")], width=12, height=10),
        graph("Rows checked", "Traffic-log rows each check compared.",
              [query("max(recsys_drift_window_rows)", "rows")], width=8),
        graph("CTR relative drop", "Per version, 1 - CTR / baseline CTR (positive: worse than its start).",
              [query("max by (variant, version) (recsys_ctr_relative_drop)", "{{variant}} v{{version}}")],
              unit="percentunit", lo=None, steps=[("green", None), ("red", 0.2)]),
        single("Since the CTR check", "Time since the CTR monitor last ran.",
               [query("time() - max(recsys_ctr_checked_timestamp_seconds)", "CTR check", instant=True)],
               unit="s", steps=checked_steps, width=4, height=8),
    ])


def slo() -> Dashboard:
    avail_sli = f"1 - ({availability_bad('$__range')})"
    budget = [("red", None), ("orange", 0.0), ("green", 0.25)]
    burn_steps = [("green", None), ("orange", 6), ("red", 14.4)]
    sli_steps: dict[str, Steps] = {"avail": [("red", None), ("green", AVAILABILITY_SLO)],
                                   "latency": [("red", None), ("green", LATENCY_SLO)]}
    return dashboard("recsys-slo", "recsys / SLO", f"Availability (non-5xx answers, SLO {AVAILABILITY_SLO:.1%}) "
                     f"and latency (/predict within {float(LATENCY_TARGET) * 1000:.0f} ms, SLO {LATENCY_SLO:.0%}); "
                     "error budgets over 30 days and the 1 h / 6 h burn rates (alert at 14.4 and 6).", [
        single("Availability SLI (range)", "Share of answers that were not 5xx over the dashboard's range.",
               [query(avail_sli, "availability", instant=True)], unit="percentunit", decimals=3,
               steps=sli_steps["avail"]),
        single("Latency SLI (range)", f"Share of /predict answers within {LATENCY_TARGET} s over the range.",
               [query(latency_sli("$__range"), "latency", instant=True)], unit="percentunit", decimals=2,
               steps=sli_steps["latency"]),
        single("Availability budget left (30d)", f"1 - (1 - SLI over 30 d) / (1 - {AVAILABILITY_SLO}).",
               [query(f"1 - ({availability_bad('30d')}) / (1 - {AVAILABILITY_SLO})", "budget", instant=True)],
               unit="percentunit", decimals=1, steps=budget),
        single("Latency budget left (30d)", f"1 - (1 - SLI over 30 d) / (1 - {LATENCY_SLO}).",
               [query(f"1 - (1 - {latency_sli('30d')}) / (1 - {LATENCY_SLO})", "budget", instant=True)],
               unit="percentunit", decimals=1, steps=budget),
        graph("Availability burn rate", "Error-budget burn over 1 h and 6 h (1 = exactly on budget for 30 d).",
              [query(f"({availability_bad(w)}) / (1 - {AVAILABILITY_SLO})", w) for w in ("1h", "6h")],
              steps=burn_steps, calcs=["lastNotNull", "max"]),
        graph("Latency burn rate", "Latency budget burn over 1 h and 6 h.",
              [query(f"(1 - {latency_sli(w)}) / (1 - {LATENCY_SLO})", w) for w in ("1h", "6h")],
              steps=burn_steps, calcs=["lastNotNull", "max"]),
        graph("SLIs over 1 h", "Both SLIs over a sliding hour.",
              [query(f"1 - ({availability_bad('1h')})", "availability"), query(latency_sli("1h"), "latency")],
              unit="percentunit", lo=None, hi=1, decimals=3, width=24),
    ], since="now-24h")


BUILDERS = {"service": service, "models": models, "recommendations": recommendations, "experiment": experiment,
            "drift": drift, "slo": slo}
"""File stem -> dashboard: ``<stem>.json`` under the dashboards dir."""


def dashboard_json(board: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain data)."""
    data: dict[str, Any] = json.loads(JSONEncoder().encode(board.build()))
    return data


def render(data: dict[str, Any]) -> str:
    """The file text: sorted keys, two-space indent and a final newline, so regenerating is byte-stable."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{stem}.json": render(dashboard_json(build())) for stem, build in BUILDERS.items()}


def stale_files(out_dir: Path) -> list[str]:
    """The file names under ``out_dir`` that differ from the generated ones (missing, changed or left over)."""
    expected = generate()
    present = {p.name for p in out_dir.glob("*.json")} if out_dir.is_dir() else set()
    changed = [name for name, text in expected.items()
               if not (out_dir / name).is_file() or (out_dir / name).read_text(encoding="utf-8") != text]
    return sorted(changed + sorted(present - set(expected)))


def write(out_dir: Path) -> list[Path]:
    """Write every dashboard's JSON into ``out_dir`` and remove stale ``*.json`` it no longer generates."""
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = generate()
    for old in out_dir.glob("*.json"):
        if old.name not in expected:
            old.unlink()
    paths = []
    for name, text in expected.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recsys.monitoring.dashboards", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help=f"output directory (default: {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)


if __name__ == "__main__":
    main()
