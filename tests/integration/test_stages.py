"""A slice of the pipeline through the stage functions (what the CLI, DVC and the DAGs call): ingest → validate →
train → gate → bake → train → promote → rollback, on the real data with a small config and a real MLflow (SQLite
under a temporary var dir). Every result must survive the JSON round trip a DAG task puts it through."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from recsys.config import TrainConfig
from recsys.registry.gate import GateConfig
from recsys.schema import CHALLENGER, CHAMPION
from recsys.settings import Settings
from recsys.stages.bake import BakeParams, bake
from recsys.stages.base import StageError, StageResult
from recsys.stages.data import IngestParams, ingest
from recsys.stages.gate import GateParams, gate
from recsys.stages.registry import ReleaseParams, RollbackParams, history, release, rollback, versions
from recsys.stages.train import TrainParams, train
from recsys.stages.validate import ValidateParams, validate

LOOSE = GateConfig(first_model_tolerance=-1.0, margin=-1.0, slice_tolerance=1.0, coverage_tolerance=1.0,
                   n_resamples=300)
"""The mechanics are under test, not the model: the first model passes whatever its gain."""


@pytest.fixture(scope="module")
def slice_(raw_data_dir: Callable[[Path], Path], small_config: dict[str, Any],
           tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("stages")
    raw_data_dir(root)
    # training reads the raw download (validating 24 weeks is another test's business); three weeks go through GX
    settings = Settings(data_dir=root / "data", var_dir=root / "var", params_file=root / "absent.yaml",
                        notify=["outbox"], training_source="raw", actor="pytest", tracking_uri=None)
    config = TrainConfig.model_validate(small_config)
    seed2 = config.model_copy(update={"ranker": config.ranker.model_copy(update={"seed": 2})})
    out: dict[str, StageResult] = {}
    out["ingest"] = ingest(settings, IngestParams(weeks=[0, 1, 2]))
    out["validate"] = validate(settings, ValidateParams())
    out["train"] = train(settings, TrainParams(as_of_week=20, config=config))
    out["gate"] = gate(settings, GateParams(week=24, horizon=4, gate=LOOSE))
    out["nothing"] = gate(settings, GateParams(week=24, horizon=4, gate=LOOSE))
    out["bake"] = bake(settings, BakeParams(out_dir=root / "baked"))
    out["train2"] = train(settings, TrainParams(as_of_week=20, config=seed2))
    out["promote"] = release(settings, ReleaseParams(action="promote", version=2, reason="a drill"))
    out["rollback"] = rollback(settings, RollbackParams(reason="the drill is over"))
    out["versions"] = versions(settings)
    out["history"] = history(settings, limit=50)
    return SimpleNamespace(root=root, settings=settings, out=out)


def test_every_result_survives_the_json_round_trip(slice_: SimpleNamespace) -> None:
    for name, result in slice_.out.items():
        again = type(result).model_validate_json(result.to_json())
        assert again == result, name
        assert isinstance(json.loads(result.to_json()), dict)


def test_ingest_and_validate(slice_: SimpleNamespace) -> None:
    ingested, validated = slice_.out["ingest"], slice_.out["validate"]
    assert [b.week for b in ingested.batches] == [0, 1, 2] and all(b.path.is_file() for b in ingested.batches)
    assert validated.passed and (validated.accepted, validated.rejected) == (3, 0)
    assert [o.week for o in validated.outcomes] == [0, 1, 2]


def test_train_evaluates_saves_logs_and_registers(slice_: SimpleNamespace) -> None:
    trained = slice_.out["train"]
    assert (trained.version, trained.created, trained.model_name) == (1, True, "content-ranker")
    assert trained.holdout is not None and trained.holdout.window.startswith("weeks 20")
    assert 0 < trained.holdout.metrics["all"]["ranker"]["ndcg@10"] <= 1
    assert (trained.bundle / "manifest.json").is_file() and trained.metrics_path.is_file()
    assert "raw download" in trained.data_source
    manifest = json.loads((trained.bundle / "manifest.json").read_text())
    assert not {"fit_seconds", "fit_ranker_seconds"} & set(manifest["train_info"]), "timings make bundles differ"


def test_gate_promotes_the_first_model_and_records_the_decision(slice_: SimpleNamespace) -> None:
    gated = slice_.out["gate"]
    assert (gated.outcome, gated.version, gated.target) == ("promoted", 1, 1)
    report = gated.report
    assert report is not None and report.decision.mode == "first_model" and report.champion is None
    assert report.window.start_week == 20 and report.window.end_week == 24
    assert json.loads(gated.report_path.read_text())["decision"]["verdict"] == "promote"
    assert slice_.out["nothing"].outcome == "nothing to gate" and slice_.out["nothing"].report is None


def test_bake_stages_the_champion(slice_: SimpleNamespace) -> None:
    baked = slice_.out["bake"]
    assert baked.version == 1 and baked.alias == CHAMPION
    assert json.loads((baked.out_dir / "BAKED.json").read_text())["version"] == 1
    assert (baked.out_dir / "manifest.json").is_file()


def test_promote_then_rollback_move_the_alias_and_say_so(slice_: SimpleNamespace) -> None:
    promoted, rolled = slice_.out["promote"], slice_.out["rollback"]
    assert (promoted.event, promoted.from_version, promoted.to_version) == ("promoted", 1, 2)
    assert (rolled.event, rolled.from_version, rolled.to_version) == ("rolled_back", 2, 1)
    assert promoted.actor == rolled.actor == "pytest"
    rows = {r.version: r.aliases for r in slice_.out["versions"].versions}
    assert rows == {1: [CHAMPION], 2: []}
    events = [(e.event.value, e.to_version) for e in slice_.out["history"].events][::-1]
    assert events == [("registered", 1), ("gate_decision", 1), ("promoted", 1), ("registered", 2),
                      ("promoted", 2), ("rolled_back", 1)]
    outbox = slice_.settings.outbox_path.read_text().splitlines()
    notes = [json.loads(line) for line in outbox]
    assert [n["event"] for n in notes] == ["promoted", "promoted", "rolled_back"]
    # the gate's promotion carries the decision (first model: against the best generator), the CLI's does not
    assert notes[0]["details"]["gate"]["decision"]["verdict"] == "promote" and "gate" not in notes[1]["details"]
    assert {f["label"] for f in notes[0]["facts"]} >= {"Metric", "Delta", "95% CI", "Decision"}


def test_approve_without_a_reason_is_refused_before_anything_moves(slice_: SimpleNamespace) -> None:
    with pytest.raises(StageError, match="needs who decides"):
        release(slice_.settings, ReleaseParams(action="approve", version=2, by="alice"))
    with pytest.raises(ValueError, match="has no pending approval"):
        release(slice_.settings, ReleaseParams(action="approve", version=2, by="alice", reason="ok"))
    assert {r.version: r.aliases for r in versions(slice_.settings).versions}[1] == [CHAMPION]


def test_the_cli_prints_the_same_result_as_json(slice_: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import app

    monkeypatch.setenv("RECSYS_DATA_DIR", str(slice_.settings.data_dir))
    monkeypatch.setenv("RECSYS_VAR_DIR", str(slice_.settings.var_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["registry", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(slice_.out["versions"].to_json())
    shown = CliRunner().invoke(app, ["registry", "show", "--version", "2", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["tags"]["run_key"]
    assert CHALLENGER not in json.loads(shown.stdout)["aliases"]
