"""Candidates and features come in bounded user batches (memory independent of a window's size): the queries of
a window are the same whatever the batch size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
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


def test_bounded_candidates_equal_the_dense_ones_on_movielens(movielens: Path) -> None:
    """With a rank depth, stage 1 builds a batch from each generator's top (:meth:`CandidateGenerator.top`) at a
    cost in users x depth; the batch, and so the features, are the dense path's, for every generator (bounded EASE
    and item-kNN, ALS), known and new users and exclusions."""
    import pandas as pd

    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    window = temporal_window(ml.interactions, clock, 16, 4)
    cfg = CandidateConfig(per_generator=20, rank_depth=40, ease_max_items=300, knn_max_items=500, als_factors=8,
                          tune=False)
    fitted = fit_window(window, ml.items, ml.users, cfg)
    known = fitted.data.user_ids[::7]
    new = np.setdiff1d(ml.users["user_id"].to_numpy(), fitted.data.user_ids)[:40]
    ids = np.concatenate([known, new])
    exclude = [ml.items["item_id"].to_numpy()[(i * 13) % 1600:(i * 13) % 1600 + (i % 5)].tolist()
               for i in range(len(ids))]
    profiles = ml.users.set_index("user_id").reindex(ids).reset_index()
    stage1 = fitted.stage1
    for ex in (None, exclude):
        got = stage1.candidates(ids, profiles, ex)
        want = stage1.candidates(ids, profiles, ex, dense=True)
        np.testing.assert_array_equal(got.pair_user, want.pair_user)
        np.testing.assert_array_equal(got.pair_col, want.pair_col)
        assert list(got.scores) == list(want.scores) == list(stage1.generators)
        for name in stage1.generators:
            for field in ("scores", "ranks", "best", "tops"):
                np.testing.assert_array_equal(getattr(got, field)[name], getattr(want, field)[name],
                                              err_msg=f"{name} {field}")
        x_got, names = fitted.features.transform(got)
        x_want, _ = fitted.features.transform(want)
        np.testing.assert_array_equal(x_got, x_want)
        assert pd.Index(names).is_unique and len(got.pair_user) > 20 * len(ids)


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


def test_dask_workers_read_the_validated_stores_weeks_themselves(
        tmp_path: Path, raw_data_dir: Callable[[Path], Path]) -> None:
    """With the store's week files the workers read the interactions (a Dask DataFrame, one partition per week,
    gaps where a week was not accepted) and build the same windows as the local engine on the loaded store."""
    from recsys.config import RankerConfig
    from recsys.data.replay import interactions_of_week
    from recsys.ranking.distributed import build_windows
    from recsys.ranking.queries import window_frame
    from recsys.settings import Settings
    from recsys.stages.inputs import load_training_data
    from recsys.validation import store

    raw_data_dir(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", var_dir=tmp_path / "var")
    ml = load_movielens(settings.raw_dir)
    clock = ReplayClock.from_interactions(ml.interactions)
    for week in range(21):
        if week != 9:  # a quarantined week: not in the store
            store.accept(settings, week, interactions_of_week(ml.interactions, clock, week), run_id="test")
    data = load_training_data(settings)
    assert sorted(data.store_weeks) == [w for w in range(21) if w != 9]
    cfg = CandidateConfig(per_generator=20, tune=False)
    built = build_windows(RankerConfig(engine="dask", dask_workers=2), data.ml, data.clock, [12, 16], 4, cfg,
                          graded=True, store=data.store_weeks)
    for start, (frame, _) in built.items():
        local, _ = window_frame(data.ml, data.clock, start, 4, cfg, graded=True)
        for name in ("x", "y", "group", "user", "item"):
            np.testing.assert_array_equal(getattr(frame, name), getattr(local, name), err_msg=f"{start} {name}")
        assert len(frame.group) > 50


def test_a_training_on_the_dask_engine_builds_its_windows_there_and_keeps_stdout_for_its_json(
        tmp_path: Path, raw_data_dir: Callable[[Path], Path]) -> None:
    """`recsys train --json` on the Dask engine, in a real process: LightGBM's workers print their network set-up
    whatever the verbosity; the command's stdout must still be exactly its JSON result (what a DAG task parses)."""
    from tests.conftest import SMALL_CONFIG

    data = raw_data_dir(tmp_path)
    config = tmp_path / "dask.json"
    config.write_text(json.dumps({**SMALL_CONFIG, "ranker": {**SMALL_CONFIG["ranker"], "label_windows": 2,
                                                             "engine": "dask", "dask_workers": 2}}))
    env = {**os.environ, "RECSYS_DATA_DIR": str(data), "RECSYS_VAR_DIR": str(tmp_path / "var"),
           "RECSYS_TRAINING_SOURCE": "raw"}
    out = subprocess.run([str(Path(sys.executable).with_name("recsys")), "train", "--as-of-week", "20", "--config",
                          str(config), "--out", str(tmp_path / "model"), "--json"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)  # nothing else on stdout
    assert {"windows_wall", "candidates", "features", "ranker"} <= set(result["stage_seconds"])
    assert result["best_iteration"] >= 1


def test_the_evaluation_and_the_drift_reference_do_not_depend_on_the_batch_size(small_model, monkeypatch) -> None:
    import pandas as pd

    from recsys.evaluation.protocols import evaluate_window
    from recsys.monitoring import reference
    from recsys.ranking.recommender import Recommender

    ml, clock, rec = small_model.ml, small_model.clock, small_model.result.recommender
    window = temporal_window(ml.interactions, clock, small_model.as_of, small_model.horizon)
    n_items = len(next(iter(rec.stage1.generators.values())).item_ids_)
    whole, whole_lists = evaluate_window(rec, window, ml.users, cut=20)
    batched, batched_lists = evaluate_window(rec, window, ml.users, cut=20, max_cells=n_items * 29)
    assert len(rec.user_batches(window.users, n_items * 29)) > 3
    pd.testing.assert_frame_equal(batched, whole)
    assert [list(map(list, v)) for v in batched_lists["lists"].values()] == \
        [list(map(list, v)) for v in whole_lists["lists"].values()]

    start, end = clock.start(20), clock.start(21)
    one = reference.build_reference(rec, ml.interactions, ml.users, start, end)
    original = Recommender.user_batches
    monkeypatch.setattr(Recommender, "user_batches", lambda self, ids, max_cells=0: original(self, ids, n_items * 7))
    pd.testing.assert_frame_equal(reference.build_reference(rec, ml.interactions, ml.users, start, end), one)
