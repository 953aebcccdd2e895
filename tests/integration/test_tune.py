"""``recsys tune``: an Optuna study on the validation window of week 20, two trials, each a nested MLflow run in
an in-process SQLite store; the objective never reads a week at or after the cut; the best config is written
as a TrainConfig JSON."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import TrainConfig
from recsys.data import split
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock
from recsys.registry.tracking import TUNING_EXPERIMENT
from recsys.settings import Settings
from recsys.stages.inputs import TrainingData
from recsys.stages.tune import TuneParams, TuneResult, tune

AS_OF, HORIZON, TRIALS = 20, 4, 2
SMALL = {"candidates": {"per_generator": 50, "tune": False},
         "ranker": {"label_windows": 3, "n_estimators": 40, "refit": False, "num_threads": 1},
         "backtest": {"horizon": HORIZON}}
TUNED_RANKER = ("num_leaves", "learning_rate", "min_child_samples", "feature_fraction", "lambda_l2", "label_windows")


@pytest.fixture(scope="module")
def tuned(movielens: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tune")
    uri = f"sqlite:///{root}/mlflow.db"
    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    base = TrainConfig.model_validate(SMALL)
    windows: list[tuple[int, int]] = []
    original = split.temporal_window

    def spy(interactions: Any, clk: ReplayClock, start: int, horizon: int) -> split.LabelWindow:
        windows.append((start, horizon))
        return original(interactions, clk, start, horizon)

    settings = Settings(data_dir=root / "data", var_dir=root / "var", tracking_uri=uri)
    params = TuneParams(as_of_week=AS_OF, trials=TRIALS, config=base, out=root / "tuning" / "best_config.json")
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1, user_api="blas"):
        mp.setattr(split, "temporal_window", spy)
        result = tune(settings, params, data=TrainingData(ml, clock, "the raw download"))
    return SimpleNamespace(result=result, base=base, uri=uri, windows=windows, path=result.config_path)


def test_trials_and_best(tuned: SimpleNamespace) -> None:
    result = tuned.result
    assert len(result.trials) == TRIALS
    values = [t.value for t in result.trials]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    assert result.best_value == max(values)
    best = next(t for t in result.trials if t.value == result.best_value)
    assert best.params == result.best_params
    assert TuneResult.model_validate_json(result.to_json()) == result  # what a DAG task passes on


def test_best_config_is_written_for_training(tuned: SimpleNamespace) -> None:
    loaded = TrainConfig.model_validate_json(tuned.path.read_text(encoding="utf-8"))
    assert loaded == tuned.result.config
    for name in TUNED_RANKER:
        assert getattr(loaded.ranker, name) == tuned.result.best_params[name]
    assert loaded.candidates.per_generator == tuned.result.best_params["candidates.per_generator"]
    assert loaded.ranker != tuned.base.ranker
    assert loaded.ranker.n_estimators == tuned.base.ranker.n_estimators  # untuned fields come from the base
    assert loaded.backtest == tuned.base.backtest


def test_objective_never_reads_the_cut_week_or_later(tuned: SimpleNamespace) -> None:
    assert tuned.windows
    assert all(start + horizon <= AS_OF for start, horizon in tuned.windows)
    assert (AS_OF - HORIZON, HORIZON) in tuned.windows  # the validation window
    for trial in tuned.result.trials:
        assert all(start + HORIZON <= AS_OF - HORIZON for start in trial.label_window_starts)


def test_each_trial_is_a_nested_mlflow_run(tuned: SimpleNamespace) -> None:
    client = MlflowClient(tracking_uri=tuned.uri)
    experiment = client.get_experiment_by_name(TUNING_EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == TRIALS
    assert parents[0].info.run_id == tuned.result.parent_run_id
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    logged = sorted(c.data.metrics["val_ndcg_at_10"] for c in children)
    assert logged == pytest.approx(sorted(t.value for t in tuned.result.trials))
    assert all(set(c.data.params) >= set(TUNED_RANKER) for c in children)


def test_cli_refuses_zero_trials() -> None:
    result = CliRunner().invoke(app, ["tune", "--as-of-week", str(AS_OF), "--trials", "0"])
    assert result.exit_code == 2
    assert "--trials" in result.output


def test_cli_registry_show(small_model: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.registry.tracking import log_training, register

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RECSYS_VAR_DIR", str(tmp_path / "var"))
    ml, trained = small_model.ml, small_model.result
    bundle = tmp_path / "bundle"
    trained.recommender.save(bundle)
    version = register(log_training(trained, bundle, metrics={"ndcg@10": 0.25}, tracking_uri=uri),
                       tracking_uri=uri)
    result = CliRunner().invoke(app, ["registry", "show", "--version", str(version.version)])
    assert result.exit_code == 0, result.output
    for text in ("READY", "challenger", version.run_key, ml.data_hash, "ndcg_at_10", "best_iteration"):
        assert text in result.stdout
    missing = CliRunner().invoke(app, ["registry", "show", "--version", "99"])
    assert missing.exit_code == 1
    assert missing.stderr.strip().startswith("error:") and "\n" not in missing.stderr.strip()
