"""One in-process BentoML app for the serving tests (``to_asgi()`` may run only once per process).

The environment is set before ``bentos/service.py`` is imported: ``PROMETHEUS_MULTIPROC_DIR`` (without it
``GET /metrics`` hangs in-process), a bundle saved from ``small_model`` as ``RECSYS_BUNDLE_DIR``, no MLflow, a
temporary ``RECSYS_VAR_DIR`` (the traffic and assignment logs) and every request in the traffic log.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

BENTOS = Path(__file__).resolve().parents[2] / "bentos"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="module")
def bundle_dir(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bento") / "bundle"
    small_model.result.recommender.save(path)
    return path


@pytest.fixture(scope="module")
def service_env(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("serving")
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(tmp / "bentoml_home")),
        "RECSYS_BUNDLE_DIR": str(bundle_dir),
        "RECSYS_ADMIN_TOKEN": ADMIN_TOKEN,
        "RECSYS_FEEDBACK_URL": f"sqlite:///{(tmp / 'feedback.db').as_posix()}",
        "RECSYS_WATCH_INTERVAL": "0",
        "RECSYS_VAR_DIR": str(tmp / "var"),
        "RECSYS_TRAFFIC_RATE": "1",  # every request's feature rows (var/serving/traffic/)
    }
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir()
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    for key in ("MLFLOW_TRACKING_URI", "RECSYS_EXPERIMENT", "RECSYS_EXPERIMENT_FILE", "RECSYS_TRAFFIC_DIR",
                "RECSYS_ASSIGNMENT_DIR"):
        mp.delenv(key, raising=False)
    yield env
    mp.undo()


@pytest.fixture(scope="module")
def service_module(service_env: dict[str, str]) -> Iterator[object]:
    # prometheus_client picks its value class (in-memory or multiprocess files) at import: if an earlier test
    # imported it, switch it now so the service's metrics and BentoML's /metrics agree
    from prometheus_client import values

    previous = values.ValueClass
    values.ValueClass = values.get_value_class()
    sys.path.insert(0, str(BENTOS))
    try:
        yield importlib.import_module("service")
    finally:
        sys.path.remove(str(BENTOS))
        values.ValueClass = previous


@pytest.fixture(scope="module")
def client(service_module: object) -> Iterator[object]:
    from starlette.testclient import TestClient

    app = service_module.RecommenderService.to_asgi()  # type: ignore[attr-defined]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
