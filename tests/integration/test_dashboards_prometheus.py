"""Every Grafana panel's PromQL against a real Prometheus scraping a synthetic /metrics (recsys.monitoring.panels).

The exposition is built with prometheus_client from a CollectorRegistry holding every metric the panels read, with
the service's names, labels and buckets; counters and histograms move on each scrape so that rates exist. What the
service really exports is proven by the end-to-end test; this one proves the query runner, the renderer, the CLI and
that the dashboards' PromQL is valid and finds what it should (and reports it when it does not).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.monitoring.dashboards import write
from recsys.monitoring.panels import PanelQuery, metric_names, panel_queries, render_panels, run_queries
from tests.prom import prometheus_server, requires_prometheus, wait_for_samples

pytestmark = requires_prometheus
BENTO_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
SERVICE = {"service_name": "recsys", "service_version": "test"}
ALIASES = ("champion", "challenger", "shadow")


class SyntheticService:
    """The service's metric families in a private registry; :meth:`tick` is one scrape interval of traffic."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("bentoml_service_request", "", ["endpoint", "http_response_code", *SERVICE],
                                registry=r)
        self.duration = Histogram("bentoml_service_request_duration_seconds", "", ["endpoint", "http_response_code",
                                  *SERVICE], buckets=BENTO_BUCKETS, registry=r)
        self.in_progress = Gauge("bentoml_service_request_in_progress", "", ["endpoint", *SERVICE], registry=r)
        self.predictions = Counter("recsys_predict_requests", "", ["variant", "status"], registry=r)
        self.fallbacks = Counter("recsys_predict_fallback", "", ["variant"], registry=r)
        self.predict_latency = Histogram("recsys_predict_latency_seconds", "", buckets=LATENCY_BUCKETS, registry=r)
        self.request_latency = Histogram("recsys_request_latency_seconds", "", ["endpoint", "version"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.candidates = Histogram("recsys_predict_candidates", "", buckets=(0, 10, 50, 100, 200, 500, 1000),
                                    registry=r)
        self.scores = Histogram("recsys_predict_score", "", ["variant"], buckets=(-4, -2, -1, 0, 1, 2, 4), registry=r)
        self.overlap = Histogram("recsys_shadow_overlap", "", buckets=(0.1, 0.3, 0.5, 0.7, 0.9, 1.0), registry=r)
        self.swaps = Counter("recsys_model_swaps", "", ["outcome"], registry=r)
        self.registry_errors = Counter("recsys_registry_errors", "", registry=r)
        self.feedback = Counter("recsys_feedback_events", "", ["event", "variant", "stored"], registry=r)
        self.cache = Counter("recsys_predict_cache", "", ["result"], registry=r)
        self.gauges: dict[str, Gauge] = {}
        for name, labels in {
            "recsys_model_info": ["alias", "name", "version", "run_id", "data_hash"],
            "recsys_model_age_seconds": ["alias"], "recsys_model_compiled": ["alias"], "recsys_registry_up": [],
            "recsys_model_registered_timestamp_seconds": ["alias"], "recsys_drift_share": [],
            "recsys_drift_detected": [], "recsys_drift_checked_timestamp_seconds": [], "recsys_drift_window_rows": [],
            "recsys_drift_column_score": ["column", "role"], "recsys_drift_column_drifted": ["column", "role"],
            "recsys_ctr": ["variant", "version"], "recsys_ctr_baseline": ["variant", "version"],
            "recsys_ctr_relative_drop": ["variant", "version"], "recsys_ctr_degraded": [],
            "recsys_ctr_checked_timestamp_seconds": [], "recsys_catalog_coverage": ["window"],
            "recsys_variant_impressions": ["variant", "version", "window"],
            "recsys_variant_ctr": ["variant", "version", "window"],
            "recsys_variant_conversion": ["variant", "version", "window"],
            "recsys_assignment_share": ["variant", "window"], "recsys_srm_p_value": ["window"],
            "recsys_last_retrain_timestamp_seconds": [], "recsys_live_checked_timestamp_seconds": [],
        }.items():
            self.gauges[name] = Gauge(name, "", labels, registry=r)
        self.lock = threading.Lock()
        self.ticks = 0

    def families(self) -> set[str]:
        """The metric names a PromQL expression can read (counters' _total, histograms' _bucket/_sum/_count)."""
        return {s.name for m in self.registry.collect() for s in m.samples}

    def tick(self) -> None:
        with self.lock:
            self.ticks += 1
            t = self.ticks
            self._traffic(t)
            self._gauges(t)

    def _traffic(self, t: int) -> None:
        # 200s and 429s only: the 5xx panels must answer 0 %, not "No data", when no error was ever counted
        for endpoint, code, n in (("/predict", "200", 20), ("/predict", "429", 1), ("/feedback", "200", 5)):
            self.requests.labels(endpoint, code, *SERVICE.values()).inc(n)
            for i in range(n):
                self.duration.labels(endpoint, code, *SERVICE.values()).observe(0.004 + 0.01 * (i % 8))
        self.in_progress.labels("/predict", *SERVICE.values()).set(t % 3)
        for variant, version in (("champion", "3"), ("challenger", "4")):
            self.predictions.labels(variant, "200").inc(10)
            self.fallbacks.labels(variant).inc(1)
            self.scores.labels(variant).observe(0.5 if variant == "champion" else -0.5)
            self.request_latency.labels("predict", version).observe(0.003)
            self.request_latency.labels("feedback", version).observe(0.001)
            self.feedback.labels("click", variant, "true").inc(2)
        self.predict_latency.observe(0.002)
        self.candidates.observe(180)
        self.overlap.observe(0.7)
        self.cache.labels("hit").inc(3)
        self.cache.labels("miss").inc(1)
        if t == 1:
            self.swaps.labels("succeeded").inc()
        self.registry_errors.inc(0)

    def _gauges(self, t: int) -> None:
        import time

        g, now = self.gauges, time.time()
        for i, alias in enumerate(ALIASES):
            g["recsys_model_info"].labels(alias, "content-ranker", str(3 + i), f"run{i}", "abc").set(1)
            g["recsys_model_age_seconds"].labels(alias).set(60 + t)
            g["recsys_model_compiled"].labels(alias).set(i % 2)
            g["recsys_model_registered_timestamp_seconds"].labels(alias).set(now - 86400 * (i + 1))
        g["recsys_registry_up"].set(1)
        g["recsys_drift_share"].set(0.05)
        g["recsys_drift_detected"].set(1)
        g["recsys_drift_checked_timestamp_seconds"].set(now - 120)
        g["recsys_drift_window_rows"].set(1100)
        for column, score in (("item_pop", 2.0), ("user_is_cold", 0.3), ("ctx_hour_offset", 0.1)):
            g["recsys_drift_column_score"].labels(column, "feature").set(score)
            g["recsys_drift_column_drifted"].labels(column, "feature").set(1 if score > 1 else 0)
        g["recsys_ctr_degraded"].set(0)
        g["recsys_ctr_checked_timestamp_seconds"].set(now - 300)
        g["recsys_catalog_coverage"].labels("24h").set(0.4)
        g["recsys_srm_p_value"].labels("24h").set(0.4)
        g["recsys_last_retrain_timestamp_seconds"].set(now - 3 * 86400)
        g["recsys_live_checked_timestamp_seconds"].set(now - 60)
        for variant, version in (("champion", "3"), ("challenger", "4")):
            g["recsys_ctr"].labels(variant, version).set(0.11)
            g["recsys_ctr_baseline"].labels(variant, version).set(0.12)
            g["recsys_ctr_relative_drop"].labels(variant, version).set(0.08)
            g["recsys_variant_impressions"].labels(variant, version, "24h").set(5000)
            g["recsys_variant_ctr"].labels(variant, version, "24h").set(0.1)
            g["recsys_variant_conversion"].labels(variant, version, "24h").set(0.03)
            g["recsys_assignment_share"].labels(variant, "24h").set(0.5)


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[SyntheticService, str]]:
    """The synthetic service on a free port: ``(service, host:port)``; each GET /metrics is one tick."""
    svc = SyntheticService()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            svc.tick()
            body = generate_latest(svc.registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield svc, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def prometheus(service: tuple[SyntheticService, str]) -> Iterator[str]:
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "recsys", "static_configs": [{"targets": [service[1]]}]}]}
    with prometheus_server(config) as url:
        wait_for_samples(url, "recsys_registry_up", 5)
        yield url


@pytest.fixture(scope="module")
def dashboards_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboards as generated (equal to the committed ones: tests/unit/test_dashboards.py)."""
    out = tmp_path_factory.mktemp("dashboards")
    write(out)
    return out


def test_the_synthetic_exposition_serves_every_metric_the_panels_read(service: tuple[SyntheticService, str],
                                                                      dashboards_dir: Path) -> None:
    svc = service[0]
    svc.tick()
    used = {name for q in panel_queries(dashboards_dir) for name in metric_names(q.expr)}
    # recsys_log_dropped_total appears only once something is dropped: its panel answers `or vector(0)`
    assert used - svc.families() == {"recsys_log_dropped_total"}


def test_every_panel_query_returns_data(prometheus: str, dashboards_dir: Path) -> None:
    queries = panel_queries(dashboards_dir)
    outcomes = run_queries(prometheus, queries)
    assert len(outcomes) == len(queries) > 50
    failed = [(o.query.dashboard, o.query.panel, o.query.ref_id, o.error, o.sent) for o in outcomes if not o.has_data]
    assert failed == []
    assert all(o.error is None and o.series >= 1 and "$" not in o.sent for o in outcomes)


def test_the_error_share_is_zero_not_empty_when_no_5xx_was_counted(prometheus: str, dashboards_dir: Path) -> None:
    """The `or 0 * whole` idiom: an error-free service shows 0 %, and a real value still wins over the 0."""
    panel = [q for q in panel_queries(dashboards_dir) if q.panel == "5xx share by endpoint"]
    (outcome,) = run_queries(prometheus, panel)
    assert outcome.has_data and outcome.series == 2  # /predict and /feedback
    import httpx

    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": outcome.sent}).json()["data"]["result"]
    assert {s["metric"]["endpoint"]: float(s["value"][1]) for s in result} == {"/predict": 0.0, "/feedback": 0.0}
    (rate_limited,) = run_queries(prometheus, [q for q in panel_queries(dashboards_dir)
                                               if q.panel == "429 share by endpoint"])
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": rate_limited.sent}).json()["data"]["result"]
    shares = {s["metric"]["endpoint"]: float(s["value"][1]) for s in result}
    assert shares["/feedback"] == 0.0
    assert shares["/predict"] == pytest.approx(1 / 21, rel=0.05)


def test_missing_metrics_nan_and_bad_queries_are_reported(prometheus: str) -> None:
    def q(expr: str) -> PanelQuery:
        return PanelQuery(dashboard="t", dashboard_uid="t", panel="p", panel_id=1, panel_type="timeseries",
                          ref_id="A", expr=expr)

    missing, nan, bad, builtin, present = run_queries(prometheus, [
        q("sum(rate(recsys_no_such_metric_total[$__rate_interval]))"),
        q("sum(rate(recsys_no_such_metric_total[1m])) / sum(rate(recsys_no_such_metric_total[1m])) or vector(0) / 0"),
        q("sum(rate(recsys_predict_requests_total[$__rate_interval])"),
        q("rate(recsys_predict_requests_total[$__unknown])"),
        q('sum(rate(recsys_predict_requests_total{variant=~"$variant"}[$__rate_interval]))'),
    ])
    assert (missing.has_data, missing.error, missing.sent) == (False, None,
                                                             "sum(rate(recsys_no_such_metric_total[1m]))")
    assert (nan.has_data, nan.error) == (False, None)
    assert not bad.has_data and bad.error is not None and "parse" in bad.error
    assert not builtin.has_data and "__unknown" in (builtin.error or "")
    assert present.has_data and present.sent == 'sum(rate(recsys_predict_requests_total{variant=~".*"}[1m]))'


def test_render_draws_one_png_per_dashboard(prometheus: str, dashboards_dir: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    end = datetime.now(UTC)
    paths = render_panels(prometheus, dashboards_dir, tmp_path, start=end - timedelta(minutes=2), end=end, step=2)
    boards = {json.loads(p.read_text())["uid"] for p in dashboards_dir.glob("*.json")}
    assert {p.stem for p in paths} == boards
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_the_cli_checks_every_panel_and_fails_on_a_missing_metric(prometheus: str, dashboards_dir: Path,
                                                                  tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["monitor", "dashboards", "--prometheus", prometheus, "--dashboards",
                             str(dashboards_dir), "--json"])
    assert ok.exit_code == 0, ok.output
    result = json.loads(ok.stdout)
    panels = sum(len(json.loads(p.read_text())["panels"]) for p in dashboards_dir.glob("*.json"))
    assert result["failing"] == 0 and len(result["panels"]) == panels

    broken = tmp_path / "broken"
    shutil.copytree(dashboards_dir, broken)
    board = json.loads((broken / "models.json").read_text())
    board["panels"][-1]["targets"][0]["expr"] = "max(recsys_registry_up_typo)"
    (broken / "models.json").write_text(json.dumps(board))
    failing = runner.invoke(app, ["monitor", "dashboards", "--prometheus", prometheus, "--dashboards", str(broken)])
    assert failing.exit_code == 2, failing.output
    assert "no data" in failing.stdout and board["panels"][-1]["title"] in failing.stdout
    assert f"{panels - 1}/{panels} panels returned data" in failing.stdout
