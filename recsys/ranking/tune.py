"""Hyper-parameter search for the ranker (and the candidate count) with Optuna, tracked in MLflow.

Protocol, for a model trained as of week ``W`` with horizon ``H`` (the same split ``train_recommender`` uses
before its refit step): the generators' main parameters are tuned once on the validation window
``[W-H, W)`` (``tune_generators``) and reused by every trial; each trial trains the LambdaRank ranker on the
stacked label windows that end before the validation window and scores it there: the objective is the
mean NDCG@10 of the ranker over *every* user with a positive in the validation window (all of the user's
positives are the relevant set; a user whose candidates hold none scores 0). Nothing at or after ``W`` is
read. Early stopping also uses the validation window, exactly as in training, so the objective is a
model-selection score, not a held-out estimate: evaluate the chosen config on ``[W, W+H)``.

Trials are reported to a :class:`TuningLog` as they run (the registry records each as a nested MLflow run under
one parent). The best config goes where training reads it (``write_config``): by default the ``candidates`` and
``ranker`` sections of ``params.yaml`` (comments kept), or a ``TrainConfig`` JSON file for ``recsys train --config``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from recsys.config import CandidateConfig, RankerConfig, TrainConfig
from recsys.data import split
from recsys.data.load import MovieLens
from recsys.data.replay import ReplayClock
from recsys.ranking.queries import QueryFrame, fit_window, users_ndcg, window_queries
from recsys.ranking.ranker import predict, train_ranker
from recsys.ranking.train import WindowCache, check_as_of_week, training_starts, tune_generators
from recsys.schema import K

log_ = logging.getLogger(__name__)

METRIC = "val_ndcg_at_10"


class Trial(BaseModel):
    """One trial of the study: its number, validation NDCG@10, parameters, trees and the label windows read."""

    number: int
    value: float
    params: dict[str, Any]
    best_iteration: int
    seconds: float
    label_window_starts: list[int]


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    config: TrainConfig
    trials: list[Trial] = field(default_factory=list)
    windows: list[str] = field(default_factory=list)
    """Names of the label windows the objective read (all end before the cut week)."""


def write_config(config: TrainConfig, path: Path) -> Path:
    """Write ``config`` where ``recsys train`` reads it: into a params.yaml (its candidates and ranker sections;
    the rest of the file is kept) or, for any other suffix, as a TrainConfig JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".yaml", ".yml"):
        from recsys.params import update_params

        dumped = config.model_dump(mode="json")
        return update_params(path, {"candidates": dumped["candidates"], "ranker": dumped["ranker"]})
    path.write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def apply_params(base: TrainConfig, cand_cfg: CandidateConfig, params: dict[str, Any]) -> TrainConfig:
    """``base`` with the tuned generator values and a trial's params (``candidates.*`` / ranker fields)."""
    ranker_fields = set(RankerConfig.model_fields)
    ranker = {k: v for k, v in params.items() if k in ranker_fields}
    candidates = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("candidates.")}
    unknown = set(params) - ranker_fields - {f"candidates.{k}" for k in candidates}
    if unknown:
        raise ValueError(f"unknown tuning parameter(s): {sorted(unknown)}")
    return base.model_copy(update={
        "candidates": CandidateConfig.model_validate({**cand_cfg.model_dump(), **candidates}),
        "ranker": RankerConfig.model_validate({**base.ranker.model_dump(), **ranker}),
    })


def suggest(trial: Any) -> dict[str, Any]:
    """The search space."""
    return {
        "num_leaves": trial.suggest_int("num_leaves", 15, 127, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        "label_windows": trial.suggest_int("label_windows", 4, 16),
        "candidates.per_generator": trial.suggest_categorical("candidates.per_generator", [50, 100, 150]),
    }


def validation_ndcg(booster: Any, valid_q: QueryFrame, truth: dict[int, set[int]], k: int = K) -> float:
    """Mean NDCG@k of the ranker's order of each user's candidates, over every user of ``truth``."""
    scores = predict(booster, valid_q.x) if len(valid_q.y) else np.empty(0)
    per_user = users_ndcg(scores, valid_q, truth, k)
    return float(np.mean(list(per_user.values()))) if per_user else 0.0


def _flat(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in params.items()}


class TuningLog(Protocol):
    """Where a study's trials are recorded as they run (the registry's MLflow tracker implements it)."""

    def begin(self, as_of_week: int, params: dict[str, Any]) -> None: ...

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...

    def trial_ended(self, number: int, metrics: dict[str, float] | None) -> None:
        """``metrics`` is None when the trial failed."""

    def end(self, best_params: dict[str, Any] | None, best_value: float | None, config: dict[str, Any] | None) -> None:
        """All None when the study failed."""


def tune(ml: MovieLens, clock: ReplayClock, as_of_week: int, base: TrainConfig, trials: int, *, seed: int = 0,
         log: TuningLog | None = None,
         progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> TuneResult:
    """Run ``trials`` Optuna trials for a model trained as of ``as_of_week`` (see the module docstring)."""
    import optuna

    if trials < 1:
        raise ValueError(f"--trials must be >= 1, got {trials}")
    check_as_of_week(as_of_week, clock, base)
    h = base.backtest.horizon
    valid_start = as_of_week - h
    valid_window = split.temporal_window(ml.interactions, clock, valid_start, h)
    truth = valid_window.truth()
    if not truth:
        raise ValueError(f"the validation window {valid_window.name} holds no positives: nothing to tune on")
    cand_cfg, _ = tune_generators(valid_window, ml, base.candidates) if base.candidates.tune else (
        base.candidates, {})
    cache = WindowCache()
    windows: set[str] = set()

    def queries(start: int, cfg: TrainConfig) -> QueryFrame:
        def build() -> QueryFrame:
            window = split.temporal_window(ml.interactions, clock, start, h)
            windows.add(window.name)
            return window_queries(fit_window(window, ml.items, ml.users, cfg.candidates), cfg.ranker.graded_labels)

        return cache.get((start, cfg.candidates.model_dump_json()), build)

    records: list[Trial] = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    tracker: TuningLog = log or _NoLog()
    finished = False
    tracker.begin(as_of_week, {"as_of_week": as_of_week, "trials": trials, "seed": seed,
                               "validation_window": valid_window.name, "data_hash": ml.data_hash,
                               **{f"generators.{k}": v for k, v in cand_cfg.model_dump().items()}})
    try:
        def objective(trial: Any) -> float:
            params = suggest(trial)
            cfg = apply_params(base, cand_cfg, params)
            t0 = time.perf_counter()
            starts = training_starts(as_of_week, cfg)
            tracker.trial_started(trial.number, _flat(params))
            metrics = None
            try:
                train_q = QueryFrame.concat([queries(s, cfg) for s in starts])
                valid_q = queries(valid_start, cfg)
                booster = train_ranker(train_q, valid_q, cfg.ranker)
                value = validation_ndcg(booster, valid_q, truth)
                seconds = time.perf_counter() - t0
                metrics = {METRIC: value, "best_iteration": float(booster.num_trees()), "trial_seconds": seconds}
            finally:
                tracker.trial_ended(trial.number, metrics)
            records.append(Trial(number=trial.number, value=value, params=params,
                                 best_iteration=int(booster.num_trees()), seconds=round(seconds, 2),
                                 label_window_starts=starts))
            log_.info("trial %d: %s = %.4f (%s)", trial.number, METRIC, value, params)
            return value

        loop = progress(range(trials)) if progress else range(trials)
        for _ in loop:
            study.optimize(objective, n_trials=1)
        best = study.best_trial
        best_value = float(best.value) if best.value is not None else math.nan
        config = apply_params(base, cand_cfg, best.params)
        tracker.end(_flat(best.params), best_value, config.model_dump(mode="json"))
        finished = True
    finally:
        if not finished:
            tracker.end(None, None, None)
    return TuneResult(dict(best.params), best_value, config, records, sorted(windows))


class _NoLog:
    def begin(self, as_of_week: int, params: dict[str, Any]) -> None:
        pass

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        pass

    def trial_ended(self, number: int, metrics: dict[str, float] | None) -> None:
        pass

    def end(self, best_params: dict[str, Any] | None, best_value: float | None, config: dict[str, Any] | None) -> None:
        pass
