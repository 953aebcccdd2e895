"""The tuning stage: an Optuna study on the validation weeks, each trial a nested MLflow run; the best config is
written where training reads it (``params.yaml`` by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from recsys.config import TrainConfig
from recsys.ranking.tune import Trial
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageResult
from recsys.stages.inputs import TrainingData, load_training_data


class TuneParams(BaseModel):
    as_of_week: int = Field(description="tune for a model trained as of week W (the objective reads weeks < W)")
    trials: int = Field(20, ge=1)
    config: TrainConfig = Field(default_factory=TrainConfig, description="the base config the search varies")
    out: Path | None = Field(None, description="a params .yaml (its candidates and ranker sections) or a JSON "
                                               "config file; default: the settings' params file")
    seed: int = Field(0, description="seed of the TPE sampler")


class TuneResult(StageResult):
    as_of_week: int
    best_value: float
    best_params: dict[str, Any]
    trials: list[Trial]
    config: TrainConfig
    config_path: Path
    parent_run_id: str | None
    windows: list[str]


def tune(settings: Settings, params: TuneParams, *, reporter: Reporter = SILENT,
         data: TrainingData | None = None) -> TuneResult:
    from recsys.ranking.train import check_as_of_week
    from recsys.ranking.tune import tune as run_study
    from recsys.ranking.tune import write_config
    from recsys.registry.tracking import MlflowTuningLog

    data = data or load_training_data(settings)
    check_as_of_week(params.as_of_week, data.clock, params.config)
    reporter.note(data.source)
    reporter.note(f"tuning as of week {params.as_of_week}: {params.trials} trial(s) on weeks < {params.as_of_week} …")
    log = MlflowTuningLog(settings.mlflow_uri)
    with reporter.progress(f"tuning as of week {params.as_of_week}", "trials") as track:
        study = run_study(data.ml, data.clock, params.as_of_week, params.config, params.trials, seed=params.seed,
                          log=log, progress=track)
    path = write_config(study.config, params.out or settings.params_file)
    return TuneResult(as_of_week=params.as_of_week, best_value=study.best_value, best_params=study.best_params,
                      trials=study.trials, config=study.config, config_path=path,
                      parent_run_id=log.parent_run_id, windows=study.windows)
