"""MLflow tracking and registration of a trained recommender.

``log_training`` records one training run (flattened config as params, the training info, metrics, lineage
tags, the training window as a dataset input) and logs the bundle as a pyfunc model; ``register`` turns that
logged model into a registry version with the alias ``challenger``, once per run key: rerunning the same
training (same replay week, config and data hash) returns the existing version instead of adding one.

Callers pass the tracking URI (``Settings.mlflow_uri``: ``MLFLOW_TRACKING_URI``, else a SQLite store under
``var_dir``). Nothing touches MLflow or the file system at import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import pandas as pd
import requests
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities.model_registry import ModelVersion
from mlflow.entities.model_registry.model_version_status import ModelVersionStatus
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema, TensorSpec
from tenacity import (
    RetryError,
    Retrying,
    before_sleep_log,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
)

from recsys import schema as S
from recsys.evaluation.protocols import EvalResult
from recsys.evaluation.report import flat_metrics, summarize_result, write_report
from recsys.ranking.ranker import feature_importance
from recsys.ranking.recommender import Recommender
from recsys.ranking.train import TrainResult
from recsys.registry.audit import AuditEvent, AuditLog
from recsys.runtime import preserved_env
from recsys.schema import CHALLENGER, DEFAULT_MODEL_NAME, K

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = DEFAULT_MODEL_NAME
DEFAULT_N = K
READY_TIMEOUT_S = 60.0
RUN_KEY_TAG, DATA_HASH_TAG, GIT_SHA_TAG, WEEK_TAG = "run_key", "data_hash", "git_sha", "replay_week"
REGISTRATION_TAG, COMPLETE = "registration", "complete"
"""Set last, once the version is READY with its alias: a version without it was left half-registered."""
OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "score")
# the runtime packages a served bundle imports (recsys itself travels as code_paths)
_RUNTIME_PACKAGES = ("mlflow", "lightgbm", "numpy", "pandas", "scipy", "pyarrow", "pydantic", "pydantic-settings")

T = TypeVar("T")


# -- retries -------------------------------------------------------------------------------------------------
_CONNECTION_HINTS = ("connection", "max retries exceeded", "temporarily_unavailable", "failed to establish",
                     "timed out", "remote end closed")


def is_connection_error(exc: BaseException) -> bool:
    """A server that cannot be reached (worth retrying), not a request the server refused."""
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(exc, MlflowException):
        text = f"{exc.error_code} {exc.message}".lower()
        return any(hint in text for hint in _CONNECTION_HINTS)
    return False


def with_retries(fn: Callable[[], T], attempts: int = 3) -> T:
    """Call ``fn`` with up to ``attempts`` tries on connection errors (exponential backoff), reraising the last;
    each retry is logged (INFO: ``recsys -v`` shows it; the final failure is the caller's to report)."""
    retrying = Retrying(retry=retry_if_exception(is_connection_error), stop=stop_after_attempt(attempts),
                        wait=wait_exponential(multiplier=0.5, max=4), reraise=True,
                        before_sleep=before_sleep_log(logger, logging.INFO))
    return retrying(fn)


class MlflowUnreachableError(MlflowException):
    """MLflow could not be reached, even after the retries (the message names the tracking URI)."""


@contextlib.contextmanager
def reporting_unreachable(uri: str) -> Iterator[None]:
    """Turn a connection error that outlived the retries into :class:`MlflowUnreachableError` naming ``uri``."""
    try:
        yield
    except MlflowUnreachableError:
        raise
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        raise MlflowUnreachableError(f"MLflow is unreachable at {uri} (gave up after retries): {exc}") from exc


@contextlib.contextmanager
def scoped_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the block, then put back exactly what was there.

    ``mlflow.set_tracking_uri`` also writes ``$MLFLOW_TRACKING_URI``; restoring with
    ``set_tracking_uri(mlflow.get_tracking_uri())`` would pin a resolved default into both, so the raw
    module global (None when never set) and the environment variable are saved and restored instead.
    """
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_global = tracking_utils._tracking_uri
    with preserved_env("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_global)  # type: ignore[arg-type]  # None unsets it (mlflow's own reset)


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[MlflowClient]:
    """Point the fluent API at ``uri`` for the block (what was there before is restored after)."""
    client = client_for(uri)
    with scoped_tracking_uri(uri), reporting_unreachable(uri):
        yield client


def client_for(tracking_uri: str) -> MlflowClient:
    """An MLflow client with an explicit tracking and registry URI (a SQLite store's folder is created)."""
    if tracking_uri.startswith("sqlite:///"):
        db = tracking_uri.removeprefix("sqlite:///")
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# -- the pyfunc model ----------------------------------------------------------------------------------------
class RecommenderPyfunc(PythonModel):
    """The bundle as an MLflow pyfunc: rows of ``user_id`` (+ ``n``, profile fields) -> top-N in long format."""

    def __init__(self) -> None:
        self.recommender: Recommender | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self.recommender = Recommender.load(Path(context.artifacts["bundle"]))

    def __getstate__(self) -> dict[str, Any]:
        # the bundle travels as an artifact; never pickle a loaded recommender into the model
        return {**self.__dict__, "recommender": None}

    def predict(self, context: PythonModelContext | None, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.recommender is None:
            raise RuntimeError("no bundle loaded: load the model with mlflow.pyfunc.load_model")
        df = pd.DataFrame(model_input).reset_index(drop=True)
        if S.USER not in df.columns:
            raise ValueError(f"model input needs a {S.USER!r} column, got {list(df.columns)}")
        users = df[S.USER].astype("int64")
        ns = (df["n"].fillna(DEFAULT_N) if "n" in df.columns else pd.Series(DEFAULT_N, index=df.index)).astype(int)
        profiles = None
        if any(f in df.columns for f in S.PROFILE_FIELDS):
            profiles = pd.DataFrame({f: (df[f].astype(object).where(df[f].notna(), None) if f in df.columns
                                         else [None] * len(df)) for f in S.PROFILE_FIELDS})
        recs: dict[int, list[Any]] = {}
        for n, idx in ns.groupby(ns).groups.items():
            rows = list(idx)
            prof = None if profiles is None else profiles.loc[rows].reset_index(drop=True)
            for row, items in zip(rows, self.recommender.recommend_batch(users.loc[rows].to_numpy(), int(n), prof),
                                  strict=True):
                recs[row] = items
        out = [(int(users[row]), rank, r.item_id, r.score)
               for row in range(len(df)) for rank, r in enumerate(recs[row], start=1)]
        frame = pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))
        return frame.astype({"user_id": "int64", "rank": "int64", "item_id": "int64", "score": "float64"})


def model_signature(example: pd.DataFrame, output: pd.DataFrame) -> Any:
    """Signature inferred from an example; ``n`` and the profile fields are optional inputs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        inferred = infer_signature(example, output)
    cols: list[ColSpec | TensorSpec] = [ColSpec("long", S.USER), ColSpec("long", "n", required=False),
                                        ColSpec("long", S.AGE, required=False)]
    cols += [ColSpec("string", f, required=False) for f in S.PROFILE_FIELDS if f != S.AGE]
    inferred.inputs = Schema(cols)
    return inferred


# -- tracking ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_uri: str
    run_key: str
    data_hash: str = ""
    git_sha: str = "unknown"
    tracking_uri: str = ""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_key: str
    created: bool


def run_key(as_of_week: int, config_json: str, data_hash: str) -> str:
    """The idempotency key of a training: same week, config and data -> same key."""
    # normalise the JSON so key order or spacing never changes the key
    canonical = json.dumps(json.loads(config_json), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{as_of_week}\n{canonical}\n{data_hash}".encode()).hexdigest()[:16]


def git_sha() -> str:
    """``RECSYS_GIT_SHA`` where the source has no ``.git`` (an image sets it at build time), else ``git rev-parse
    HEAD`` of the source tree, else ``"unknown"``."""
    from recsys.settings import Settings

    baked = Settings().git_sha
    if baked:
        return baked.strip()
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,  # nosec B603, B607: git rev-parse for lineage, fixed argv
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"candidates": {"ease_lambda": 300}}`` -> ``{"candidates.ease_lambda": 300}``."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def metric_name(name: str) -> str:
    """An MLflow-valid metric name: ``ndcg@10`` -> ``ndcg_at_10`` (MLflow rejects ``@``)."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", "_at_"))


def _pip_requirements() -> list[str]:
    reqs = []
    for pkg in _RUNTIME_PACKAGES:
        try:
            reqs.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """Id of experiment ``name``, created if needed (a SQLite store keeps its artifacts beside the database)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):
        # keep artifacts next to the store, not in ./mlruns of whatever the working directory is
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts" / name).resolve().as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # created by a concurrent run
        if exp is None:
            raise
        return str(exp.experiment_id)


def log_training(result: TrainResult, bundle_dir: Path, *, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT,
                 metrics: dict[str, float] | None = None,
                 evaluation: EvalResult | None = None, summary: dict[str, Any] | None = None,
                 tags: dict[str, str] | None = None) -> LoggedRun:
    """Log one training run and its bundle as a pyfunc model; see the module docstring.

    With ``evaluation`` (the held-out evaluation of this model; ``summary`` is its ``summarize_result``,
    computed here if not given), the run also gets the metrics per slice and against the baselines, and the
    report under ``evaluation/``: tables, NDCG by user activity and the plots, feature importance included.
    """
    uri = tracking_uri
    rec = result.recommender
    info = result.info
    data_hash = str(rec.manifest.get("data_hash", ""))
    week = int(info.get("as_of_week", rec.manifest.get("as_of_week", -1)))
    key = run_key(week, (result.requested or result.config).model_dump_json(), data_hash)
    sha = git_sha()
    example = pd.DataFrame({S.USER: [1], "n": [DEFAULT_N]})
    probe = RecommenderPyfunc()
    probe.recommender = rec
    signature = model_signature(example, probe.predict(None, example))

    params = {k: ("" if v is None else v) for k, v in flatten(result.config.model_dump(mode="json")).items()}
    info_metrics: dict[str, float] = {}
    for k, v in info.items():
        if isinstance(v, bool | str):
            params[f"info.{k}"] = v
        elif isinstance(v, int | float):
            info_metrics[k] = float(v)
    info_metrics.update({f"stage_seconds.{step}": float(s) for step, s in info.get("stage_seconds", {}).items()})
    descriptor = pd.DataFrame({"as_of_week": [week], "trained_until": [str(info.get("trained_until", ""))],
                               "label_window_starts": [json.dumps(info.get("label_window_starts", []))],
                               "validation_window": [str(info.get("validation_window", ""))],
                               "data_hash": [data_hash]})
    with warnings.catch_warnings():
        # the source string is a lineage label (dataset @ data hash), not a file MLflow should resolve
        warnings.filterwarnings("ignore", message=".*dataset source can be interpreted", category=UserWarning)
        dataset = from_pandas(descriptor, source=f"ml-100k@{data_hash or 'unknown'}", name="ml-100k-train")

    importance = feature_importance(rec.booster)
    eval_metrics: dict[str, float] = {}
    if evaluation is not None:
        summary = summary or summarize_result(evaluation)
        eval_metrics = flat_metrics(summary)

    with _tracking(uri) as client, tempfile.TemporaryDirectory(prefix="recsys-report-") as tmp:
        exp_id = with_retries(lambda: experiment_id(client, experiment, uri))
        if evaluation is not None and summary is not None:
            write_report(evaluation, summary, Path(tmp), importance)

        def _log() -> LoggedRun:
            run_tags = {**(tags or {}), RUN_KEY_TAG: key, DATA_HASH_TAG: data_hash, GIT_SHA_TAG: sha,
                        WEEK_TAG: str(week)}
            with mlflow.start_run(experiment_id=exp_id, run_name=f"week={week}", tags=run_tags) as run, \
                    warnings.catch_warnings():
                # user_id and n are integers on purpose (ids and counts never miss)
                warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
                mlflow.log_params(params)
                mlflow.log_metrics({metric_name(k): float(v)
                                    for k, v in {**info_metrics, **eval_metrics, **(metrics or {})}.items()})
                mlflow.log_dict(json.loads(json.dumps(info, default=str)), "train_info.json")
                mlflow.log_dict(importance, "feature_importance.json")
                if evaluation is not None:
                    mlflow.log_artifacts(tmp, "evaluation")
                mlflow.log_input(dataset, context="training")
                model_info = mlflow.pyfunc.log_model(
                    name="model", python_model=RecommenderPyfunc(), artifacts={"bundle": str(bundle_dir)},
                    signature=signature, input_example=example, pip_requirements=_pip_requirements(),
                    code_paths=[str(Path(__file__).resolve().parents[1])], tags={RUN_KEY_TAG: key})
            return LoggedRun(run.info.run_id, model_info.model_uri, key, data_hash, sha, uri)

        # a retry after a connection error starts a fresh run: the failed one holds no registered model
        return with_retries(_log)


# -- registration --------------------------------------------------------------------------------------------
def find_version(client: MlflowClient, model_name: str, key: str) -> ModelVersion | None:
    """The registry version tagged with run key ``key``, or None (the oldest one if several)."""
    found = with_retries(lambda: client.search_model_versions(
        f"name = '{model_name}' and tags.{RUN_KEY_TAG} = '{key}'"))
    return min(found, key=lambda v: int(v.version)) if found else None


def wait_until_ready(client: MlflowClient, model_name: str, version: str,
                     timeout_s: float = READY_TIMEOUT_S) -> ModelVersion:
    """Poll until the version's status is READY; raise on FAILED_REGISTRATION or after ``timeout_s``."""
    def status() -> ModelVersion:
        return with_retries(lambda: client.get_model_version(model_name, version))

    def pending(mv: ModelVersion) -> bool:
        return ModelVersionStatus.from_string(mv.status) == ModelVersionStatus.PENDING_REGISTRATION

    try:
        mv: ModelVersion = Retrying(retry=retry_if_result(pending), stop=stop_after_delay(timeout_s),
                                    wait=wait_fixed(0.5))(status)
    except RetryError as exc:
        raise TimeoutError(f"{model_name} v{version} not READY after {timeout_s:.0f} s") from exc
    if ModelVersionStatus.from_string(mv.status) != ModelVersionStatus.READY:
        raise RuntimeError(f"{model_name} v{version} failed to register: {mv.status} {mv.status_message}")
    return mv


def register(logged: LoggedRun, model_name: str = DEFAULT_MODEL_NAME, tracking_uri: str | None = None,
             audit: AuditLog | None = None, version_tags: dict[str, str] | None = None) -> RegisteredVersion:
    """Register ``logged`` once per run key, wait until READY and give it the alias ``challenger``.

    ``version_tags`` are added to the version's own tags (run key, data hash and git sha).
    """
    uri = tracking_uri or logged.tracking_uri
    with _tracking(uri) as client:
        existing = find_version(client, model_name, logged.run_key)
        if existing is not None and existing.tags.get(REGISTRATION_TAG) == COMPLETE:
            logger.info("%s v%s already holds run key %s; not registering again",
                        model_name, existing.version, logged.run_key)
            return RegisteredVersion(model_name, int(existing.version), logged.run_key, created=False)
        t0 = time.perf_counter()
        if existing is None:
            # the tags go in with the version itself, so a version never exists without its run key
            tags = {**(version_tags or {}), RUN_KEY_TAG: logged.run_key, DATA_HASH_TAG: logged.data_hash,
                    GIT_SHA_TAG: logged.git_sha}
            mv = with_retries(lambda: mlflow.register_model(logged.model_uri, model_name,
                                                            await_registration_for=0, tags=tags))
            version = str(mv.version)
        else:
            # an earlier attempt created the version but died before finishing: resume it, do not duplicate
            version = str(existing.version)
            logger.warning("%s v%s (run key %s) was left half-registered; completing it", model_name, version,
                           logged.run_key)
        wait_until_ready(client, model_name, version)
        with_retries(lambda: client.set_registered_model_alias(model_name, CHALLENGER, version))
        with_retries(lambda: client.set_model_version_tag(model_name, version, REGISTRATION_TAG, COMPLETE))
        elapsed = time.perf_counter() - t0
    logger.info("registered %s v%s (run key %s) as %s in %.2f s", model_name, version, logged.run_key,
                CHALLENGER, elapsed)
    if audit is not None:
        audit.record(AuditEvent.REGISTERED, model_name, to_version=int(version), run_id=logged.run_id,
                     data_hash=logged.data_hash or None, git_sha=logged.git_sha,
                     reason=f"new version for run key {logged.run_key}",
                     details={"run_key": logged.run_key, "model_uri": logged.model_uri, "alias": CHALLENGER,
                              "seconds": round(elapsed, 3), "resumed": existing is not None})
    return RegisteredVersion(model_name, int(version), logged.run_key, created=existing is None)


# -- tuning --------------------------------------------------------------------------------------------------
TUNING_EXPERIMENT = f"{DEFAULT_MODEL_NAME}-tuning"


class MlflowTuningLog:
    """A :class:`~recsys.ranking.tune.TuningLog` that records a study as a parent run with one nested run per trial.

    It uses an explicit client, not MLflow's global fluent state: the caller's tracking URI is left untouched.
    """

    def __init__(self, tracking_uri: str, experiment: str = TUNING_EXPERIMENT) -> None:
        self.uri, self.experiment = tracking_uri, experiment
        self.parent_run_id: str | None = None
        self._trials: dict[int, str] = {}
        self._client: MlflowClient | None = None
        self._exp_id = ""

    def _log(self, run_id: str, params: dict[str, Any] | None = None,
             metrics: dict[str, float] | None = None) -> None:
        from mlflow.entities import Metric, Param

        assert self._client is not None
        now = int(time.time() * 1000)
        self._client.log_batch(run_id, params=[Param(k, str(v)) for k, v in (params or {}).items()],
                               metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()])

    def begin(self, as_of_week: int, params: dict[str, Any]) -> None:
        self._client = client_for(self.uri)
        self._exp_id = experiment_id(self._client, self.experiment, self.uri)
        self.parent_run_id = self._client.create_run(self._exp_id, run_name=f"tune week={as_of_week:02d}").info.run_id
        self._log(self.parent_run_id, params)

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        assert self._client is not None and self.parent_run_id is not None
        run_id = self._client.create_run(self._exp_id, run_name=f"trial {number}",
                                         tags={MLFLOW_PARENT_RUN_ID: self.parent_run_id}).info.run_id
        self._trials[number] = run_id
        self._log(run_id, params)

    def trial_ended(self, number: int, metrics: dict[str, float] | None) -> None:
        assert self._client is not None
        run_id = self._trials.pop(number)
        if metrics is not None:
            self._log(run_id, metrics=metrics)
        self._client.set_terminated(run_id, "FINISHED" if metrics is not None else "FAILED")

    def end(self, best_params: dict[str, Any] | None, best_value: float | None, config: dict[str, Any] | None) -> None:
        if self._client is None or self.parent_run_id is None:
            return
        if config is None or best_params is None or best_value is None:
            self._client.set_terminated(self.parent_run_id, "FAILED")
            return
        self._log(self.parent_run_id, {f"best.{k}": v for k, v in best_params.items()},
                  {"best_val_ndcg_at_10": best_value})
        self._client.log_dict(self.parent_run_id, config, "best_config.json")
        self._client.set_terminated(self.parent_run_id, "FINISHED")
