"""One settings surface: every variable typed and documented, bad values named, secrets masked, the docs current."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.settings import (
    ServingSettings,
    Settings,
    SettingsError,
    effective,
    env_name,
    load,
    masked,
    reference_markdown,
)

REPO = Path(__file__).resolve().parents[2]
VARIABLES = {env_name(ServingSettings, f) for f in ServingSettings.model_fields}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECSYS_") or name in ("MLFLOW_TRACKING_URI", "BENTOML_HOME"):
            monkeypatch.delenv(name)


def test_every_setting_is_documented_and_named_once() -> None:
    for cls in (Settings, ServingSettings):
        for field, info in cls.model_fields.items():
            assert info.description, f"{cls.__name__}.{field} has no docstring"
    assert len(VARIABLES) == len(ServingSettings.model_fields)


@pytest.mark.parametrize(("variable", "value", "needle"), [
    ("RECSYS_TRAFFIC_RATE", "2", "less than or equal to 1"),
    ("RECSYS_WATCH_INTERVAL", "soon", "valid number"),
    ("RECSYS_COMPILE_TREES", "maybe", "valid boolean"),
    ("RECSYS_TRAINING_SOURCE", "s3", "'auto', 'store' or 'raw'"),
    ("RECSYS_MAX_BODY_BYTES", "10", "greater than or equal to 1024"),
])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                        needle: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=re.escape(variable)) as info:
        load(ServingSettings)
    assert needle in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("on", True), ("yes", True),
                                                 ("0", False), ("false", False), ("off", False), ("no", False)])
def test_one_boolean_parser_for_every_flag(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("RECSYS_ACCESS_LOG", value)
    monkeypatch.setenv("RECSYS_COMPILE_TREES", value)
    settings = ServingSettings()
    assert settings.access_log is expected and settings.compile_trees is expected


def test_notify_channels_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().notify == ["outbox", "log"]
    monkeypatch.setenv("RECSYS_NOTIFY", " outbox , slack ")
    assert Settings().notify == ["outbox", "slack"]
    monkeypatch.setenv("RECSYS_NOTIFY", "")
    assert Settings().notify == []


def test_derived_paths_follow_var_dir_and_nothing_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_VAR_DIR", str(tmp_path / "state"))
    settings = ServingSettings()
    assert settings.mlflow_uri == f"sqlite:///{tmp_path}/state/mlflow/mlflow.db"
    assert settings.audit_db_url == f"sqlite:///{tmp_path}/state/registry/audit.db"
    assert settings.feedback_db_url == f"sqlite:///{tmp_path}/state/serving/feedback.db"
    assert settings.traffic_path == tmp_path / "state" / "serving" / "traffic"
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert ServingSettings().mlflow_uri == "http://mlflow:5000"


def test_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_ADMIN_TOKEN", "s3cret-token")
    monkeypatch.setenv("RECSYS_FEEDBACK_URL", "postgresql://recsys:hunter2@db:5432/recsys")
    rows = {r["variable"]: r["value"] for r in effective(ServingSettings())}
    assert rows["RECSYS_ADMIN_TOKEN"] == "********"
    assert rows["RECSYS_FEEDBACK_URL"] == "postgresql://recsys:***@db:5432/recsys"
    assert masked("sqlite:///var/x.db") == "sqlite:///var/x.db"
    from recsys.cli import app

    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "s3cret-token" not in result.output and "hunter2" not in result.output
    assert "RECSYS_ADMIN_TOKEN" in result.output


def test_the_answers_store_takes_only_a_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.settings import ServingSettings, load

    monkeypatch.setenv("RECSYS_ANSWERS_URL", "redis://127.0.0.1:6379/0")
    assert load(ServingSettings).answers_url == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("RECSYS_ANSWERS_URL", "  ")
    assert load(ServingSettings).answers_url is None
    monkeypatch.setenv("RECSYS_ANSWERS_URL", "127.0.0.1:6379")
    with pytest.raises(Exception, match=r"RECSYS_ANSWERS_URL.*Redis URL"):
        load(ServingSettings)


def test_a_bad_variable_is_a_one_line_cli_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import app

    monkeypatch.setenv("RECSYS_TRAINING_SOURCE", "s3")
    result = CliRunner().invoke(app, ["registry", "list"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: RECSYS_TRAINING_SOURCE:") and "\n" not in result.stderr.strip()


def test_the_configuration_reference_is_current() -> None:
    path = REPO / "docs" / "configuration.md"
    assert path.read_text(encoding="utf-8") == reference_markdown(), \
        "docs/configuration.md is stale: run `recsys config docs > docs/configuration.md`"
    for variable in VARIABLES:
        assert f"`{variable}`" in reference_markdown()


def test_every_variable_the_code_names_is_a_setting() -> None:
    """A RECSYS_* name in the library or the service that no setting declares would be read nowhere (or ad hoc)."""
    named = set()
    for root in ("recsys", "bentos"):
        for path in (REPO / root).rglob("*.py"):
            named |= set(re.findall(r"\bRECSYS_[A-Z_]+[A-Z]\b", path.read_text(encoding="utf-8")))
    assert named - VARIABLES == set()
