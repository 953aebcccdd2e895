"""The serving runtime on a real small bundle: recommendations, cold start, exclusions, A/B variants, the champion
standing in for an unloaded variant, shadow scoring off the request path, and the sampled traffic log."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from recsys.schema import CHALLENGER, CHAMPION
from recsys.serving.models import ModelManager
from recsys.serving.router import Experiment, Router
from recsys.serving.runtime import NotReadyError, ServingRuntime
from recsys.serving.schemas import PredictRequest, Profile
from recsys.serving.traffic import TrafficLog

UNKNOWN = 10**6


@pytest.fixture(scope="module")
def manager(bundle_dir: Path) -> ModelManager:
    manager = ModelManager("content-ranker", tracking_uri=None)
    manager.load_bundle(bundle_dir, CHAMPION, version=1)
    manager.load_bundle(bundle_dir, CHALLENGER, version=2)
    return manager


def runtime(manager: ModelManager, **experiment: object) -> ServingRuntime:
    exp = Experiment.model_validate({"name": "t", "salt": "s", "variants": {CHAMPION: 1.0}, **experiment})
    return ServingRuntime(manager, Router(exp))


def test_known_user_gets_n_ranked_items_with_model_info(manager: ModelManager) -> None:
    rt = runtime(manager)
    response = rt.predict(PredictRequest(user_id=1, n=7))
    assert len(response.items) == 7 and len({i.item_id for i in response.items}) == 7
    scores = [i.score for i in response.items]
    assert scores == sorted(scores, reverse=True)
    assert (response.model.alias, response.model.version, response.model.variant) == (CHAMPION, 1, CHAMPION)
    assert not response.fallback and len(response.request_id) == 32
    again = rt.predict(PredictRequest(user_id=1))
    assert again.request_id != response.request_id and again.request_id[:20] == response.request_id[:20]
    other = runtime(manager).predict(PredictRequest(user_id=1))  # another worker: another prefix
    assert other.request_id[:20] != response.request_id[:20]
    assert all(i.title for i in response.items)  # titles travel in the bundle (items.parquet)


def test_a_bundle_saved_without_titles_still_loads(bundle_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(bundle_dir, old)
    (old / "items.parquet").unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]["items.parquet"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    manager = ModelManager("content-ranker", tracking_uri=None, precompute=False)
    manager.load_bundle(old)
    response = runtime(manager).predict(PredictRequest(user_id=1, n=3))
    assert len(response.items) == 3 and all(i.title is None for i in response.items)


def test_unknown_user_is_ranked_from_the_profile(manager: ModelManager) -> None:
    rt = runtime(manager)
    young = rt.predict(PredictRequest(user_id=UNKNOWN, n=10, profile=Profile(age=19, gender="F", occupation="student")))
    old = rt.predict(PredictRequest(user_id=UNKNOWN, n=10, profile=Profile(age=65, gender="M", occupation="retired")))
    bare = rt.predict(PredictRequest(user_id=UNKNOWN, n=10))
    assert young.fallback and old.fallback and bare.fallback
    assert len(bare.items) == 10
    assert [i.item_id for i in young.items] != [i.item_id for i in old.items]


def test_excluded_items_never_come_back(manager: ModelManager) -> None:
    rt = runtime(manager)
    first = [i.item_id for i in rt.predict(PredictRequest(user_id=1, n=10)).items]
    again = [i.item_id for i in rt.predict(PredictRequest(user_id=1, n=10, exclude=first[:5])).items]
    assert not set(first[:5]) & set(again) and len(again) == 10


def test_variants_are_stable_per_user_and_split_the_traffic(manager: ModelManager) -> None:
    rt = runtime(manager, variants={CHAMPION: 0.5, CHALLENGER: 0.5})
    seen = {}
    for user in range(1, 201):
        a = rt.predict(PredictRequest(user_id=user, n=3)).model
        b = rt.predict(PredictRequest(user_id=user, n=3)).model
        assert a == b and a.alias == a.variant
        seen[user] = a.variant
    share = sum(v == CHALLENGER for v in seen.values()) / len(seen)
    assert 0.35 < share < 0.65


def test_an_unloaded_variant_is_served_by_the_champion(bundle_dir: Path) -> None:
    only_champion = ModelManager("content-ranker", tracking_uri=None)
    only_champion.load_bundle(bundle_dir, CHAMPION, version=1)
    rt = runtime(only_champion, variants={CHALLENGER: 1.0})
    model = rt.predict(PredictRequest(user_id=5)).model
    assert (model.variant, model.alias, model.version) == (CHALLENGER, CHAMPION, 1)


def test_no_model_means_not_ready() -> None:
    with pytest.raises(NotReadyError):
        runtime(ModelManager("content-ranker", tracking_uri=None)).predict(PredictRequest(user_id=1))


def test_shadow_scores_off_the_request_path_and_records_overlap(manager: ModelManager,
                                                               wait_until: Callable[..., None]) -> None:
    rt = runtime(manager, shadow=CHALLENGER, shadow_share=1.0)
    for user in range(1, 21):
        rt.predict(PredictRequest(user_id=user, n=10))
    wait_until(lambda: rt.shadow.scored + rt.shadow.dropped >= 20)
    assert rt.shadow.scored >= 1 and rt.shadow.scored + rt.shadow.dropped == 20
    assert rt.shadow.mean_overlap == pytest.approx(1.0)  # the same bundle behind both aliases
    rt.close()


def test_traffic_log_writes_feature_rows_of_sampled_requests(manager: ModelManager, tmp_path: Path) -> None:
    log = TrafficLog(tmp_path / "traffic", rate=1.0, seed=0)
    rt = ServingRuntime(manager, Router(Experiment.model_validate(
        {"name": "t", "salt": "s", "variants": {CHAMPION: 1.0}})), observers=[log])
    served = rt.predict(PredictRequest(user_id=1, n=5))
    rt.predict(PredictRequest(user_id=UNKNOWN, n=5, profile=Profile(age=30)))
    log.close()
    [path] = (tmp_path / "traffic").glob("traffic-*.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 10 and log.written == 10 and log.dropped == 0
    first = rows[:5]
    assert [r["item_id"] for r in first] == [i.item_id for i in served.items]
    assert [r["rank"] for r in first] == [1, 2, 3, 4, 5]
    names = manager.get(CHAMPION).recommender.feature_names
    assert all(set(r["features"]) == set(names) for r in rows)
    assert rows[5]["fallback"] and not rows[0]["fallback"]


def test_sampling_rate_zero_logs_nothing(manager: ModelManager, tmp_path: Path) -> None:
    log = TrafficLog(tmp_path / "traffic", rate=0.0)
    rt = ServingRuntime(manager, Router(), observers=[log])
    rt.predict(PredictRequest(user_id=1))
    log.close()
    assert log.sampled == 0 and not (tmp_path / "traffic").exists()
    with pytest.raises(ValueError, match="rate"):
        TrafficLog(tmp_path, rate=1.5)
