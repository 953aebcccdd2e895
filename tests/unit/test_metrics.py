"""Tests for recsys.metrics."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from recsys.metrics import (
    METRICS,
    average_recommendation_popularity,
    catalog_coverage,
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    per_user_metrics,
    precision_at_k,
    query_ndcg,
    recall_at_k,
    summarize,
)

ALL = list(METRICS.values())


@st.composite
def ranking_cases(draw: st.DrawFn) -> tuple[list[int], set[int], int]:
    """A ranked list of unique items, a non-empty relevant set (possibly outside the list) and k."""
    n_items = draw(st.integers(min_value=1, max_value=30))
    ranked = draw(st.permutations(list(range(n_items))))
    n_ranked = draw(st.integers(min_value=0, max_value=n_items))
    relevant = draw(st.sets(st.integers(min_value=0, max_value=n_items + 5), min_size=1, max_size=15))
    k = draw(st.integers(min_value=1, max_value=20))
    return list(ranked[:n_ranked]), relevant, k


@settings(max_examples=100, deadline=None)
@given(ranking_cases())
def test_metrics_are_in_unit_interval(case: tuple[list[int], set[int], int]) -> None:
    ranked, relevant, k = case
    for fn in ALL:
        assert 0.0 <= fn(ranked, relevant, k) <= 1.0 + 1e-12


@pytest.mark.parametrize("n_rel", [1, 3, 10])
def test_perfect_ranking(n_rel: int) -> None:
    relevant = set(range(100, 100 + n_rel))
    ranked = [*sorted(relevant), 1, 2, 3, 4, 5]
    for fn in (ndcg_at_k, recall_at_k, map_at_k, mrr_at_k, hit_rate_at_k):
        assert fn(ranked, relevant, 10) == pytest.approx(1.0)
    assert precision_at_k(ranked, relevant, 10) == pytest.approx(n_rel / 10)


def test_no_hits_gives_zero() -> None:
    for fn in ALL:
        assert fn([1, 2, 3, 4], {7, 8}, 10) == 0.0
        assert fn([], {7}, 10) == 0.0


def test_single_hit_at_rank_two() -> None:
    ranked, relevant = [1, 2, 3], {2}
    assert ndcg_at_k(ranked, relevant) == pytest.approx(1 / math.log2(3))
    assert mrr_at_k(ranked, relevant) == pytest.approx(0.5)
    assert map_at_k(ranked, relevant) == pytest.approx(0.5)
    assert recall_at_k(ranked, relevant) == pytest.approx(1.0)
    assert precision_at_k(ranked, relevant) == pytest.approx(0.1)
    assert hit_rate_at_k(ranked, relevant) == 1.0


def test_hand_computed_multi_hit() -> None:
    ranked, relevant, k = [1, 2, 3, 4, 5], {1, 3, 6}, 5
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, k) == pytest.approx((1 + 1 / math.log2(4)) / idcg)
    assert map_at_k(ranked, relevant, k) == pytest.approx((1 + 2 / 3) / 3)
    assert recall_at_k(ranked, relevant, k) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, relevant, k) == pytest.approx(2 / 5)
    assert mrr_at_k(ranked, relevant, k) == 1.0


def test_recbole_denominators_cap_at_k() -> None:
    # More relevant items than k: NDCG's ideal DCG and MAP's denominator use min(|rel|, k).
    ranked, relevant = [1, 2, 9], {1, 2, 3, 4, 5}
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(1.0)
    assert map_at_k(ranked, relevant, 2) == pytest.approx(1.0)
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(2 / 5)


def test_cutoff_ignores_items_beyond_k() -> None:
    ranked = list(range(20))
    for fn in ALL:
        assert fn(ranked, {15}, 10) == 0.0
    assert mrr_at_k(ranked, {15}, 20) == pytest.approx(1 / 16)


def test_numpy_input_matches_list() -> None:
    ranked = np.array([5, 3, 8, 1], dtype=np.int64)
    relevant = np.array([8, 1], dtype=np.int64)
    for fn in ALL:
        assert fn(ranked, relevant, 3) == fn(ranked.tolist(), {8, 1}, 3)


@st.composite
def sklearn_cases(draw: st.DrawFn) -> tuple[list[int], set[int]]:
    n_items = draw(st.integers(min_value=2, max_value=25))
    ranked = draw(st.permutations(list(range(n_items))))
    relevant = draw(st.sets(st.sampled_from(ranked), min_size=1, max_size=n_items))
    return list(ranked), relevant


@settings(max_examples=100, deadline=None)
@given(sklearn_cases())
def test_ndcg_matches_sklearn(case: tuple[list[int], set[int]]) -> None:
    ranked, relevant = case
    n = len(ranked)
    scores = np.zeros(n)
    truth = np.zeros(n)
    for position, item in enumerate(ranked):
        scores[item] = n - position  # distinct scores, so sklearn's tie handling never applies
        truth[item] = float(item in relevant)
    expected = ndcg_score(truth[None, :], scores[None, :], k=10)
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(ranking_cases(), st.data())
def test_promoting_relevant_item_never_lowers_ndcg(
    case: tuple[list[int], set[int], int], data: st.DataObject
) -> None:
    ranked, relevant, k = case
    hit_positions = [i for i, item in enumerate(ranked) if item in relevant]
    if not hit_positions:
        return
    j = data.draw(st.sampled_from(hit_positions))
    i = data.draw(st.integers(min_value=0, max_value=j))
    promoted = ranked.copy()
    promoted.insert(i, promoted.pop(j))
    assert ndcg_at_k(promoted, relevant, k) >= ndcg_at_k(ranked, relevant, k) - 1e-12


@pytest.mark.parametrize("fn", ALL)
def test_invalid_inputs_raise(fn: Callable[..., float]) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        fn([1, 2], set(), 10)
    with pytest.raises(ValueError, match="duplicate"):
        fn([1, 2, 1], {1}, 10)
    with pytest.raises(ValueError, match="k must be"):
        fn([1, 2], {1}, 0)
    with pytest.raises(ValueError, match="1-D"):
        fn(np.array([[1, 2]]), {1}, 10)


def test_metrics_registry() -> None:
    assert list(METRICS) == ["ndcg", "recall", "map", "mrr", "hit_rate", "precision"]


def test_per_user_metrics() -> None:
    recs = {"u1": [1, 2, 3], "u2": [4, 5, 6], "extra": [1]}
    truth = {"u1": {2}, "u2": {9}, "u3": {1}}
    frame = per_user_metrics(recs, truth, k=10)
    assert list(frame.columns) == ["key"] + [f"{name}@10" for name in METRICS]
    assert frame["key"].tolist() == ["u1", "u2", "u3"]
    row = frame.set_index("key").loc["u1"]
    assert row["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert row["mrr@10"] == pytest.approx(0.5)
    metric_cols = [c for c in frame.columns if "@" in c]
    assert (frame.set_index("key").loc[["u2", "u3"], metric_cols] == 0.0).all().all()


def test_per_user_metrics_rejects_empty_truth() -> None:
    with pytest.raises(ValueError, match="'u1'"):
        per_user_metrics({"u1": [1]}, {"u1": set()})


def test_catalog_coverage() -> None:
    lists = [[1, 2, 3, 99], [2, 3, 4]]
    assert catalog_coverage(lists, n_catalog_items=10, k=3) == pytest.approx(4 / 10)
    assert catalog_coverage([], n_catalog_items=10) == 0.0
    with pytest.raises(ValueError):
        catalog_coverage(lists, n_catalog_items=0)


def test_novelty_and_arp() -> None:
    pop = {1: 50.0, 2: 25.0, 3: 0.0}
    lists = [[1, 2], [3, 7]]
    # Items 3 (count 0) and 7 (unseen) are treated as count 1.
    expected_novelty = np.mean([np.mean([1.0, 2.0]), np.mean([np.log2(100), np.log2(100)])])
    assert novelty(lists, pop, n_users=100) == pytest.approx(expected_novelty)
    assert novelty(lists, pd.Series(pop), n_users=100) == pytest.approx(expected_novelty)
    assert average_recommendation_popularity(lists, pop) == pytest.approx(np.mean([37.5, 0.0]))
    assert average_recommendation_popularity(lists, pop, k=1) == pytest.approx(25.0)
    with pytest.raises(ValueError):
        novelty([[]], pop, n_users=100)


def test_summarize() -> None:
    per_user = pd.DataFrame(
        {
            "key": ["a", "b", "c"],
            "segment": ["cold", "warm", "warm"],
            "ndcg@10": [0.0, 0.5, 1.0],
            "recall@10": [0.0, 1.0, 1.0],
        }
    )
    overall = summarize(per_user)
    assert overall.loc["all", "ndcg@10"] == pytest.approx(0.5)
    assert overall.loc["all", "users"] == 3
    assert "segment" not in overall.columns
    grouped = summarize(per_user, by="segment")
    assert grouped.index.tolist() == ["cold", "warm", "all"]
    assert grouped.loc["warm", "ndcg@10"] == pytest.approx(0.75)
    assert grouped.loc["warm", "users"] == 2
    assert grouped.loc["all", "recall@10"] == pytest.approx(2 / 3)


def test_query_ndcg_orders_each_query_by_its_scores_and_skips_queries_without_a_positive() -> None:
    labels = np.array([0, 1, 0, 0, 0, 2, 1])
    group = np.array([2, 2, 3])  # the second query has no positive: left out
    best = np.array([0.1, 0.9, 0.5, 0.4, 0.0, 0.8, 0.7])
    assert query_ndcg(best, labels, group) == pytest.approx(1.0)
    worst = -best
    expected = np.mean([ndcg_at_k([0, 1], {1}), ndcg_at_k([0, 2, 1], {1, 2})])
    assert query_ndcg(worst, labels, group) == pytest.approx(expected) and expected < 1.0
    assert np.isnan(query_ndcg(best[:2], np.zeros(2), np.array([2])))
