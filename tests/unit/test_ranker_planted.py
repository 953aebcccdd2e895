"""LambdaRank on planted signal: relevance hidden in one feature among noise is found and ranked first."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.config import RankerConfig
from recsys.metrics import ndcg_at_k
from recsys.ranking.queries import QueryFrame
from recsys.ranking.ranker import feature_importance, predict, train_ranker

N_NOISE = 10
PER_QUERY = 30
FEATURES = [f"noise_{i}" for i in range(N_NOISE)] + ["planted"]
# one thread: OpenMP spin-waiting makes 2 threads 10-50x slower when the machine is busy
CFG = RankerConfig(n_estimators=100, min_child_samples=5, num_threads=1)


def planted_queries(n_queries: int, seed: int) -> QueryFrame:
    """``n_queries`` x 30 candidates; 1-5 positives per query (~3); ``planted`` = label + N(0, 0.2)."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n_queries, PER_QUERY), dtype=np.float32)
    for q in range(n_queries):
        y[q, rng.choice(PER_QUERY, size=rng.integers(1, 6), replace=False)] = 1.0
    y = y.ravel()
    noise = rng.normal(size=(len(y), N_NOISE))
    planted = y + rng.normal(scale=0.2, size=len(y))
    x = np.column_stack([noise, planted]).astype(np.float32)
    user = np.repeat(np.arange(n_queries) + 1000 * seed, PER_QUERY)
    item = np.tile(np.arange(PER_QUERY), n_queries)
    return QueryFrame(x, y, np.full(n_queries, PER_QUERY), list(FEATURES), user, item)


def mean_ndcg(booster: object, q: QueryFrame, k: int = 10) -> float:
    scores = predict(booster, q.x)
    values, start = [], 0
    for size in q.group:
        sl = slice(start, start + int(size))
        order = np.argsort(-scores[sl], kind="stable")
        ranked = q.item[sl][order]
        relevant = set(q.item[sl][q.y[sl] > 0].tolist())
        values.append(ndcg_at_k(ranked, relevant, k))
        start += int(size)
    return float(np.mean(values))


@pytest.fixture(scope="module")
def trained() -> tuple[object, QueryFrame]:
    booster = train_ranker(planted_queries(300, seed=1), planted_queries(100, seed=2), CFG)
    return booster, planted_queries(200, seed=3)


def test_planted_signal_is_learned(trained: tuple[object, QueryFrame]) -> None:
    booster, test = trained
    assert mean_ndcg(booster, test) > 0.9


def test_planted_feature_ranks_first(trained: tuple[object, QueryFrame]) -> None:
    booster, _ = trained
    importance = feature_importance(booster)
    assert set(importance) == set(FEATURES)
    assert next(iter(importance)) == "planted"
    gains = list(importance.values())
    assert gains == sorted(gains, reverse=True)


def test_noise_alone_is_not_learned() -> None:
    """The control: without the planted feature the same model is close to a random ranking."""
    train, test = planted_queries(300, seed=1), planted_queries(200, seed=3)

    def strip(q: QueryFrame) -> QueryFrame:
        return QueryFrame(q.x[:, :N_NOISE], q.y, q.group, FEATURES[:N_NOISE], q.user, q.item)

    booster = train_ranker(strip(train), None, CFG.model_copy(update={"n_estimators": 30}))
    assert mean_ndcg(booster, strip(test)) < 0.6


def test_training_is_deterministic(trained: tuple[object, QueryFrame]) -> None:
    booster, test = trained
    again = train_ranker(planted_queries(300, seed=1), planted_queries(100, seed=2), CFG)
    np.testing.assert_array_equal(predict(booster, test.x), predict(again, test.x))


def test_no_query_raises() -> None:
    none = np.empty(0, np.int64)
    x, y = np.empty((0, len(FEATURES)), np.float32), np.empty(0, np.float32)
    empty = QueryFrame(x, y, none, list(FEATURES), none, none)
    with pytest.raises(ValueError, match="positive"):
        train_ranker(empty, None, CFG)


def test_no_positive_label_raises() -> None:
    q = planted_queries(20, seed=4)
    q.y[:] = 0.0
    with pytest.raises(ValueError, match="positive"):
        train_ranker(q, None, CFG)
