"""Promotion, approval, gate decisions and rollback against a real in-process MLflow (SQLite store under tmp_path),
through ``recsys.registry.service`` and the ``recsys registry`` commands.

One small model is trained once and logged twice with different ranker seeds (so the run keys differ),
giving versions 1 and 2. Each test starts with a fresh audit database, no champion alias and ``challenger``
on version 2.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from recsys.cli import app
from recsys.registry import service
from recsys.registry.audit import AuditEvent, AuditLog, AuditRecord
from recsys.registry.gate import GateConfig, GateDecision, ModelEvaluation, decide
from recsys.registry.tracking import log_training, register

AS_OF = 20
MODEL = "content-ranker"
runner = CliRunner()


@pytest.fixture(scope="module")
def store(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    result = small_model.result
    bundle = tmp_path_factory.mktemp("bundle") / f"week={AS_OF}"
    result.recommender.save(bundle)
    versions = []
    for seed in (1, 2):
        config = result.config.model_copy(update={"ranker": result.config.ranker.model_copy(update={"seed": seed})})
        logged = log_training(result.with_config(config), bundle, tracking_uri=uri)
        versions.append(register(logged, MODEL, tracking_uri=uri))
    yield SimpleNamespace(uri=uri, root=root, client=MlflowClient(tracking_uri=uri, registry_uri=uri),
                          versions=versions)


@pytest.fixture
def env(store: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fresh audit DB, no champion, challenger on v2; the CLI finds both stores through the environment."""
    with contextlib.suppress(MlflowException):
        store.client.delete_registered_model_alias(MODEL, "champion")
    store.client.set_registered_model_alias(MODEL, "challenger", "2")
    audit_url = f"sqlite:///{tmp_path}/audit.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("RECSYS_AUDIT_URL", audit_url)
    monkeypatch.setenv("RECSYS_VAR_DIR", str(tmp_path / "var"))
    audit = AuditLog(audit_url)
    return SimpleNamespace(uri=store.uri, client=store.client, audit=audit)


def champion(env: SimpleNamespace) -> int | None:
    return service.current_champion(MODEL, env.uri)


def promote(env: SimpleNamespace, version: int, **kwargs: Any) -> AuditRecord:
    return service.promote(MODEL, version, actor="ci", reason="test", audit=env.audit, tracking_uri=env.uri,
                           **kwargs)


def cli(*args: str) -> Any:
    return runner.invoke(app, ["registry", *args])


def assert_fails_with(result: Any, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def evaluation(name: str, ndcg: np.ndarray, latency: float = 5.0) -> ModelEvaluation:
    n = len(ndcg)
    per_user = pd.DataFrame({"cut": AS_OF, "key": np.arange(n), "slice": "main", "cold": np.arange(n) % 5 == 0,
                             "ndcg@10": ndcg})
    return ModelEvaluation(name, per_user, coverage=0.3, latency_p95_ms=latency)


def gate(passing: bool) -> GateDecision:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, 200)
    challenger = evaluation("v2", base + (0.05 if passing else -0.1))
    return decide(challenger, evaluation("v1", base), GateConfig(n_resamples=200))


# -- tests ---------------------------------------------------------------------------------------------------
def test_two_ready_versions_are_listed(env: SimpleNamespace, store: SimpleNamespace) -> None:
    assert [(v.version, v.created) for v in store.versions] == [(1, True), (2, True)]
    rows = service.list_versions(MODEL, env.uri)
    assert [(r.version, r.status, r.aliases) for r in rows] == [(1, "READY", []), (2, "READY", ["challenger"])]
    assert rows[0].run_key != rows[1].run_key and all(r.run_id and r.created for r in rows)
    result = cli("list")
    assert result.exit_code == 0, result.output
    assert "challenger" in result.stdout and "READY" in result.stdout
    assert service.list_versions("no-such-model", env.uri) == []


def test_promote_and_rollback(env: SimpleNamespace) -> None:
    first = promote(env, 1)
    assert champion(env) == 1 and (first.from_version, first.to_version) == (None, 1)
    second = promote(env, 2)
    assert champion(env) == 2 and (second.from_version, second.to_version) == (1, 2)
    assert second.event == "promoted" and second.run_id
    # the new champion no longer holds challenger
    assert "challenger" not in env.client.get_model_version(MODEL, "2").aliases

    result = cli("rollback", "--reason", "bad canary")
    assert result.exit_code == 0, result.output
    assert champion(env) == 1
    assert env.audit.current_champion(MODEL) == 1
    history = cli("history", "--limit", "5")
    assert history.exit_code == 0, history.output
    assert "rolled_back" in history.stdout and "bad canary" in history.stdout
    assert "v2 → v1" in history.stdout

    assert_fails_with(cli("rollback", "--to", "5"), "version 5", "earlier champions: 2")
    assert champion(env) == 1


def test_promote_checks_its_input(env: SimpleNamespace) -> None:
    assert_fails_with(cli("promote", "--version", "7"), "version 7", "versions: 1, 2")
    assert_fails_with(cli("rollback"), "no champion to roll back")
    assert champion(env) is None
    assert cli("promote", "--version", "1", "--by", "bob").exit_code == 0
    assert_fails_with(cli("promote", "--version", "1"), "already the champion")
    assert_fails_with(cli("rollback"), "no previous champion")
    assert [r.event for r in env.audit.history(MODEL)] == [AuditEvent.PROMOTED]
    assert env.audit.history(MODEL)[0].actor == "bob"


def test_approve_needs_a_pending_request(env: SimpleNamespace) -> None:
    assert_fails_with(cli("approve", "--version", "2", "--by", "alice", "--reason", "ok"),
                      "no pending approval", "pending: none")
    assert champion(env) is None


def test_manual_gate_then_approve(env: SimpleNamespace) -> None:
    promote(env, 1)
    decision = gate(passing=True)
    assert decision.passed
    outcome = service.apply_gate_decision(MODEL, 2, decision, policy="manual", audit=env.audit,
                                          tracking_uri=env.uri, actor="airflow")
    assert outcome == "pending" and champion(env) == 1
    assert [r.to_version for r in env.audit.pending_approvals(MODEL)] == [2]
    assert env.client.get_model_version(MODEL, "2").tags["gate_verdict"] == "promote"

    result = cli("approve", "--version", "2", "--by", "alice", "--reason", "ok")
    assert result.exit_code == 0, result.output
    assert champion(env) == 2 and env.audit.pending_approvals(MODEL) == []
    events = [(r.event, r.actor) for r in reversed(env.audit.history(MODEL))]
    assert events == [(AuditEvent.PROMOTED, "ci"), (AuditEvent.GATE_DECISION, "airflow"),
                      (AuditEvent.APPROVAL_PENDING, "airflow"), (AuditEvent.APPROVED, "alice"),
                      (AuditEvent.PROMOTED, "alice")]
    assert env.audit.history(MODEL)[0].from_version == 1


def test_reject_clears_the_request_and_moves_nothing(env: SimpleNamespace) -> None:
    service.apply_gate_decision(MODEL, 2, gate(passing=True), policy="manual", audit=env.audit,
                                tracking_uri=env.uri, actor="airflow")
    result = cli("reject", "--version", "2", "--by", "carol", "--reason", "not this week")
    assert result.exit_code == 0, result.output
    assert env.audit.pending_approvals(MODEL) == [] and champion(env) is None
    assert_fails_with(cli("approve", "--version", "2", "--by", "alice", "--reason", "ok"), "no pending approval")


def test_once_reports_a_decision_taken_on_the_cli_and_moves_nothing_more(env: SimpleNamespace) -> None:
    """Airflow's approve/reject tasks run with --once: a CLI approval while the request waits is not repeated."""
    promote(env, 1)
    service.apply_gate_decision(MODEL, 2, gate(passing=True), policy="manual", audit=env.audit,
                                tracking_uri=env.uri, actor="airflow")
    assert cli("approve", "--version", "2", "--by", "alice", "--reason", "ok").exit_code == 0
    before = env.audit.history(MODEL)

    again = cli("approve", "--version", "2", "--by", "airflow", "--reason", "approved in Airflow", "--once", "--json")
    assert again.exit_code == 0, again.output
    reported = json.loads(again.output)
    assert reported["already"] is True and reported["event"] == "promoted"
    assert (reported["actor"], reported["from_version"], reported["to_version"]) == ("alice", 1, 2)
    opposite = cli("reject", "--version", "2", "--by", "airflow", "--reason", "timed out", "--once")
    assert opposite.exit_code == 3, opposite.output
    assert "already approved by alice" in opposite.output
    assert env.audit.history(MODEL) == before and champion(env) == 2


def test_once_decides_a_pending_request(env: SimpleNamespace) -> None:
    service.apply_gate_decision(MODEL, 2, gate(passing=True), policy="manual", audit=env.audit,
                                tracking_uri=env.uri, actor="airflow")
    result = cli("reject", "--version", "2", "--by", "airflow", "--reason", "no", "--once", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["already"] is False
    assert env.audit.history(MODEL)[0].event is AuditEvent.REJECTED and champion(env) is None


def test_failing_gate_moves_no_alias(env: SimpleNamespace) -> None:
    promote(env, 1)
    decision = gate(passing=False)
    assert not decision.passed
    outcome = service.apply_gate_decision(MODEL, 2, decision, policy="auto", audit=env.audit,
                                          tracking_uri=env.uri, actor="airflow")
    assert outcome == "rejected by gate" and champion(env) == 1
    tags = env.client.get_model_version(MODEL, "2").tags
    assert tags["gate_verdict"] == "reject" and "NDCG@10" in tags["gate_reasons"]
    latest = env.audit.history(MODEL)[0]
    assert latest.event is AuditEvent.GATE_DECISION and latest.details["verdict"] == "reject"
    assert latest.details["checks"]["ndcg"]["passed"] is False


def test_passing_gate_under_auto_policy_promotes(env: SimpleNamespace) -> None:
    promote(env, 1)
    outcome = service.apply_gate_decision(MODEL, 2, gate(passing=True), policy="auto", audit=env.audit,
                                          tracking_uri=env.uri, actor="airflow")
    assert outcome == "promoted" and champion(env) == 2


def test_a_failing_notification_hook_is_logged_not_raised(env: SimpleNamespace) -> None:
    seen: list[dict[str, Any]] = []

    def broken(record: dict[str, Any]) -> None:
        seen.append(record)
        raise RuntimeError("slack is down")

    promote(env, 1, notify=broken)
    promote(env, 2)
    rec = service.rollback(MODEL, actor="ci", reason="test", audit=env.audit, tracking_uri=env.uri, notify=broken)
    assert champion(env) == 1 and rec.event == "rolled_back"
    assert [r["event"] for r in seen] == ["promoted", "rolled_back"]


def test_a_failed_audit_write_moves_the_alias_back(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    promote(env, 1)

    def down(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit database unreachable")

    monkeypatch.setattr(env.audit, "record", down)
    with pytest.raises(RuntimeError, match="unreachable"):
        promote(env, 2)
    assert champion(env) == 1
