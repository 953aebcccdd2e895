"""The release cycle through the ``recsys`` CLI against a real MLflow (the default SQLite store under a temporary
var dir): train + log + register, gate the first model against the best generator, gate a second one against the
champion (rejected, then passed under the manual policy with a refit), approve, roll back, and the notifications.

A small config (few label windows and trees) keeps each training to seconds; the data is the real ML-100K.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from recsys.cli import app

MODEL = "content-ranker"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def run(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


@pytest.fixture(scope="module")
def life(raw_data_dir: Callable[[Path], Path], small_config: dict[str, Any],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Run the whole cycle once; each test checks one part of what it left behind."""
    root = tmp_path_factory.mktemp("release")
    raw_data_dir(root)
    var = root / "var"
    small = root / "small.json"
    small.write_text(json.dumps(small_config))
    seed2 = root / "seed2.json"
    seed2.write_text(json.dumps({**small_config, "ranker": {**small_config["ranker"], "seed": 2}}))
    # the first model passes whatever its gain over the best generator: these tests check the mechanics
    loose = root / "loose.json"
    loose.write_text(json.dumps({"first_model_tolerance": -1.0, "margin": -1.0, "slice_tolerance": 1.0,
                                 "coverage_tolerance": 1.0, "n_resamples": 300}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_DATA_DIR", str(root / "data"))
        mp.setenv("RECSYS_VAR_DIR", str(var))
        mp.setenv("RECSYS_NOTIFY", "outbox")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("RECSYS_AUDIT_URL", raising=False)
        out: dict[str, Any] = {}
        out["train1"] = run("train", "--as-of-week", "20", "--config", str(small))
        out["gate1"] = run("registry", "gate", "--week", "24", "--gate-config", str(loose), "--config", str(small))
        out["train2"] = run("train", "--as-of-week", "20", "--config", str(seed2))
        out["gate_slow"] = run("registry", "gate", "--week", "24", "--latency-budget-ms", "0.001",
                               "--config", str(small))
        out["gate_manual"] = run("registry", "gate", "--week", "24", "--policy", "manual", "--refit",
                                 "--gate-config", str(loose), "--config", str(small))
        out["approve"] = run("registry", "approve", "--version", "3", "--by", "alice", "--reason", "looks good")
        out["rollback"] = run("registry", "rollback", "--reason", "canary alert")
        out["nothing"] = run("registry", "gate", "--week", "24")
        out["overlap"] = runner.invoke(app, ["registry", "gate", "--version", "2", "--week", "22"])
        out["history"] = run("registry", "history", "--json", "--limit", "100")
        uri = f"sqlite:///{(var / 'mlflow' / 'mlflow.db').as_posix()}"
        yield SimpleNamespace(root=root, var=var, out=out, uri=uri,
                              client=MlflowClient(tracking_uri=uri, registry_uri=uri))


def decisions(life: SimpleNamespace, version: int) -> list[dict[str, Any]]:
    paths = sorted((life.var / "registry" / "decisions").glob(f"{MODEL}-v{version}-*.json"))
    return [json.loads(p.read_text()) for p in paths]


def test_train_logs_the_run_and_registers_a_challenger(life: SimpleNamespace) -> None:
    assert "registered as content-ranker v1" in life.out["train1"].stdout
    mv = life.client.get_model_version(MODEL, "1")
    run = life.client.get_run(mv.run_id)
    metrics = run.data.metrics
    for name in ("ndcg_at_10", "ndcg_at_10.warm", "ndcg_at_10.cold", "ndcg_at_10.long_tail", "recall_at_10",
                 "coverage", "baseline.ndcg_at_10", "gain.ndcg_at_10.all.ci_low", "fit_seconds"):
        assert name in metrics, name
    assert 0 < metrics["ndcg_at_10"] <= 1
    assert run.data.params["ranker.label_windows"] == "3"
    assert run.data.tags["replay_week"] == "20" and run.data.tags["git_sha"]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["ml-100k-train"]


def test_the_run_holds_the_evaluation_report_and_plots(life: SimpleNamespace) -> None:
    run_id = life.client.get_model_version(MODEL, "1").run_id
    files = {f.path for f in life.client.list_artifacts(run_id, "evaluation")}
    expected = {"metric_comparison.png", "feature_importance.png", "ndcg_by_activity.png", "ndcg_by_activity.csv",
                "table_all.csv", "table_warm.csv", "table_cold.csv", "report.md", "summary.json"}
    assert {f"evaluation/{name}" for name in expected} <= files
    local = Path(life.client.download_artifacts(run_id, "evaluation", str(life.root / "dl")))
    for png in local.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000, png
    table = (local / "table_all.csv").read_text().splitlines()
    assert table[0].startswith("model,") and any(line.startswith("ranker,") for line in table)


def test_first_model_is_gated_against_the_best_generator_and_promoted(life: SimpleNamespace) -> None:
    [first] = decisions(life, 1)
    assert first["decision"]["mode"] == "first_model" and first["decision"]["passed"]
    assert first["outcome"] == "promoted" and first["champion"] is None
    assert first["window"]["name"].startswith("weeks 20") and first["window"]["users"] > 50
    assert first["best_generator"] != "ranker"
    assert 0 < first["latency"]["p95_ms"] < first["gate_config"]["latency_budget_ms"]
    assert first["schema_problems"] == []
    assert "champion is now v1" in life.out["gate1"].stdout
    # the decision JSON is also an artifact of the challenger's run, and the verdict a version tag
    run_id = life.client.get_model_version(MODEL, "1").run_id
    assert any(f.path.startswith("gate/") for f in life.client.list_artifacts(run_id, "gate"))
    assert life.client.get_model_version(MODEL, "1").tags["gate_verdict"] == "promote"


def test_a_slow_challenger_is_rejected_and_no_alias_moves(life: SimpleNamespace) -> None:
    rejected, _ = decisions(life, 2)
    assert rejected["decision"]["mode"] == "vs_champion" and rejected["champion"]["version"] == 1
    assert not rejected["decision"]["checks"]["latency"]["passed"]
    assert rejected["outcome"] == "rejected by gate"
    assert "no alias moved" in life.out["gate_slow"].stdout
    assert any("latency" in r for r in rejected["decision"]["reasons"])


def test_manual_policy_with_refit_waits_for_approval_then_promotes_the_refit(life: SimpleNamespace) -> None:
    _, passed = decisions(life, 2)
    assert passed["outcome"] == "pending" and passed["refit"]["version"] == 3 and passed["refit"]["as_of_week"] == 24
    assert "waits for approval" in life.out["gate_manual"].stdout
    refit = life.client.get_model_version(MODEL, "3")
    assert refit.tags["evaluated_version"] == "2" and refit.tags["role"] == "refit"
    assert life.client.get_run(refit.run_id).data.tags["replay_week"] == "24"
    # both the evaluated and the refit version carry the verdict
    assert life.client.get_model_version(MODEL, "2").tags["gate_verdict"] == "promote"
    assert refit.tags["gate_verdict"] == "promote"
    assert "approved by alice" in life.out["approve"].stdout


def test_rollback_returns_to_the_previous_champion_and_notifies(life: SimpleNamespace) -> None:
    assert "champion v3 → v1" in life.out["rollback"].stdout
    assert int(life.client.get_model_version_by_alias(MODEL, "champion").version) == 1
    outbox = [json.loads(line) for line in (life.var / "notifications" / "outbox.jsonl").read_text().splitlines()]
    assert [n["event"] for n in outbox] == ["promoted", "gate_rejected", "approval_requested", "promoted",
                                            "rolled_back"]
    assert outbox[-1]["severity"] == "warning" and "canary alert" in outbox[-1]["body"]
    facts = [{f["label"]: f["value"] for f in n["facts"]} for n in outbox]
    # the gate's outcomes carry its numbers: the NDCG delta and CI, the verdict, what failed
    assert facts[0]["Decision"] == "promote" and facts[0]["Delta"].startswith(("+", "-"))
    assert facts[1]["Decision"] == "reject" and "latency" in facts[1]["Failed checks"]
    assert outbox[2]["version"] == 3 and "recsys registry approve --version 3" in outbox[2]["body"]
    assert "(refit of v2)" in facts[2]["Version"]
    assert all(n["dedup_key"] and n["id"] for n in outbox)
    assert any(link["url"].endswith("rolled-back.md") for link in outbox[-1]["links"])


def test_history_records_the_whole_cycle(life: SimpleNamespace) -> None:
    events = json.loads(life.out["history"].stdout)["events"][::-1]
    assert [(e["event"], e["to_version"]) for e in events] == [
        ("registered", 1), ("gate_decision", 1), ("promoted", 1),
        ("registered", 2), ("gate_decision", 2),
        ("registered", 3), ("gate_decision", 2), ("approval_pending", 3), ("approved", 3), ("promoted", 3),
        ("rolled_back", 1)]
    assert events[6]["details"]["act_on"] == 3 and events[9]["actor"] == "alice"


def test_gate_without_challenger_has_nothing_to_do(life: SimpleNamespace) -> None:
    assert "nothing to gate" in life.out["nothing"].stdout


def test_gate_refuses_a_window_the_model_was_trained_on(life: SimpleNamespace) -> None:
    result = life.out["overlap"]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "overlaps the evaluation window [18, 22)" in result.stderr
