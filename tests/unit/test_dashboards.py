"""The Grafana dashboards as code: the committed JSON is what the code generates, and every panel is well formed.

No Prometheus here: tests/integration/test_dashboards_prometheus.py runs every panel's query against a real one.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys.monitoring.dashboards import BUILDERS, DATASOURCE_UID, generate, stale_files, write
from recsys.monitoring.panels import (
    DEFAULT_DIR,
    metric_names,
    panel_queries,
    queries_of,
    read_dashboards,
    substitute,
    template_variables,
)

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / DEFAULT_DIR
PROVISIONING = REPO / "monitoring" / "grafana" / "provisioning"
REGENERATE = "python -m recsys.monitoring.dashboards --out monitoring/grafana/dashboards"

COUNTERS = {  # exposed as <name>_total
    "bentoml_service_request", "recsys_predict_requests", "recsys_predict_fallback", "recsys_model_swaps",
    "recsys_registry_errors", "recsys_feedback_events", "recsys_log_dropped", "recsys_predict_cache",
}
HISTOGRAMS = {  # exposed as <name>_bucket, _sum, _count
    "bentoml_service_request_duration_seconds", "recsys_predict_latency_seconds", "recsys_request_latency_seconds",
    "recsys_predict_candidates", "recsys_predict_score", "recsys_shadow_overlap",
}
GAUGES = {
    "bentoml_service_request_in_progress", "recsys_model_info", "recsys_model_age_seconds", "recsys_drift_share",
    "recsys_drift_detected", "recsys_drift_checked_timestamp_seconds", "recsys_drift_window_rows", "recsys_ctr",
    "recsys_ctr_baseline", "recsys_ctr_relative_drop", "recsys_ctr_degraded", "recsys_ctr_checked_timestamp_seconds",
    "recsys_model_compiled", "recsys_registry_up", "recsys_model_registered_timestamp_seconds",
    "recsys_drift_column_score", "recsys_drift_column_drifted", "recsys_catalog_coverage",
    "recsys_variant_impressions", "recsys_variant_ctr", "recsys_variant_conversion", "recsys_assignment_share",
    "recsys_srm_p_value", "recsys_last_retrain_timestamp_seconds", "recsys_live_checked_timestamp_seconds",
}
KNOWN = ({f"{c}_total" for c in COUNTERS} | {f"{h}_{s}" for h in HISTOGRAMS for s in ("bucket", "sum", "count")}
         | GAUGES)
"""What the service's /metrics exports (the issue's list); recording rules (job:...) exist in none yet."""
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}


@pytest.fixture(scope="module")
def boards() -> list[dict[str, Any]]:
    return read_dashboards(COMMITTED)


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_the_committed_json_is_what_the_code_generates() -> None:
    stale = stale_files(COMMITTED)
    assert stale == [], f"stale dashboard JSON {stale}: regenerate with `{REGENERATE}` and commit it"


def test_stale_files_names_a_changed_a_missing_and_a_left_over_file(tmp_path: Path) -> None:
    write(tmp_path)
    assert stale_files(tmp_path) == []
    (tmp_path / "slo.json").write_text((tmp_path / "slo.json").read_text().replace("30s", "1m"))
    (tmp_path / "drift.json").unlink()
    (tmp_path / "old.json").write_text("{}")
    assert stale_files(tmp_path) == ["drift.json", "old.json", "slo.json"]
    write(tmp_path)
    assert stale_files(tmp_path) == [] and not (tmp_path / "old.json").exists()


def test_generating_twice_gives_the_same_bytes() -> None:
    assert generate() == generate()


def test_one_file_per_dashboard_with_stable_unique_uids(boards: list[dict[str, Any]]) -> None:
    assert sorted(p.stem for p in COMMITTED.glob("*.json")) == sorted(BUILDERS)
    uids = [b["uid"] for b in boards]
    assert sorted(uids) == sorted(f"recsys-{stem}" for stem in BUILDERS)
    for board in boards:
        assert board["refresh"] == "30s"
        assert board["time"]["from"].startswith("now-") and board["time"]["to"] == "now"
        assert board["title"].startswith("recsys / ")


def test_every_panel_queries_the_provisioned_datasource(boards: list[dict[str, Any]]) -> None:
    for board in boards:
        for panel in panels(board):
            where = f"{board['uid']} / {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
            assert panel.get("options") is not None, where  # null options: Grafana would not apply the defaults
            targets = [t for t in panel["targets"] if t.get("expr", "").strip()]
            assert targets, f"{where} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID, where
                assert target["expr"].strip(), where
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids) and all(ref_ids), where


def test_panel_ids_are_unique_and_panels_do_not_overlap(boards: list[dict[str, Any]]) -> None:
    for board in boards:
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids) and all(isinstance(i, int) and i > 0 for i in ids), board["uid"]
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (board["uid"], panel["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{board['uid']} / {panel['title']} overlaps another panel"
            cells |= mine


def test_every_metric_a_panel_reads_is_exported() -> None:
    used = {name: q for q in panel_queries(COMMITTED) for name in metric_names(q.expr)}
    unknown = {name: f"{q.dashboard} / {q.panel}" for name, q in used.items() if name not in KNOWN}
    assert unknown == {}
    assert not any(name.startswith("job:") for name in used)  # no recording rule is promised yet
    # each of the families is on some dashboard, a histogram through any of its series
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used} | {n for n in used if n in GAUGES}
    assert families >= (COUNTERS | HISTOGRAMS | GAUGES)


def test_template_variables_are_defined_and_only_matched_as_regexes(boards: list[dict[str, Any]]) -> None:
    for board in boards:
        defined = {v["name"] for v in board.get("templating", {}).get("list", [])}
        for variable in board.get("templating", {}).get("list", []):
            assert variable["allValue"] == ".*" and variable["datasource"]["uid"] == DATASOURCE_UID
        for q in queries_of(board):
            for name in template_variables(q.expr) - BUILTIN_VARIABLES:
                assert name in defined, f"{q.dashboard} / {q.panel} uses undefined ${name}"
                assert re.search(rf'=~"\$\{{?{name}\}}?"', q.expr), f"{q.panel}: ${name} must be matched with =~"
                assert not re.search(rf'[^=!]="\$\{{?{name}\}}?"', q.expr), q.panel


def test_panel_queries_reads_every_target(boards: list[dict[str, Any]]) -> None:
    queries = panel_queries(COMMITTED)
    assert len(queries) == sum(len(p["targets"]) for b in boards for p in panels(b))
    slo = [q for q in queries if q.dashboard_uid == "recsys-slo"]
    assert {q.panel for q in slo} >= {"Availability SLI (range)", "Latency burn rate"}
    burn = [q for q in slo if q.panel == "Latency burn rate"]
    assert [q.ref_id for q in burn] == ["A", "B"] and all(q.panel_id > 0 for q in burn)
    assert 'le="0.05"' in burn[0].expr and "[1h]" in burn[0].expr and "[6h]" in burn[1].expr


def test_an_empty_dir_is_an_error_that_says_how_to_generate(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"python -m recsys\.monitoring\.dashboards"):
        panel_queries(tmp_path)


@pytest.mark.parametrize(("expr", "expected"), [
    ("rate(x[$__rate_interval])", "rate(x[1m])"),
    ("increase(x[${__range}])", "increase(x[1h])"),
    ('x{variant=~"$variant"}', 'x{variant=~".*"}'),
    ('x{variant=~"${variant:regex}"}', 'x{variant=~".*"}'),
    ('x{variant=~"[[variant]]"}', 'x{variant=~".*"}'),
    ("x[$__interval]", "x[1m]"),
])
def test_substitute_replaces_grafana_variables(expr: str, expected: str) -> None:
    assert substitute(expr) == expected


def test_substitute_takes_overrides_and_refuses_an_unknown_builtin() -> None:
    assert substitute("x[$__range] y[$__rate_interval]", {"__range": "30m"}) == "x[30m] y[1m]"
    with pytest.raises(ValueError, match="__range_ms"):
        substitute("x * $__range_ms")


def test_metric_names_finds_metrics_not_labels_or_functions() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, variant) (rate(recsys_predict_score_bucket{variant=~"a"}[1m])))'
            " / job:recsys_requests:rate5m + bentoml_service_request_total{http_response_code=\"500\"}")
    assert metric_names(expr) == {"recsys_predict_score_bucket", "job:recsys_requests:rate5m",
                                  "bentoml_service_request_total"}


def test_provisioning_points_grafana_at_the_dashboards_and_the_datasource() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert datasources["apiVersion"] == 1
    (ds,) = datasources["datasources"]
    assert (ds["type"], ds["uid"], ds["url"], ds["isDefault"]) == ("prometheus", DATASOURCE_UID,
                                                                   "http://prometheus:9090", True)
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "recsys.yaml").read_text())
    (provider,) = providers["providers"]
    assert (provider["type"], provider["folder"], provider["allowUiUpdates"]) == ("file", "recsys", False)
    assert provider["options"] == {"path": "/var/lib/grafana/dashboards", "foldersFromFilesStructure": False}


def test_the_json_is_grafana_json() -> None:
    """Keys Grafana's dashboard model reads are where it reads them (a schema drift of the SDK would show here)."""
    board = json.loads((COMMITTED / "service.json").read_text())
    assert board["schemaVersion"] >= 36 and board["panels"][0]["type"] == "timeseries"
    target = board["panels"][0]["targets"][0]
    assert set(target) >= {"expr", "refId", "datasource", "legendFormat"}


def test_the_check_stage_turns_a_missing_dir_and_an_unreachable_prometheus_into_stage_errors(tmp_path: Path) -> None:
    from recsys.stages.base import StageError
    from recsys.stages.dashboards import DashboardCheckParams, check_dashboards

    with pytest.raises(StageError, match="not a directory"):
        check_dashboards(DashboardCheckParams(prometheus_url="http://127.0.0.1:9", dashboards_dir=tmp_path / "no"))
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(StageError, match="unreachable"):
        check_dashboards(DashboardCheckParams(prometheus_url=closed, dashboards_dir=COMMITTED))
