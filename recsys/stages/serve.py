"""How ``recsys serve`` starts the recommendation service: ``bentoml serve`` over ``bentos/service.py`` with the
settings it needs in its environment (absolute paths: the service runs in the ``bentos`` folder)."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.runtime import child_env
from recsys.settings import ServingSettings
from recsys.stages.bake import SERVICE_DIR
from recsys.stages.base import StageError


class ServeParams(BaseModel):
    port: int = Field(3000, ge=1, le=65535)
    host: str = "127.0.0.1"
    bundle: Path | None = Field(None, description="a bundle served as the champion until the registry gives one")
    watch_interval: float | None = Field(None, ge=0, description="seconds between alias checks (0: never)")
    access_log: bool | None = None


class ServeSpec(BaseModel):
    """The command, its working directory and environment, and what to tell the user."""

    command: list[str]
    cwd: Path
    env: dict[str, str]
    url: str
    admin_token: str


def serve_spec(settings: ServingSettings, params: ServeParams) -> ServeSpec:
    """The ``bentoml serve`` command for these settings; a random admin token when none is configured.

    The process defaults (:func:`recsys.runtime.prepare_process`, which the CLI applies) are inherited."""
    if params.bundle is not None and not (params.bundle / "manifest.json").exists():
        raise StageError(f"{params.bundle}: not a model bundle (no manifest.json)")
    if not (SERVICE_DIR / "service.py").exists():
        raise StageError(f"{SERVICE_DIR / 'service.py'} not found: run from a checkout of the repository")
    token = settings.admin_token.get_secret_value() if settings.admin_token else secrets.token_urlsafe(24)
    var_dir = settings.var_dir.resolve()
    resolved = settings.model_copy(update={"var_dir": var_dir})
    overrides: dict[str, str | None] = {
        "MLFLOW_TRACKING_URI": resolved.mlflow_uri,
        "RECSYS_VAR_DIR": str(var_dir),
        "RECSYS_FEEDBACK_URL": resolved.feedback_db_url,
        "RECSYS_ADMIN_TOKEN": token,
        "BENTOML_HOME": str(settings.bentoml_home),
    }
    if params.watch_interval is not None:
        overrides["RECSYS_WATCH_INTERVAL"] = str(params.watch_interval)
    if params.access_log is not None:
        overrides["RECSYS_ACCESS_LOG"] = "1" if params.access_log else "0"
    if params.bundle is not None:
        overrides["RECSYS_BUNDLE_DIR"] = str(params.bundle.resolve())
    url = f"http://{'127.0.0.1' if params.host == '0.0.0.0' else params.host}:{params.port}"  # nosec B104: maps 0.0.0.0 to a loopback URL, binds nothing
    command = [sys.executable, "-m", "bentoml", "serve", "service:RecommenderService", "--host", params.host,
               "--port", str(params.port)]
    return ServeSpec(command=command, cwd=SERVICE_DIR, env=child_env(overrides), url=url, admin_token=token)
