"""Tracking and registration against a real in-process MLflow (SQLite store under tmp_path): train a small model
as of week 20, log it, register it once per run key, and serve it back through ``models:/...@challenger``."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from recsys.ranking.recommender import Recommender
from recsys.registry.audit import AuditEvent, AuditLog
from recsys.registry.tracking import (
    is_connection_error,
    log_training,
    register,
    run_key,
    scoped_tracking_uri,
    with_retries,
)

AS_OF = 20
MODEL = "content-ranker"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    with scoped_tracking_uri(uri):
        MlflowClient(uri).create_experiment(MODEL, artifact_location=(root / "artifacts").as_uri())
        yield SimpleNamespace(uri=uri, root=root, client=MlflowClient(tracking_uri=uri, registry_uri=uri))


@pytest.fixture(scope="module")
def tracked(small_model: SimpleNamespace, store: SimpleNamespace,
            tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    ml, result = small_model.ml, small_model.result
    bundle = tmp_path_factory.mktemp("bundle") / f"week={AS_OF}"
    result.recommender.save(bundle)
    audit = AuditLog(f"sqlite:///{store.root}/audit.db")
    logged = log_training(result, bundle, metrics={"ndcg@10": 0.1}, tracking_uri=store.uri)
    first = register(logged, MODEL, tracking_uri=store.uri, audit=audit)
    return SimpleNamespace(result=result, bundle=bundle, logged=logged, first=first, audit=audit, ml=ml)


def test_run_logs_params_tags_and_lineage(tracked: SimpleNamespace, store: SimpleNamespace) -> None:
    run = store.client.get_run(tracked.logged.run_id)
    assert run.data.params["ranker.num_leaves"]
    assert run.data.params["candidates.per_generator"] == "50"
    assert run.data.tags["run_key"] == tracked.logged.run_key
    assert run.data.tags["replay_week"] == str(AS_OF)
    assert run.data.tags["data_hash"] == tracked.ml.data_hash
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(0.1)
    assert run.data.metrics["best_iteration"] >= 1
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["ml-100k-train"]
    requested = tracked.result.requested or tracked.result.config  # the config asked for: known before training
    expected_key = run_key(AS_OF, requested.model_dump_json(), tracked.ml.data_hash)
    assert tracked.logged.run_key == expected_key


def test_register_creates_a_ready_challenger(tracked: SimpleNamespace, store: SimpleNamespace) -> None:
    assert tracked.first.created and tracked.first.version == 1
    mv = store.client.get_model_version_by_alias(MODEL, "challenger")
    assert str(mv.version) == "1" and mv.status == "READY"
    assert mv.tags["run_key"] == tracked.logged.run_key


def test_same_run_key_registers_no_second_version(tracked: SimpleNamespace, store: SimpleNamespace) -> None:
    # a rerun of the same training: a new run and logged model, the same run key
    rerun = log_training(tracked.result, tracked.bundle, tracking_uri=store.uri)
    assert rerun.run_key == tracked.logged.run_key and rerun.run_id != tracked.logged.run_id
    again = register(rerun, MODEL, tracking_uri=store.uri, audit=tracked.audit)
    assert (again.version, again.created) == (1, False)
    assert len(store.client.search_model_versions(f"name = '{MODEL}'")) == 1
    registered = tracked.audit.history(MODEL)
    assert [r.event for r in registered] == [AuditEvent.REGISTERED]
    assert registered[0].to_version == 1 and registered[0].run_id == tracked.logged.run_id


def test_challenger_serves_the_bundle(tracked: SimpleNamespace) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@challenger")
    out = model.predict(pd.DataFrame({"user_id": [1, 10**6], "n": [5, 5]}))
    assert list(out.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(out) == 10
    rec = Recommender.load(tracked.bundle)
    for user in (1, 10**6):
        got = out[out["user_id"] == user].sort_values("rank")
        assert got["rank"].tolist() == [1, 2, 3, 4, 5]
        assert got["item_id"].tolist() == [r.item_id for r in rec.recommend(user, 5)]


def test_challenger_takes_profiles_and_default_n(tracked: SimpleNamespace) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@challenger")
    profile = {"age": 30, "gender": "F", "occupation": "writer", "zip": "94110"}
    out = model.predict(pd.DataFrame({"user_id": [10**6 + 1], **{k: [v] for k, v in profile.items()}}))
    assert len(out) == 10  # n defaults to 10
    rec = Recommender.load(tracked.bundle)
    assert out["item_id"].tolist() == [r.item_id for r in rec.recommend(10**6 + 1, 10, profile=profile)]


def test_retries_only_connection_errors() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise requests.exceptions.ConnectionError("connection refused")
        return "ok"

    assert with_retries(flaky) == "ok" and len(calls) == 3
    assert is_connection_error(MlflowException("API request failed: Max retries exceeded with url"))
    assert not is_connection_error(MlflowException("Registered model alias challenger not found"))
    refused: list[int] = []

    def bad_request() -> None:
        refused.append(1)
        raise MlflowException("invalid parameter")

    with pytest.raises(MlflowException):
        with_retries(bad_request)
    assert len(refused) == 1


def test_half_registered_version_is_completed_not_duplicated(tracked: SimpleNamespace, store: SimpleNamespace) -> None:
    # a different training (another seed), whose first registration died after the version was created
    config = tracked.result.config.model_copy(
        update={"ranker": tracked.result.config.ranker.model_copy(update={"seed": 7})})
    logged = log_training(tracked.result.with_config(config), tracked.bundle, tracking_uri=store.uri)
    mlflow.register_model(logged.model_uri, MODEL, tags={"run_key": logged.run_key})  # no alias, not completed
    assert str(store.client.get_model_version_by_alias(MODEL, "challenger").version) == "1"

    resumed = register(logged, MODEL, tracking_uri=store.uri, audit=tracked.audit)
    assert (resumed.version, resumed.created) == (2, False)
    assert len(store.client.search_model_versions(f"name = '{MODEL}'")) == 2
    mv = store.client.get_model_version_by_alias(MODEL, "challenger")
    assert str(mv.version) == "2" and mv.tags["registration"] == "complete"
    last = tracked.audit.history(MODEL)[0]
    assert (last.event, last.to_version, last.details["resumed"]) == (AuditEvent.REGISTERED, 2, True)
    # and now it is complete, a further rerun changes nothing
    assert register(logged, MODEL, tracking_uri=store.uri, audit=tracked.audit).created is False
    assert len(tracked.audit.history(MODEL)) == 2
