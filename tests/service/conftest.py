"""One in-process BentoML app for the serving tests (``to_asgi()`` may run only once per process).

The environment is set before ``bentos/service.py`` is imported: ``PROMETHEUS_MULTIPROC_DIR`` (without it
``GET /metrics`` hangs in-process), a bundle saved from ``small_model`` as ``RECSYS_BUNDLE_DIR``, no MLflow, a
temporary ``RECSYS_VAR_DIR`` (the traffic and assignment logs) and every request in the traffic log.

``bento_server`` starts the same service as a real ``bentoml serve`` subprocess on a free loopback port.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.receivers import free_port

BENTOS = Path(__file__).resolve().parents[2] / "bentos"
ADMIN_TOKEN = "test-admin-token"


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


# -- a real server ---------------------------------------------------------------------------------------------
def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (empty once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class BentoServer:
    """A running ``bentoml serve``: its base URL, port, process, environment and log file."""

    base: str
    port: int
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def tree(self) -> list[psutil.Process]:
        """The server and its workers (they run in sessions of their own: signal each, not the group)."""
        return process_tree(self.proc.pid)


BentoServerFactory = Callable[..., contextlib.AbstractContextManager[BentoServer]]


@pytest.fixture(scope="module")
def bento_server(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> BentoServerFactory:
    """``with bento_server(RECSYS_X="...") as server:`` a ``bentoml serve`` of the service (``service_env`` plus
    the overrides) on a free loopback port (``port=N``: that one, e.g. to restart a server where it was), once
    ``/readyz`` answers 200; the whole process tree is stopped after.

    Its output goes to a file (a pipe nobody reads would fill up and block the server's logging). No deadline of
    its own: the calling test sets one with ``@pytest.mark.timeout``.
    """

    @contextlib.contextmanager
    def serve(port: int | None = None, **overrides: str) -> Iterator[BentoServer]:
        port = port or free_port()
        env = {**os.environ, **service_env, "PYTHONPATH": str(BENTOS.parent), **overrides}
        env.pop("PROMETHEUS_MULTIPROC_DIR")  # bentoml serve sets its own
        bentoml = str(Path(sys.executable).with_name("bentoml"))
        log = tmp_path_factory.mktemp("bentoml-serve") / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([bentoml, "serve", "service:RecommenderService", "--host", "127.0.0.1",
                                     "--port", str(port)], cwd=BENTOS, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        server = BentoServer(f"http://127.0.0.1:{port}", port, proc, env, log)
        try:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"bentoml serve exited with {proc.returncode}:\n{server.log_tail()}")
                try:
                    if httpx.get(f"{server.base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.5)  # returns early if the server dies
            yield server
        finally:
            tree = server.tree()
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.terminate()
            _, alive = psutil.wait_procs(tree, timeout=30)
            for p in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            proc.wait(timeout=30)

    return serve
