"""Candidates and features come in bounded user batches (memory independent of a window's size): the queries of
a window are the same whatever the batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.config import CandidateConfig
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock
from recsys.data.split import temporal_window
from recsys.ranking.queries import fit_window, window_queries


def test_queries_do_not_depend_on_the_batch_size(movielens: Path) -> None:
    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    window = temporal_window(ml.interactions, clock, 16, 4)
    fitted = fit_window(window, ml.items, ml.users, CandidateConfig(per_generator=30, tune=False))
    n_items = fitted.data.n_items
    whole = window_queries(fitted, graded=True)
    assert len(list(fitted.batches())) == 1 and len(whole.group) > 100
    batches = list(fitted.batches(max_cells=n_items * 37))
    assert len(batches) == -(-len(fitted.user_ids) // 37)
    assert max(len(b.user_ids) for b in batches) == 37
    batched = window_queries(fitted, graded=True, max_cells=n_items * 37)
    for name in ("x", "y", "group", "user", "item"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(whole, name), err_msg=name)
    assert batched.feature_names == whole.feature_names


def test_label_windows_built_on_dask_workers_equal_the_local_ones(movielens: Path) -> None:
    from recsys.config import RankerConfig
    from recsys.ranking.distributed import build_windows
    from recsys.ranking.queries import window_frame

    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    cfg = CandidateConfig(per_generator=20, tune=False)
    built = build_windows(RankerConfig(engine="dask", dask_workers=2), ml, clock, [14, 16], 4, cfg, graded=True)
    assert sorted(built) == [14, 16]
    for start, (frame, steps) in built.items():
        local, _ = window_frame(ml, clock, start, 4, cfg, graded=True)
        for name in ("x", "y", "group", "user", "item"):
            np.testing.assert_array_equal(getattr(frame, name), getattr(local, name), err_msg=f"{start} {name}")
        assert set(steps) == {"generators_fit", "features_fit", "candidates", "features"}
    assert build_windows(RankerConfig(engine="dask"), ml, clock, [], 4, cfg, graded=True) == {}


def test_a_training_on_the_dask_engine_builds_its_windows_there(movielens: Path) -> None:
    from recsys.config import TrainConfig
    from recsys.ranking.train import train_recommender
    from tests.conftest import SMALL_CONFIG

    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    cfg = TrainConfig.model_validate({**SMALL_CONFIG, "ranker": {**SMALL_CONFIG["ranker"], "label_windows": 2,
                                                                 "engine": "dask", "dask_workers": 2}})
    result = train_recommender(ml, clock, 20, cfg)
    steps = result.info["stage_seconds"]
    assert steps["windows_wall"] > 0 and steps["candidates"] > 0 and steps["ranker"] > 0
    assert result.info["train_queries"] > 100
    recs, _ = result.recommender.rank(int(ml.interactions["user_id"].iloc[0]), 10)
    assert len(recs) == 10
