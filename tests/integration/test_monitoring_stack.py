"""``recsys monitor stack``: the real Prometheus and Alertmanager of the embedded default, with the repository's
rules and routing, delivering to the notification settings' destinations (secrets in files only the user reads)."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
import yaml

from recsys.monitoring import stack
from recsys.settings import Settings, SettingsError
from recsys.stages.stack import StackParams, start_stack
from tests.receivers import free_port

pytestmark = pytest.mark.skipif(not (stack.has_binary("prometheus") and stack.has_binary("alertmanager")),
                                reason="Prometheus and Alertmanager are not installed (make monitoring-tools)")


def _params(tmp_path: Path) -> StackParams:
    return StackParams(target="127.0.0.1:1", prometheus_port=free_port(), alertmanager_port=free_port(),
                       scrape_interval="1s", workdir=tmp_path / "stack")


def test_the_stack_loads_every_rule_and_routes_to_the_notification_settings(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", smtp_host="mail.example.org", smtp_to="a@example.org,b@example.org",
                        smtp_password="s3cret", smtp_user="alerts", slack_webhook_url="https://hooks.example/T/B/X")
    result, daemons = start_stack(settings, _params(tmp_path))
    with stack.running(*daemons):
        assert result.email and result.slack
        groups = httpx.get(f"{result.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        files = {Path(p).name: yaml.safe_load(Path(p).read_text()) for p in map(str, stack.rule_files())}
        assert len(rules) == sum(len(g["rules"]) for doc in files.values() for g in doc["groups"])
        assert all(r["health"] != "err" for r in rules)
        status = httpx.get(f"{result.alertmanager_url}/api/v2/status", timeout=10).json()
        config = yaml.safe_load(status["config"]["original"])
        critical = next(r for r in config["receivers"] if r["name"] == "critical")
        email = critical["email_configs"][0]
        assert email["smarthost"] == "mail.example.org:587" and email["to"] == "a@example.org, b@example.org"
        assert email["auth_username"] == "alerts" and email["require_tls"] is True
        secret = Path(email["auth_password_file"])
        assert secret.read_text() == "s3cret" and stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert Path(critical["slack_configs"][0]["api_url_file"]).read_text() == "https://hooks.example/T/B/X"
        assert "s3cret" not in status["config"]["original"]  # only the file's path is in the config
    for daemon in daemons:
        assert daemon.proc.poll() is not None  # stopped


def test_without_destinations_alerts_are_routed_to_nobody_and_a_half_smtp_setup_is_refused(tmp_path: Path) -> None:
    result, daemons = start_stack(Settings(var_dir=tmp_path / "var"), _params(tmp_path))
    with stack.running(*daemons):
        assert not result.email and not result.slack
        config = yaml.safe_load(httpx.get(f"{result.alertmanager_url}/api/v2/status", timeout=10)
                                .json()["config"]["original"])
        assert not any(r.get("email_configs") or r.get("slack_configs") for r in config["receivers"])
    with pytest.raises(SettingsError, match="RECSYS_SMTP_TO"):
        start_stack(Settings(var_dir=tmp_path / "var", smtp_host="mail.example.org"), _params(tmp_path))
