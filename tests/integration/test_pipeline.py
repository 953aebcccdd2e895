"""The offline pipeline on the real data: train as of week 20 with a small config, score the next four weeks,
save the bundle, reload it and get the same recommendations; a corrupted bundle is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from recsys import schema
from recsys.data.split import temporal_window
from recsys.evaluation.protocols import RANKER, evaluate_window
from recsys.ranking.recommender import BundleError, Recommender

AS_OF, HORIZON = 20, 4


@pytest.fixture(scope="module")
def pipeline(small_model: SimpleNamespace) -> SimpleNamespace:
    ml, clock, result = small_model.ml, small_model.clock, small_model.result
    window = temporal_window(ml.interactions, clock, AS_OF, HORIZON)
    per_user, _ = evaluate_window(result.recommender, window, ml.users, cut=AS_OF)
    return SimpleNamespace(ml=ml, clock=clock, result=result, window=window, per_user=per_user)


@pytest.fixture(scope="module")
def bundle(pipeline: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "week=20"
    pipeline.result.recommender.save(path, extra={"metrics": {"note": "test"}})
    return path


def sample_requests(p: SimpleNamespace) -> list[dict]:
    """Warm users, cold users with their sign-up profile, and an id never seen with a profile."""
    users = p.window.users
    cold = users[p.window.cold_mask(users)]
    warm = users[~p.window.cold_mask(users)]
    profiles = p.ml.users.set_index(schema.USER)
    requests = [{"user_id": int(u)} for u in warm[:5]]
    for u in cold[:3]:
        profile = profiles.loc[u, list(schema.PROFILE_FIELDS)].to_dict()
        requests.append({"user_id": int(u), "profile": profile})
    requests.append({"user_id": 10**6, "profile": {"age": 30, "gender": "F", "occupation": "writer",
                                                   "zip": "94110"}})
    return requests


def test_trains_only_on_the_past(pipeline: SimpleNamespace) -> None:
    info = pipeline.result.info
    assert info["trained_until"] == str(pipeline.clock.bounds(AS_OF)[0])
    assert all(start + HORIZON <= AS_OF - HORIZON for start in info["label_window_starts"])
    assert pipeline.result.recommender.manifest["data_hash"] == pipeline.ml.data_hash


def test_ranker_scores_on_its_test_window(pipeline: SimpleNamespace) -> None:
    main = pipeline.per_user[pipeline.per_user["slice"] == "main"]
    ranker = main[main["model"] == RANKER]
    assert ranker["cold"].any() and (~ranker["cold"]).any()  # both warm and cold users are scored
    assert len(ranker) == len(pipeline.window.users)
    assert ranker["ndcg@10"].between(0, 1).all()
    assert ranker["ndcg@10"].mean() > 0
    assert set(main["model"]) > {RANKER}  # the generators are scored on the same users


def test_bundle_round_trip_gives_identical_recommendations(pipeline: SimpleNamespace, bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["metrics"] == {"note": "test"}
    assert set(manifest["files"]) >= {"ranker.txt", "features.pkl", "profiles.parquet"}

    original, loaded = pipeline.result.recommender, Recommender.load(bundle)
    assert loaded.feature_names == original.feature_names
    for request in sample_requests(pipeline):
        before = original.recommend(n=10, **request)
        after = loaded.recommend(n=10, **request)
        assert len(before) == 10
        assert [r.item_id for r in after] == [r.item_id for r in before], request
        np.testing.assert_allclose([r.score for r in after], [r.score for r in before], rtol=1e-9)


def test_corrupted_bundle_is_rejected(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with (copy / "ranker.txt").open("a") as fh:
        fh.write("\n# tampered\n")
    with pytest.raises(BundleError, match=r"ranker\.txt"):
        Recommender.load(copy)


def test_incomplete_bundle_is_rejected(bundle: Path, tmp_path: Path) -> None:
    no_manifest, missing_file = tmp_path / "a", tmp_path / "b"
    shutil.copytree(bundle, no_manifest)
    (no_manifest / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest"):
        Recommender.load(no_manifest)
    shutil.copytree(bundle, missing_file)
    (missing_file / "features.pkl").unlink()
    with pytest.raises(BundleError, match=r"features\.pkl"):
        Recommender.load(missing_file)


def test_recommend_contract(pipeline: SimpleNamespace) -> None:
    rec, ml = pipeline.result.recommender, pipeline.ml
    history = ml.interactions[ml.interactions[schema.TS] < pipeline.clock.start(AS_OF)]
    user = int(history[schema.USER].value_counts().index[0])
    seen = set(history.loc[history[schema.USER] == user, schema.ITEM].astype(int))
    top = rec.recommend(user, n=20)
    items = [r.item_id for r in top]
    assert len(items) == len(set(items)) == 20 and not seen & set(items)
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True)
    excluded = rec.recommend(user, n=20, exclude=items[:5])
    assert not set(items[:5]) & {r.item_id for r in excluded}
    with pytest.raises(ValueError, match="n must be"):
        rec.recommend(user, n=0)


def test_cold_start_is_ranked_from_the_profile(pipeline: SimpleNamespace) -> None:
    rec, unknown = pipeline.result.recommender, 10**6
    assert not rec.is_known(unknown)
    a = rec.recommend(unknown, 10, profile={"age": 19, "gender": "F", "occupation": "student", "zip": "02139"})
    b = rec.recommend(unknown, 10, profile={"age": 61, "gender": "M", "occupation": "retired", "zip": "98101"})
    none = rec.recommend(unknown, 10)
    assert len(a) == len(b) == len(none) == 10
    assert [r.item_id for r in a] != [r.item_id for r in b]  # the profile changes the ranking
