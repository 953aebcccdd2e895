"""The Prometheus rules and the Alertmanager config: the real promtool and amtool, and what they cannot check.

promtool checks the configs and runs the rule unit tests (monitoring/prometheus/tests); amtool checks the
Alertmanager config and where representative alerts are routed. The Python checks hold the conventions the tools
do not know: every alert is complete (for, severity, summary, description, runbook), has its runbook page, is
tested both firing and quiet, and reads only metrics the service exports. Without promtool or amtool installed
(`make monitoring-tools`) the tool tests skip; CI installs them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "monitoring" / "prometheus"
ALERTMANAGER = ROOT / "monitoring" / "alertmanager"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/recsys-mlops/recsys/blob/main/docs/runbooks/"

# What the service's /metrics exports (bentos/service.py, recsys/monitoring/metrics.py and BentoML's own), by
# base name: a histogram's _bucket/_count/_sum and a counter's _total are its series.
EXPORTED = {
    "up",  # Prometheus' own, per target
    # BentoML
    "bentoml_service_request", "bentoml_service_request_duration_seconds", "bentoml_service_request_in_progress",
    "bentoml_service_last_request_timestamp_seconds",
    # serving
    "recsys_predict_requests", "recsys_predict_fallback", "recsys_predict_latency_seconds",
    "recsys_request_latency_seconds", "recsys_predict_candidates", "recsys_predict_score", "recsys_shadow_overlap",
    "recsys_predict_cache", "recsys_model_compiled",
    "recsys_model_swaps", "recsys_registry_errors", "recsys_registry_up", "recsys_feedback_events",
    "recsys_log_dropped", "recsys_model_info", "recsys_model_age_seconds", "recsys_model_registered_timestamp_seconds",
    # drift and CTR checks
    "recsys_drift_share", "recsys_drift_detected", "recsys_drift_checked_timestamp_seconds", "recsys_drift_window_rows",
    "recsys_drift_column_score", "recsys_drift_column_drifted",
    "recsys_ctr", "recsys_ctr_baseline", "recsys_ctr_relative_drop", "recsys_ctr_degraded",
    "recsys_ctr_checked_timestamp_seconds",
    # live recommendation metrics
    "recsys_catalog_coverage", "recsys_variant_impressions", "recsys_variant_ctr", "recsys_variant_conversion",
    "recsys_assignment_share", "recsys_srm_p_value", "recsys_last_retrain_timestamp_seconds",
    "recsys_live_checked_timestamp_seconds",
}
SUFFIXES = ("_bucket", "_count", "_sum", "_total")

# Who gets paged: changing this set is a decision about people's nights, not a refactoring.
PAGING = {"RecsysServiceDown", "RecsysServiceMissing", "RecsysAvailabilityBudgetBurnFast",
          "RecsysLatencyBudgetBurnFast"}
# The end-to-end alerting test shortens only these alerts' `for:`; they must be plain gauge conditions.
PLAIN_GAUGE = {"RecsysServiceDown": "up", "RecsysRegistryUnreachable": "recsys_registry_up"}
# Pages that other components' notifications link (recsys.notify events, the service's swap failures).
EVENT_PAGES = ("batch-quarantined", "gate-rejected", "approval-requested", "promoted", "rolled-back",
               "model-swap-failed", "drift-detected", "ctr-degraded")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of kind "alert" or "record" in the rule files."""
    found = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        found += [rule for group in load(path)["groups"] for rule in group["rules"] if kind in rule]
    return found


ALERTS = {rule["alert"]: rule for rule in rules("alert")}
RECORDED = {rule["record"] for rule in rules("record")}


def runbook_name(alert: str) -> str:
    """``RecsysModelSwapFailed`` -> ``model-swap-failed``: the alert name without its prefix, in kebab case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", alert.removeprefix("Recsys")).lower()


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make monitoring-tools installs it)")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, check=False)


# -- promtool ---------------------------------------------------------------------------------------------------


def test_prometheus_config_and_its_rule_files_are_valid() -> None:
    result = run(tool("promtool"), "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout
    assert f"{len(RECORDED)} rules found" in result.stdout and f"{len(ALERTS)} rules found" in result.stdout


def test_rules_are_valid() -> None:
    result = run(tool("promtool"), "check", "rules", *sorted((PROMETHEUS / "rules").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", *sorted((PROMETHEUS / "tests").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_catch_a_broken_alert(tmp_path: Path) -> None:
    """The unit tests bite: with RecsysServiceDown's condition inverted, they fail on that alert."""
    shutil.copytree(PROMETHEUS / "rules", tmp_path / "rules")
    shutil.copytree(PROMETHEUS / "tests", tmp_path / "tests")
    alerts = tmp_path / "rules" / "alerts.yml"
    text = alerts.read_text(encoding="utf-8")
    assert 'expr: up{job="recsys"} == 0' in text
    alerts.write_text(text.replace('expr: up{job="recsys"} == 0', 'expr: up{job="recsys"} == 1'), encoding="utf-8")
    result = run(tool("promtool"), "test", "rules", tmp_path / "tests" / "service.yml")
    assert result.returncode != 0
    assert "alertname: RecsysServiceDown" in result.stdout + result.stderr


# -- amtool -----------------------------------------------------------------------------------------------------


def test_alertmanager_config_is_valid() -> None:
    result = run(tool("amtool"), "check-config", ALERTMANAGER / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"alertname": "RecsysServiceDown", "job": "recsys", "severity": "critical"}, "critical"),
    ({"alertname": "RecsysDriftDetected", "job": "recsys", "severity": "warning"}, "slack"),
    ({"alertname": "RecsysDriftCheckStale", "job": "recsys", "severity": "info"}, "slack-info"),
    ({"alertname": "Watchdog"}, "slack"),  # no severity: the default
])
def test_alerts_are_routed_by_severity(labels: dict[str, str], receiver: str) -> None:
    pairs = [f"{k}={v}" for k, v in labels.items()]
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER / 'alertmanager.yml'}",
                 f"--verify.receivers={receiver}", *pairs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_templates_render() -> None:
    text = '{{ template "recsys.title" . }}|{{ template "recsys.text" . }}|{{ template "recsys.color" . }}'
    result = run(tool("amtool"), "template", "render", f"--template.glob={ALERTMANAGER / 'templates' / '*.tmpl'}",
                 f"--template.text={text}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Labels: " in result.stdout and "Runbook: " in result.stdout


def test_critical_reaches_email_and_slack_and_nothing_holds_a_secret() -> None:
    config = load(ALERTMANAGER / "alertmanager.yml")
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) >= {"email", "slack", "critical"}
    assert receivers["critical"]["email_configs"] and receivers["critical"]["slack_configs"]
    for receiver in receivers.values():
        for email in receiver.get("email_configs", []):
            assert "auth_password" not in email and email["auth_password_file"].startswith("/etc/alertmanager/")
            assert email["send_resolved"] is True
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack and slack["api_url_file"].startswith("/etc/alertmanager/")
            assert slack["send_resolved"] is True


def test_service_down_inhibits_the_rest_of_its_job() -> None:
    inhibit = load(ALERTMANAGER / "alertmanager.yml")["inhibit_rules"]
    down = [r for r in inhibit if any("RecsysServiceDown" in m for m in r["source_matchers"])]
    assert len(down) == 1 and down[0]["equal"] == ["job"]
    assert any(r["source_matchers"] == ['severity="critical"'] and r["target_matchers"] == ['severity="warning"']
               and set(r["equal"]) == {"alertname", "job"} for r in inhibit)


# -- conventions of the rules ----------------------------------------------------------------------------------


def test_every_alert_is_complete() -> None:
    assert len(ALERTS) >= 20
    for name, rule in ALERTS.items():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert "$labels" in annotations["description"] or "$value" in annotations["description"], name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{runbook_name(name)}.md", name


def test_only_the_chosen_alerts_page() -> None:
    assert {n for n, r in ALERTS.items() if r["labels"]["severity"] == "critical"} == PAGING


@pytest.mark.parametrize(("alert", "metric"), PLAIN_GAUGE.items())
def test_end_to_end_alerts_are_plain_gauge_conditions(alert: str, metric: str) -> None:
    expr = ALERTS[alert]["expr"]
    assert "[" not in expr and re.match(rf"{metric}\b", expr) and expr.rstrip().endswith("== 0")


def test_every_runbook_exists_names_its_alert_and_is_indexed() -> None:
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    for name, rule in ALERTS.items():
        page = ROOT / rule["annotations"]["runbook_url"].removeprefix(
            "https://github.com/recsys-mlops/recsys/blob/main/")
        assert page.is_file(), f"{name}: {page} is missing"
        assert name in page.read_text(encoding="utf-8"), f"{page.name} does not name {name}"
        assert f"({page.name})" in index, f"{page.name} is not in docs/runbooks/README.md"
    for event in EVENT_PAGES:
        assert (RUNBOOKS / f"{event}.md").is_file(), event
        assert f"({event}.md)" in index, event


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(ALERTS) - firing == set(), "never tested firing"
    assert set(ALERTS) - quiet == set(), "never tested quiet"
    assert (firing | quiet) - set(ALERTS) == set(), "tests of alerts that do not exist"


def test_rules_read_only_exported_metrics_and_recorded_series() -> None:
    """Every metric name in an expression or an annotation's query is exported, or recorded by a rule."""
    unknown = set()
    for rule in rules("alert") + rules("record"):
        text = " ".join([rule["expr"], *rule.get("annotations", {}).values()])
        for name in re.findall(r"(?<![\w:])(?:(?:recsys|bentoml)_[a-z0-9_]+|up)(?![\w:])", text):
            base = next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s)), name)
            if name not in EXPORTED and base not in EXPORTED:
                unknown.add(name)
        for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", text):
            if name not in RECORDED:
                unknown.add(name)
    assert unknown == set()


def test_slo_document_states_the_targets_and_burn_rates() -> None:
    slo = (ROOT / "docs" / "slo.md").read_text(encoding="utf-8")
    for fact in ("99.9 %", "99 %", "50 ms", "30 days", "14.4", "6x", "3x", "1x"):
        assert fact in slo, fact
