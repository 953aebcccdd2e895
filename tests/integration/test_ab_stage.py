"""The A/B stages over real logs and stores: counts from the assignment log and the feedback store, the reports
written, the decision in the audit log, and the blocks (SRM, nothing to promote)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recsys.experiments.ab import AbConfig
from recsys.registry.audit import AuditEvent, AuditLog
from recsys.serving.feedback import FeedbackEvent, FeedbackStore
from recsys.settings import ServingSettings
from recsys.stages.ab import AbParams, ab_decide, ab_report
from recsys.stages.base import NothingToDoError, StageError

T0 = datetime(1998, 4, 1, tzinfo=UTC)
EXPERIMENT = {"name": "t", "salt": "s", "variants": {"champion": 0.5, "challenger": 0.5}}


def _settings(tmp_path: Path) -> ServingSettings:
    return ServingSettings(var_dir=tmp_path / "var", experiment=json.dumps(EXPERIMENT))  # type: ignore[call-arg]


def _traffic(settings: ServingSettings, users: dict[str, int], ctr: dict[str, float], per_user: int = 4,
             version: dict[str, int | None] | None = None) -> None:
    rng = random.Random(0)
    folder = settings.assignment_path
    folder.mkdir(parents=True, exist_ok=True)
    store = FeedbackStore(settings.feedback_db_url)
    rows, uid = [], 0
    for variant, n_users in users.items():
        for _ in range(n_users):
            uid += 1
            for k in range(per_user):
                ts = T0 + timedelta(minutes=uid * 7 + k)
                rid = f"r{uid}-{k}"
                rows.append({"ts": ts.isoformat(), "request_id": rid, "user_id": uid, "variant": variant,
                             "alias": variant, "version": (version or {}).get(variant, 1 if variant == "champion"
                                                                            else 2),
                             "fallback": False, "items": [10, 11, 12]})
                if rng.random() < ctr[variant]:
                    store.record(FeedbackEvent(event_id=f"e{rid}", request_id=rid, user_id=uid, item_id=11,
                                               event="click", ts=ts + timedelta(seconds=5), variant=variant))
    rows.sort(key=lambda r: r["ts"])
    for row in rows:
        with (folder / f"assignments-{datetime.fromisoformat(row['ts']):%Y%m%d}.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    store.close()


def test_a_clear_winner_is_promoted_in_the_audit_log(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _traffic(settings, {"champion": 1500, "challenger": 1500}, {"champion": 0.05, "challenger": 0.15})
    result = ab_decide(settings, AbParams(config=AbConfig(min_impressions=100)))
    assert result.decision == "promote", result.report.decision.reasons
    assert result.versions == {"challenger": [2], "champion": [1]}
    assert result.impressions["champion"].impressions == 6000 and result.report.srm is not None
    assert result.report.srm.ok and result.html.exists() and result.plot.exists()
    from mlflow import MlflowClient

    run = MlflowClient(settings.mlflow_uri).get_run(str(result.mlflow_run_id))  # logged, with its artifacts
    assert run.data.tags["ab.decision"] == "promote" and run.data.metrics["challenger.ctr"] > 0.1
    assert {a.path for a in MlflowClient(settings.mlflow_uri).list_artifacts(run.info.run_id)} >= {
        "report.html", "ctr.png", "report.json"}
    assert (settings.reports_dir / "ab" / "t" / "latest.json").exists()
    audit = AuditLog(settings.audit_db_url)
    (record,) = [r for r in audit.history(settings.model_name) if r.event == AuditEvent.AB_DECISION]
    assert record.to_version == 2 and record.details["decision"] == "promote"
    audit.close()


def test_a_sample_ratio_mismatch_blocks_the_decision(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _traffic(settings, {"champion": 1400, "challenger": 1000}, {"champion": 0.05, "challenger": 0.15})
    result = ab_report(settings, AbParams(config=AbConfig(min_impressions=100)))
    assert result.report.srm is not None and not result.report.srm.ok
    assert result.decision == "inconclusive" and "sample ratio mismatch" in result.report.decision.reasons[0]


def test_apply_needs_one_registered_version_and_unknown_variants_are_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _traffic(settings, {"champion": 1500, "challenger": 1500}, {"champion": 0.05, "challenger": 0.15},
             version={"champion": 1, "challenger": None})
    with pytest.raises(StageError, match="not exactly one registered version"):
        ab_decide(settings, AbParams(apply=True, config=AbConfig(min_impressions=100)))
    with pytest.raises(StageError, match="not in experiment"):
        ab_report(settings, AbParams(treatment="shadow"))


def test_no_experiment_is_nothing_to_do_not_a_failure(tmp_path: Path) -> None:
    """The daily ab_decision DAG skips (exit 3) while no A/B test runs, instead of failing every day."""
    settings = ServingSettings(var_dir=tmp_path / "var")  # type: ignore[call-arg]
    with pytest.raises(NothingToDoError, match="no A/B test to analyse"):
        ab_decide(settings, AbParams(apply=True))
