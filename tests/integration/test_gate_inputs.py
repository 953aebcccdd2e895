"""What the gate measures on a real bundle: the schema smoke test, recommend() latency, the evaluation report
(plots, tables, flat metrics) and NDCG by user activity, on the small model trained as of week 20."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import pytest

from recsys.data.split import temporal_window
from recsys.evaluation.plots import ACTIVITY_BUCKETS, activity_bucket, ndcg_by_activity
from recsys.evaluation.protocols import EvalResult, evaluate_window, list_metrics
from recsys.evaluation.report import flat_metrics, summarize_result, write_report
from recsys.ranking.ranker import feature_importance
from recsys.ranking.recommender import Recommender
from recsys.registry.release import recommend_latency, schema_problems

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def holdout(small_model: SimpleNamespace) -> SimpleNamespace:
    ml, clock, rec = small_model.ml, small_model.clock, small_model.result.recommender
    window = temporal_window(ml.interactions, clock, small_model.as_of, small_model.horizon)
    per_user, lists = evaluate_window(rec, window, ml.users, cut=small_model.as_of)
    result = EvalResult("holdout", per_user, list_metrics([lists], len(ml.items)))
    return SimpleNamespace(result=result, summary=summarize_result(result, n_resamples=200), window=window, rec=rec)


def test_a_sound_bundle_passes_the_schema_check(holdout: SimpleNamespace) -> None:
    known = holdout.window.users[~holdout.window.cold_mask(holdout.window.users)]
    assert schema_problems(holdout.rec, known) == []


def test_a_booster_with_other_features_fails_the_schema_check(holdout: SimpleNamespace) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    other = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(x, x[:, 0]), num_boost_round=2)
    broken = Recommender(holdout.rec.stage1, holdout.rec.features, other, holdout.rec.profiles)
    [problem] = schema_problems(broken, holdout.window.users[:5])
    assert problem.startswith("recommend() failed: BundleError")


def test_latency_is_measured_per_single_user_call(holdout: SimpleNamespace) -> None:
    stats = recommend_latency(holdout.rec, holdout.window.users[:20])
    assert stats.n == 20
    assert 0 < stats.p50_ms <= stats.p95_ms <= stats.p99_ms


def test_activity_buckets_cover_every_user_once(holdout: SimpleNamespace) -> None:
    buckets = activity_bucket(holdout.result.per_user["activity"])
    assert buckets.notna().all()
    assert list(buckets.cat.categories) == [label for *_, label in ACTIVITY_BUCKETS]
    table = ndcg_by_activity(holdout.result)
    assert int(table["users"].sum()) == len(holdout.window.users)
    cold = holdout.window.cold_mask(holdout.window.users).sum()
    assert int(table.loc["cold (0)", "users"]) == cold
    assert table.drop(columns="users").stack().between(0, 1).all()


def test_report_files_and_flat_metrics(holdout: SimpleNamespace, tmp_path: Path) -> None:
    importance = feature_importance(holdout.rec.booster)
    written = write_report(holdout.result, holdout.summary, tmp_path, importance)
    names = {p.name for p in written}
    assert {"metric_comparison.png", "feature_importance.png", "ndcg_by_activity.png", "summary.json",
            "report.md", "table_all.csv"} <= names
    for path in written:
        assert path.exists() and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "summary.json").read_text())["protocol"] == "holdout"

    metrics = flat_metrics(holdout.summary)
    ranker = holdout.result.table("all").loc["ranker"]
    assert metrics["ndcg_at_10"] == pytest.approx(ranker["ndcg@10"])
    assert metrics["ndcg_at_10.warm"] == pytest.approx(holdout.result.table("warm").loc["ranker", "ndcg@10"])
    assert metrics["baseline.ndcg_at_10"] == pytest.approx(
        holdout.result.table("all").loc[holdout.result.best_baseline(), "ndcg@10"])
    assert all("@" not in name for name in metrics)
    assert metrics["gain.ndcg_at_10.all.ci_low"] <= metrics["gain.ndcg_at_10.all.diff"]
