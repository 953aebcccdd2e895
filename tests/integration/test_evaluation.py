"""The evaluation's design/report split, its user-clustered gains, and the ablation harness: on the real data
with a small config, the ablation's full variant ranks exactly as the backtest's trained model does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.config import TrainConfig
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock
from recsys.evaluation.ablation import FULL, Variant, ablation, ablation_table, recall_table
from recsys.evaluation.protocols import RANKER, run_backtest
from recsys.settings import Settings
from recsys.stages.evaluate import EvaluateParams, evaluate


def test_the_backtest_reports_design_and_report_cuts_apart(raw_data_dir: Callable[[Path], Path],
                                                           small_config: dict[str, Any], tmp_path: Path) -> None:
    raw_data_dir(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", var_dir=tmp_path / "var", params_file=tmp_path / "absent.yaml",
                        training_source="raw", tracking_uri=None)
    config = TrainConfig.model_validate(small_config)
    result = evaluate(settings, EvaluateParams(protocol="backtest", cuts=[18, 20], config=config, n_resamples=200))
    assert set(result.protocols) == {"temporal_design", "temporal_backtest"}
    design, report = result.protocols["temporal_design"], result.protocols["temporal_backtest"]
    assert design.summary["info"]["cuts"] == [18] and report.summary["info"]["cuts"] == [20]
    assert "design cuts" in design.title and "report cuts" in report.title
    for part in (design, report):
        gain = part.summary["gains"]["all"]
        users = part.summary["metrics"]["all"][RANKER]["users"]
        assert gain["n"] == users and gain["clusters"] == users  # one cut: every user is one row
        assert gain["ci_low"] <= gain["diff"] <= gain["ci_high"]


def test_a_users_cuts_are_one_cluster(movielens: Path, small_config: dict[str, Any]) -> None:
    ml = load_movielens(movielens)
    config = TrainConfig.model_validate(small_config)
    result = run_backtest(ml, config, [20, 21], clock=ReplayClock.from_interactions(ml.interactions))
    gain = result.gain("all", n_resamples=200)
    rows = result.per_user[(result.per_user["model"] == RANKER) & (result.per_user["slice"] == "main")]
    assert gain["n"] == len(rows) and gain["clusters"] == rows["key"].nunique() < len(rows)
    single = result.subset([21], "temporal_backtest")
    assert set(single.per_user["cut"]) == {21} and single.info["cuts"] == [21]
    with pytest.raises(ValueError, match="not in this evaluation"):
        result.subset([22], "x")


def test_the_ablations_full_variant_is_the_backtests_ranker(movielens: Path, small_config: dict[str, Any]) -> None:
    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    config = TrainConfig.model_validate(small_config)
    backtest = run_backtest(ml, config, [20], clock=clock)
    variants = {"ease order": Variant(generator="ease"), "without demo_cf": Variant(drop=("demo_cf",)),
                "25 per generator": Variant(per_generator=25)}
    result = ablation(ml, clock, [20], config, variants)
    per_user = result.per_user.pivot_table(index="key", columns="variant", values="ndcg@10")
    main = backtest.per_user[backtest.per_user["slice"] == "main"].pivot_table(index="key", columns="model",
                                                                               values="ndcg@10")
    np.testing.assert_allclose(per_user[FULL].to_numpy(), main.loc[per_user.index, RANKER].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(per_user["ease order"].to_numpy(), main.loc[per_user.index, "ease"].to_numpy(),
                               atol=1e-12)
    assert not np.allclose(per_user["without demo_cf"], per_user[FULL])
    table = ablation_table(result.per_user, n_resamples=200)
    row = table[(table["variant"] == "ease order") & (table["slice"] == "all")].iloc[0]
    assert row["gain"] == pytest.approx(per_user[FULL].mean() - per_user["ease order"].mean())
    recall = recall_table(result.recall).set_index(["slice", "k"])
    assert recall.loc[("all", 10), "recall"] <= recall.loc[("all", 25), "recall"] <= recall.loc[("all", 50), "recall"]
    assert recall.loc[("all", 50), "candidates"] > recall.loc[("all", 10), "candidates"]
    with pytest.raises(ValueError, match="unknown feature group"):
        ablation(ml, clock, [20], config, {"x": Variant(drop=("nope",))})
