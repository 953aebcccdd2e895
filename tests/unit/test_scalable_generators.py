"""The generators' scaling bounds: blocked item-kNN (same answer, bounded memory), EASE over the most popular
items, ALS from implicit, and the configuration keys that choose them (absent from the dump at their defaults)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import schema as S
from recsys.candidates import ALS, EASE
from recsys.candidates.neighbours import cosine_knn
from recsys.config import CandidateConfig
from recsys.data.matrix import InteractionData
from recsys.ranking.queries import make_generators


def dense_cosine_knn(x: sp.csr_matrix, neighbours: int, shrink: float) -> np.ndarray:
    """The textbook version: the whole items x items matrix at once."""
    co = (x.T @ x).toarray().astype(np.float64)
    norms = np.sqrt(np.diag(co))
    sim = co / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(sim, 0.0)
    cut = np.partition(sim, -neighbours, axis=0)[-neighbours]
    sim[sim < cut[None, :]] = 0.0
    return sim.astype(np.float32)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_blocked_item_knn_equals_the_dense_one(block: int) -> None:
    x = sp.random(300, 150, density=0.08, random_state=np.random.default_rng(1), format="csr")
    x.data[:] = 1.0
    got = cosine_knn(x.astype(np.float32), neighbours=10, shrink=5.0, block=block)
    np.testing.assert_array_equal(got.toarray(), dense_cosine_knn(x, 10, 5.0))


def test_item_knn_over_the_top_items_keeps_exactly_their_columns() -> None:
    x = sp.random(300, 150, density=0.08, random_state=np.random.default_rng(2), format="csr")
    x.data[:] = 1.0
    full = cosine_knn(x, neighbours=10, shrink=5.0).toarray()
    bounded = cosine_knn(x, neighbours=10, shrink=5.0, block=7, max_items=40).toarray()
    counts = np.diff(x.tocsc().indptr)
    top = np.sort(np.argsort(-counts, kind="stable")[:40])
    rest = np.setdiff1d(np.arange(150), top)
    np.testing.assert_array_equal(bounded[:, top], full[:, top])
    assert not bounded[:, rest].any() and full[:, rest].any()


def planted(n_users: int = 60, n_items: int = 40, seed: int = 0) -> InteractionData:
    """Two tastes: users of group g rate items of block g (most of them), never the other block."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        block = np.arange(1, n_items // 2 + 1) + (n_items // 2 if u % 2 else 0)
        for i in rng.choice(block, size=12, replace=False):
            rows.append((u, int(i), 5.0, 1_000 + len(rows)))
    inter = pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.TS]).astype(S.INTERACTION_DTYPES)
    items = pd.DataFrame({S.ITEM: np.arange(1, n_items + 1, dtype=np.int32), S.TITLE: "t", S.RELEASE_YEAR: 1990,
                          S.GENRES: "Drama"})
    return InteractionData(inter, items, None, int(inter[S.TS].max()) + 1)


def own_block_share(gen, data: InteractionData, k: int = 5) -> float:
    hits = []
    for u in data.user_ids:
        items = gen.candidates(int(u), k).items
        hits.append(np.mean((items > 20) == bool(u % 2)))
    return float(np.mean(hits))


def test_ease_over_the_top_items_models_only_those() -> None:
    data = planted()
    counts = np.diff(data.matrix.tocsc().indptr)
    bounded = EASE(lam=5.0, max_items=10).fit(data)
    assert len(bounded.columns_) == 10 and bounded.weights_.shape == (10, 10)
    assert set(bounded.columns_) == set(np.argsort(-counts, kind="stable")[:10])
    others = np.setdiff1d(np.arange(data.n_items), bounded.columns_)
    assert (bounded.score(data.user_ids)[:, others] == 0).all()
    full, wide = EASE(lam=5.0).fit(data), EASE(lam=5.0, max_items=1_000).fit(data)
    np.testing.assert_array_equal(full.score(data.user_ids), wide.score(data.user_ids))
    assert EASE(lam=5.0).get_params() == {"lam": 5.0}  # saved bundles keep their params


def test_als_learns_the_planted_tastes() -> None:
    data = planted()
    als = ALS(factors=4, regularization=0.01, alpha=10.0, iterations=20).fit(data)
    assert own_block_share(als, data) > 0.9  # random: 0.5
    again = ALS(factors=4, regularization=0.01, alpha=10.0, iterations=20).fit(data)
    np.testing.assert_allclose(als.score(data.user_ids), again.score(data.user_ids), rtol=1e-6, atol=1e-9)


def test_the_scaling_keys_choose_the_generators_and_stay_out_of_the_dump_at_defaults() -> None:
    default = CandidateConfig()
    assert "als" not in make_generators(default)
    assert not {"ease_max_items", "knn_max_items", "als_factors", "als_alpha"} & set(default.model_dump())
    assert "max_items" not in make_generators(default)["recent_item_knn"].get_params()
    scaled = CandidateConfig(ease_max_items=5_000, knn_max_items=8_000, als_factors=32)
    gens = make_generators(scaled)
    assert gens["als"].get_params()["factors"] == 32 and gens["ease"].get_params()["max_items"] == 5_000
    assert gens["item_knn"].get_params()["max_items"] == gens["recent_item_knn"].get_params()["max_items"] == 8_000
    assert scaled.model_dump()["als_factors"] == 32
    assert CandidateConfig.model_validate(scaled.model_dump()) == scaled


@pytest.mark.parametrize("depth", [10, 25, 59])
def test_bounded_ranks_are_the_exact_ones_in_the_top_and_capped_below(depth: int) -> None:
    from recsys.features.builder import Stage1

    rng = np.random.default_rng(depth)
    scores = np.round(rng.normal(size=(40, 60)), 1)  # many ties
    scores[rng.random(scores.shape) < 0.1] = -np.inf  # seen items
    scores[0] = 0.0  # a row of ties only
    exact_rank, exact_top, exact_finite = Stage1({}, per_generator=10)._ranked(scores)
    rank, top, finite = Stage1({}, per_generator=10, rank_depth=depth)._ranked(scores)
    np.testing.assert_array_equal(top, exact_top)
    np.testing.assert_array_equal(finite, exact_finite)
    np.testing.assert_array_equal(rank, np.minimum(exact_rank, depth + 1))


def test_the_two_item_knn_generators_share_one_similarity_per_data_set() -> None:
    from recsys.candidates import ItemKNN, RecentItemKNN

    data = planted()
    knn, recent = ItemKNN(10, 2.0).fit(data), RecentItemKNN(10, 2.0, recent_items=3).fit(data)
    assert recent.sim_ is knn.sim_  # computed once
    assert ItemKNN(5, 2.0).fit(data).sim_ is not knn.sim_  # other parameters, another matrix
    assert ItemKNN(10, 2.0).fit(planted(seed=1)).sim_ is not knn.sim_  # other data, another matrix


@pytest.mark.parametrize("graded", [True, False])
def test_window_labels_are_the_positives_gains_looked_up_by_pair(graded: bool) -> None:
    from recsys.ranking.queries import Positives

    rng = np.random.default_rng(3)
    positives = pd.DataFrame({S.USER: rng.integers(1, 40, 300), S.ITEM: rng.integers(1, 60, 300),
                              S.RATING: rng.choice([1.0, 3.0, 4.0, 5.0, np.nan], 300)})  # repeated pairs too
    users, items = rng.integers(1, 45, 2_000), rng.integers(1, 65, 2_000)
    first = positives.drop_duplicates([S.USER, S.ITEM])  # the textbook lookup: the first row of a pair counts
    gain = np.where(first[S.RATING] >= 4, 2.0, 1.0) if graded else np.ones(len(first))
    lookup = dict(zip(zip(first[S.USER], first[S.ITEM], strict=True), gain, strict=True))
    want = np.array([lookup.get((u, i), 0.0) for u, i in zip(users, items, strict=True)], dtype=np.float32)
    got = Positives.of(positives, graded).labels(users, items)
    np.testing.assert_array_equal(got, want)
    assert (got > 0).sum() > 100
    assert not Positives.of(positives.iloc[:0], graded).labels(users, items).any()


@pytest.mark.parametrize("depth", [1, 5, 12, 40, 80])
def test_bounded_columns_give_the_dense_rows_top(depth: int) -> None:
    """EASE over its most popular items scores only those columns (0 elsewhere): its bounded top must be the stable
    sort of the dense row, with entries above 0, the zeros by column, and entries below 0, blocked items left out."""
    from recsys.candidates.base import TopItems

    rng = np.random.default_rng(depth)
    n, columns = 60, np.sort(rng.choice(60, size=15, replace=False))
    sub = np.round(rng.normal(size=(30, 15)), 1).astype(np.float32)  # ties, exact zeros, negatives
    sub[0] = -1.0  # a row of negatives only
    mask = rng.random((30, n)) < 0.3
    mask[1] = True  # a user who has seen everything
    mask[2, :45] = True  # fewer zeros left than depth: the negatives follow
    blocked = sp.csr_matrix(mask, dtype=np.float32)
    dense = np.zeros((30, n))
    dense[:, columns] = sub
    dense[mask] = -np.inf
    order = np.argsort(-dense, axis=1, kind="stable")[:, :depth]
    want = np.take_along_axis(dense, order, axis=1)
    want_cols = np.where(np.isfinite(want), order, -1)
    pad = ((0, 0), (0, max(depth - n, 0)))
    top = TopItems.of_columns(sub, columns, n, blocked, depth)
    np.testing.assert_array_equal(top.cols, np.pad(want_cols, pad, constant_values=-1))
    np.testing.assert_array_equal(top.vals, np.pad(np.where(want_cols >= 0, want, -np.inf), pad,
                                                   constant_values=-np.inf))
    r, c = np.nonzero(np.isfinite(dense))
    np.testing.assert_array_equal(top.score_at(r, c), dense[r, c])


def test_first_free_is_the_order_without_the_taken_items() -> None:
    from recsys.candidates.base import first_free

    rng = np.random.default_rng(4)
    order = rng.permutation(50)
    taken = sp.csr_matrix(rng.random((20, 50)) < 0.4)
    got = first_free(order, taken, 30)
    for row in range(20):
        free = [c for c in order if not taken[row, c]][:30]
        np.testing.assert_array_equal(got[row], free + [-1] * (30 - len(free)))
