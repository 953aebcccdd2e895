"""The training stage: train as of a week → evaluate on the held-out weeks → save the bundle → log → register.

The bundle also keeps the drift check's reference: the served rows of the last training weeks
(:func:`recsys.monitoring.reference.build_reference`, sized by params.yaml's ``drift`` section).

:func:`train_model` is the one implementation of that sequence; :func:`train` (``recsys train``) and the gate's
refit (:mod:`recsys.stages.gate`) both call it. The bundle directory holds only what the inputs determine
(the same data, config and code give the same bytes); timings go to MLflow and to this stage's result.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from recsys import schema as S
from recsys.config import TrainConfig
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageResult
from recsys.stages.inputs import TrainingData, load_drift_config, load_training_data

if TYPE_CHECKING:
    import pandas as pd

    from recsys.ranking.recommender import Recommender

TIMING_KEYS = ("fit_seconds", "fit_ranker_seconds", "stage_seconds")
"""Training-info entries that measure the machine, not the model: kept out of the bundle."""


class HoldoutReport(BaseModel):
    """The held-out evaluation of a trained model: metrics per slice and model, and the ranker's gains."""

    window: str
    metrics: dict[str, dict[str, dict[str, float | None]]] = Field(
        description="slice (all, warm, cold, long_tail) -> model -> metric -> value")
    gains: dict[str, dict[str, Any]] = Field(description="slice -> the ranker's paired-bootstrap gain over the "
                                                         "best single generator")


class TrainParams(BaseModel):
    as_of_week: int = Field(description="train on weeks < W; the held-out weeks are W..W+H-1")
    config: TrainConfig = Field(default_factory=TrainConfig)
    out_dir: Path | None = Field(None, description="bundle directory; default <var_dir>/models/week=WW")
    register_version: bool = Field(True, description="register the logged model as a new version (alias challenger)")
    through_week: int | None = Field(None, description="train on the validated weeks up to this one only (what a "
                                                       "scheduled run for that week knew); default: all of them")
    reuse: bool = Field(False, description="when a registered version already holds this training's run key, return "
                                           "it without training again (a rerun of a scheduled retrain)")


class TrainResult(StageResult):
    as_of_week: int
    data_source: str
    data_hash: str
    bundle: Path | None = Field(description="the bundle directory (None: reused, and not in this var dir)")
    metrics_path: Path | None
    holdout: HoldoutReport | None = Field(description="None when the held-out weeks run past the data (or reused)")
    fit_seconds: float | None = Field(description="None when reused")
    fit_ranker_seconds: float | None
    stage_seconds: dict[str, float] | None = Field(None, description="wall time per step: tuning, generators_fit, "
                                                   "features_fit, candidates, features, ranker, final_fit; then "
                                                   "holdout, reference, answers, save, log")
    best_iteration: int | None
    tracking_uri: str
    run_id: str
    run_key: str
    model_name: str
    version: int | None = Field(description="the registry version, None when not registered")
    created: bool = Field(description="a new version was registered (False: this run key already had one)")
    reused: bool = Field(False, description="nothing was trained: the version holding the run key was returned")


def train(settings: Settings, params: TrainParams, *, reporter: Reporter = SILENT,
          data: TrainingData | None = None) -> TrainResult:
    """Train as of ``params.as_of_week`` on the training data, evaluate, save, log to MLflow, register."""
    from recsys.ranking.train import check_as_of_week

    data = data or load_training_data(settings, params.through_week)
    check_as_of_week(params.as_of_week, data.clock, params.config)
    reporter.note(data.source)
    if params.reuse and params.register_version:
        earlier = _registered(settings, data, params)
        if earlier is not None:
            reporter.note(f"{settings.model_name} v{earlier.version} already holds run key {earlier.run_key}: "
                          "not training again")
            return earlier
    return train_model(settings, data, params.as_of_week, params.config, out_dir=params.out_dir,
                       register=params.register_version, reporter=reporter)


def _registered(settings: Settings, data: TrainingData, params: TrainParams) -> TrainResult | None:
    """The completely registered version of this training's run key (same week, config and data), as a result."""
    from recsys.registry.tracking import COMPLETE, REGISTRATION_TAG, client_for, find_version, run_key

    key = run_key(params.as_of_week, params.config.model_dump_json(), data.ml.data_hash)
    found = find_version(client_for(settings.mlflow_uri), settings.model_name, key)
    if found is None or (found.tags or {}).get(REGISTRATION_TAG) != COMPLETE:
        return None
    bundle = params.out_dir or settings.models_dir / f"week={params.as_of_week:02d}"
    manifest = bundle / "manifest.json"
    local = manifest.is_file() and json.loads(manifest.read_text()).get("data_hash") == data.ml.data_hash
    return TrainResult(as_of_week=params.as_of_week, data_source=data.source, data_hash=data.ml.data_hash,
                       bundle=bundle if local else None, metrics_path=bundle / "metrics.json" if local else None,
                       holdout=None, fit_seconds=None, fit_ranker_seconds=None, best_iteration=None,
                       tracking_uri=settings.mlflow_uri, run_id=str(found.run_id), run_key=key,
                       model_name=settings.model_name, version=int(found.version), created=False, reused=True)


def drift_reference(settings: Settings, data: TrainingData, as_of_week: int, rec: Recommender
                    ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The served rows of the last training weeks (the drift check's reference) and their description."""
    from recsys.data.replay import interactions_before
    from recsys.monitoring.reference import build_reference

    cfg = load_drift_config(settings)
    first = max(as_of_week - cfg.reference_weeks, 0)
    history = interactions_before(data.ml.interactions, data.clock, as_of_week)
    reference = build_reference(rec, history, data.ml.users, data.clock.start(first), data.clock.start(as_of_week),
                                per_user=cfg.per_user, max_rows=cfg.reference_rows, seed=cfg.seed)
    return reference, {"weeks": [first, as_of_week], "rows": len(reference),
                       "users": int(reference[S.USER].nunique()), "per_user": cfg.per_user, "seed": cfg.seed}


def train_model(settings: Settings, data: TrainingData, as_of_week: int, config: TrainConfig, *,
                out_dir: Path | None = None, register: bool = True, tags: dict[str, str] | None = None,
                reporter: Reporter = SILENT) -> TrainResult:
    """The whole sequence (see the module docstring); ``tags`` go on the MLflow run, the bundle's manifest and the
    registry version (the refit marks itself with them)."""
    from recsys.data.split import temporal_window
    from recsys.evaluation.protocols import evaluate_holdout
    from recsys.evaluation.report import json_safe, summarize_result
    from recsys.monitoring.reference import REFERENCE_FILE
    from recsys.ranking.train import train_recommender
    from recsys.registry.audit import AuditLog
    from recsys.registry.tracking import log_training
    from recsys.registry.tracking import register as register_version

    ml, clock = data.ml, data.clock
    reporter.note(f"training as of week {as_of_week} on weeks < {as_of_week} …")
    with reporter.progress(f"training as of week {as_of_week}", "label windows") as track:
        result = train_recommender(ml, clock, as_of_week, config, progress=track, store=data.store_weeks)
    h = config.backtest.horizon
    holdout, summary, held_out = None, None, None
    after: dict[str, float] = {}  # wall seconds of the steps after the training itself
    t0 = time.perf_counter()
    if as_of_week + h <= clock.n_weeks:
        with reporter.status(f"evaluating on weeks {as_of_week}..{as_of_week + h - 1} …"):
            window = temporal_window(ml.interactions, clock, as_of_week, h)
            holdout = evaluate_holdout(result.recommender, window, ml, cut=as_of_week)
            summary = summarize_result(holdout)
            held_out = HoldoutReport(window=window.name, metrics=summary["metrics"], gains=summary["gains"])
    else:
        reporter.note(f"no held-out evaluation: weeks {as_of_week}..{as_of_week + h - 1} run past the last week "
                      f"{clock.n_weeks - 1}")
    info = {k: v for k, v in json_safe(result.info).items() if k not in TIMING_KEYS}
    report = {"as_of_week": as_of_week, "data_hash": ml.data_hash, "train": info, "holdout": summary}
    metrics = summary["metrics"]["all"].get("ranker", {}) if summary else {}
    bundle = out_dir or settings.models_dir / f"week={as_of_week:02d}"
    after["holdout"], t0 = time.perf_counter() - t0, time.perf_counter()
    with reporter.status("building the drift reference …"):
        reference, described = drift_reference(settings, data, as_of_week, result.recommender)
    after["reference"], t0 = time.perf_counter() - t0, time.perf_counter()
    with reporter.status("ranking every known user (the bundle's precomputed answers) …"):
        result.recommender.ranked = result.recommender.rank_known()
    after["answers"], t0 = time.perf_counter() - t0, time.perf_counter()
    result.recommender.save(bundle, extra={"metrics": metrics, "train_info": info, "reference": described,
                                           **(tags or {})}, frames={REFERENCE_FILE: reference})
    after["save"], t0 = time.perf_counter() - t0, time.perf_counter()
    # the report sits beside the checksummed model files; it is not part of the model
    metrics_path = bundle / "metrics.json"
    metrics_path.write_text(json.dumps(report, indent=2, default=str))

    uri = settings.mlflow_uri
    audit = AuditLog(settings.audit_db_url)
    try:
        with reporter.status("logging the run to MLflow …"):
            logged = log_training(result, bundle, tracking_uri=uri, evaluation=holdout, summary=summary, tags=tags)
            version = None
            if register:
                version = register_version(logged, settings.model_name, tracking_uri=uri, audit=audit,
                                           version_tags=tags)
    finally:
        audit.close()
    after["log"] = time.perf_counter() - t0
    return TrainResult(
        as_of_week=as_of_week, data_source=data.source, data_hash=ml.data_hash, bundle=bundle,
        metrics_path=metrics_path,
        holdout=held_out,
        fit_seconds=float(result.info["fit_seconds"]), fit_ranker_seconds=float(result.info["fit_ranker_seconds"]),
        stage_seconds={**result.info.get("stage_seconds", {}), **{k: round(v, 2) for k, v in after.items()}},
        best_iteration=int(result.info["best_iteration"]), tracking_uri=uri, run_id=logged.run_id,
        run_key=logged.run_key, model_name=settings.model_name,
        version=None if version is None else version.version, created=bool(version and version.created))

