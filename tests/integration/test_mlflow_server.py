"""Registration, promotion and rollback against a real ``mlflow server`` on a loopback port, started by this
module, once over SQLite (the embedded default) and once over PostgreSQL as the compose and Kubernetes deployments
run it: the MLflow backend store and the audit log each in a database of their own on the machine's server.

The server is stopped mid-way (after a run was logged, before it is registered and before a promotion): both
operations retry with backoff, then fail with ``MlflowUnreachableError`` naming the tracking URI; the audit log
gets no event, and once the server is back on the same store no version was added and no alias moved.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from mlflow.tracking import MlflowClient

from recsys.ranking.train import TrainResult
from recsys.registry import service
from recsys.registry.audit import AuditEvent, AuditLog
from recsys.registry.tracking import LoggedRun, MlflowUnreachableError, is_connection_error, log_training, register
from tests.conftest import postgres_database

AS_OF = 20
MODEL = "content-ranker"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:<port> over a backend store URL and a local artifact root, in its own group."""

    def __init__(self, root: Path, backend: str, audit_url: str) -> None:
        self.root = root
        self.backend = backend
        self.audit_url = audit_url
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", self.backend,
               "--artifacts-destination", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--allowed-hosts", f"127.0.0.1:{self.port},localhost:{self.port}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        # until it answers or dies (pytest-timeout bounds the wait)
        while self.proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.uri}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:]
        pytest.fail(f"mlflow server exited before it became healthy:\n{tail}")

    def stop(self) -> None:
        """Terminate the whole process group (the CLI and its uvicorn worker); kill it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a worker that outlived its parent
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{self.uri}/health", timeout=1)
            raise AssertionError(f"mlflow server still answers on {self.uri} after being stopped")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            backend = stack.enter_context(postgres_database("mlflow"))
            audit_url = stack.enter_context(postgres_database("audit"))
        else:
            backend, audit_url = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'audit.db'}"
        srv = MlflowServer(root, backend, audit_url)
        try:
            srv.start()
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="module")
def trained(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    result = small_model.result
    bundle = tmp_path_factory.mktemp("bundle") / f"week={AS_OF}"
    result.recommender.save(bundle)
    return SimpleNamespace(result=result, bundle=bundle)


def with_seed(result: TrainResult, seed: int) -> TrainResult:
    """The same training under another ranker seed: another run key, so another registry version."""
    ranker = result.config.ranker.model_copy(update={"seed": seed})
    return result.with_config(result.config.model_copy(update={"ranker": ranker}))


def log(trained: SimpleNamespace, seed: int, uri: str) -> LoggedRun:
    return log_training(with_seed(trained.result, seed), trained.bundle, tracking_uri=uri)


@pytest.fixture(scope="module")
def registry(server: MlflowServer, trained: SimpleNamespace) -> SimpleNamespace:
    """v1 (promoted to champion) and v2 (challenger), registered through the server."""
    audit = AuditLog(server.audit_url)
    first = register(log(trained, 1, server.uri), MODEL, tracking_uri=server.uri, audit=audit)
    promoted = service.promote(MODEL, first.version, actor="ci", reason="first champion", audit=audit,
                               tracking_uri=server.uri)
    second = register(log(trained, 2, server.uri), MODEL, tracking_uri=server.uri, audit=audit)
    client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    return SimpleNamespace(audit=audit, first=first, second=second, promoted=promoted, client=client)


def test_register_and_promote_through_the_server(registry: SimpleNamespace, server: MlflowServer) -> None:
    assert (registry.first.version, registry.first.created) == (1, True)
    assert (registry.second.version, registry.second.created) == (2, True)
    client = registry.client
    assert [str(v.status) for v in sorted(client.search_model_versions(f"name = '{MODEL}'"),
                                          key=lambda v: int(v.version))] == ["READY", "READY"]
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"
    assert service.current_champion(MODEL, server.uri) == 1
    assert registry.promoted.from_version is None and registry.promoted.to_version == 1
    assert [(r.event, r.to_version) for r in registry.audit.history(MODEL)] == [  # newest first
        (AuditEvent.REGISTERED, 2), (AuditEvent.PROMOTED, 1), (AuditEvent.REGISTERED, 1)]
    # the bundle went through the server's artifact proxy into its artifacts destination
    assert any((server.root / "artifacts").rglob("MLmodel"))


def fails_unreachable(server: MlflowServer, call: Callable[[], object],
                      caplog: pytest.LogCaptureFixture) -> MlflowUnreachableError:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recsys.registry.tracking"), \
            pytest.raises(MlflowUnreachableError, match=f"MLflow is unreachable at {server.uri}") as info:
        call()
    # three attempts with a backoff before each retry, then it gave up (pytest-timeout bounds the time)
    retries = [r for r in caplog.records if r.getMessage().startswith("Retrying")]
    assert len(retries) == 2, [r.getMessage() for r in caplog.records]
    assert info.value.__cause__ is not None and is_connection_error(info.value.__cause__)
    return info.value


def test_unreachable_server_fails_cleanly_and_moves_nothing(registry: SimpleNamespace, server: MlflowServer,
                                                            trained: SimpleNamespace,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    audit = registry.audit
    before = [r.to_dict() for r in audit.history(MODEL)]
    logged = log(trained, 3, server.uri)  # logged while the server is up ...
    server.stop()  # ... then it goes away before registration and promotion
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

    fails_unreachable(server, lambda: register(logged, MODEL, tracking_uri=server.uri, audit=audit), caplog)
    fails_unreachable(server, lambda: service.promote(MODEL, 2, actor="ci", reason="while down", audit=audit,
                                                      tracking_uri=server.uri), caplog)
    assert [r.to_dict() for r in audit.history(MODEL)] == before  # nothing registered, nothing promoted

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    server.start()  # same store, same port
    rows = service.list_versions(MODEL, server.uri)
    assert [(r.version, r.status, r.aliases) for r in rows] == [
        (1, "READY", ["champion"]), (2, "READY", ["challenger"])]
    assert logged.run_key not in {r.run_key for r in rows}
    # the logged run registers once the server is back, as the next version
    again = register(logged, MODEL, tracking_uri=server.uri, audit=audit)
    assert (again.version, again.created) == (3, True)
    assert service.current_champion(MODEL, server.uri) == 1


def test_rollback_through_the_server_moves_champion_back(registry: SimpleNamespace, server: MlflowServer) -> None:
    """After the outage test: v2 promoted, then rolled back to v1, each step in the audit log of its database."""
    audit = registry.audit
    service.promote(MODEL, 2, actor="ci", reason="better", audit=audit, tracking_uri=server.uri)
    assert service.current_champion(MODEL, server.uri) == 2
    back = service.rollback(MODEL, actor="ci", reason="regression", audit=audit, tracking_uri=server.uri)
    assert (back.from_version, back.to_version) == (2, 1)
    assert service.current_champion(MODEL, server.uri) == 1
    reread = AuditLog(server.audit_url)  # another process's view of the same database
    try:
        assert [(r.event, r.from_version, r.to_version) for r in reread.history(MODEL, limit=2)] == [
            (AuditEvent.ROLLED_BACK, 2, 1), (AuditEvent.PROMOTED, 1, 2)]
        assert reread.status() == 1
    finally:
        reread.close()
