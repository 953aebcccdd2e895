"""`recsys serve`'s command: the service runs in bentos/, so every path it is given must be absolute."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from recsys.settings import ServingSettings
from recsys.stages.base import StageError
from recsys.stages.serve import ServeParams, serve_spec


def test_paths_are_absolute_and_the_store_defaults_follow_var_dir(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "RECSYS_FEEDBACK_URL", "RECSYS_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    spec = serve_spec(ServingSettings(var_dir=Path("state")), ServeParams(port=3123, watch_interval=0))
    var = tmp_path / "state"
    assert spec.env["RECSYS_VAR_DIR"] == str(var)
    assert spec.env["MLFLOW_TRACKING_URI"] == f"sqlite:///{var}/mlflow/mlflow.db"
    assert spec.env["RECSYS_FEEDBACK_URL"] == f"sqlite:///{var}/serving/feedback.db"
    assert float(spec.env["RECSYS_WATCH_INTERVAL"]) == 0 and "RECSYS_ACCESS_LOG" not in spec.env
    assert spec.command[-4:] == ["--host", "127.0.0.1", "--port", "3123"] and spec.cwd.name == "bentos"
    assert len(spec.admin_token) >= 24 and spec.env["RECSYS_ADMIN_TOKEN"] == spec.admin_token
    assert spec.url == "http://127.0.0.1:3123"


def test_a_configured_token_is_kept_and_a_bundle_must_be_one(tmp_path: Path) -> None:
    settings = ServingSettings(var_dir=tmp_path, admin_token=SecretStr("t0ken"))
    assert serve_spec(settings, ServeParams()).admin_token == "t0ken"
    with pytest.raises(StageError, match="not a model bundle"):
        serve_spec(settings, ServeParams(bundle=tmp_path))
    (tmp_path / "manifest.json").write_text("{}")
    spec = serve_spec(settings, ServeParams(bundle=tmp_path, host="0.0.0.0", access_log=True))
    assert spec.env["RECSYS_BUNDLE_DIR"] == str(tmp_path.resolve()) and spec.env["RECSYS_ACCESS_LOG"] == "1"
    assert spec.url.startswith("http://127.0.0.1:")
