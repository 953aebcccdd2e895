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
