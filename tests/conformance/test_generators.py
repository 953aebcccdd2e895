"""One conformance suite that every candidate generator passes, plus known-answer tests on tiny data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recsys import schema
from recsys.candidates import (
    ALS,
    EASE,
    CandidateGenerator,
    Candidates,
    CoVisitation,
    ItemKNN,
    NewUserPopularity,
    Popularity,
    ProfilePopularity,
    RecentItemKNN,
    RecentPopularity,
)
from recsys.data.matrix import InteractionData

FACTORIES: dict[str, Callable[[], CandidateGenerator]] = {
    "popularity": lambda: Popularity(),
    "recent_popularity": lambda: RecentPopularity(half_life_days=7.0),
    "profile_popularity": lambda: ProfilePopularity(half_life_days=14.0, shrinkage=10.0),
    "new_user_popularity": lambda: NewUserPopularity(half_life_days=28.0, first_days=1.0),
    "item_knn": lambda: ItemKNN(neighbours=5, shrink=1.0),
    "recent_item_knn": lambda: RecentItemKNN(neighbours=5, shrink=1.0, recent_items=3, decay=0.5),
    "item_knn_top_items": lambda: ItemKNN(neighbours=5, shrink=1.0, max_items=6),
    "ease": lambda: EASE(lam=1.0),
    "ease_top_items": lambda: EASE(lam=1.0, max_items=6),
    "als": lambda: ALS(factors=8, regularization=0.01, alpha=5.0, iterations=20),
    "covisit": lambda: CoVisitation(window=2, recent_items=3, decay=0.5),
}
UNKNOWN_USER = 10_000
PROFILE = {schema.AGE: 30, schema.GENDER: "F", schema.OCCUPATION: "writer", schema.ZIP: "12345"}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Callable[[], CandidateGenerator]:
    return FACTORIES[request.param]


@pytest.fixture
def fitted(make: Callable[[], CandidateGenerator], data: InteractionData) -> CandidateGenerator:
    return make().fit(data)


def seen_items(data: InteractionData, user_id: int) -> set[int]:
    inter = data.interactions
    return set(inter.loc[inter[schema.USER] == user_id, schema.ITEM].astype(int))


def assert_well_formed(c: Candidates, k: int, catalog: np.ndarray) -> None:
    assert isinstance(c, Candidates)
    assert len(c.items) == len(c.scores) <= k
    assert len(set(c.items.tolist())) == len(c.items), "duplicate candidates"
    assert set(c.items.tolist()) <= set(catalog.tolist())
    assert np.all(np.isfinite(c.scores))
    assert np.all(np.diff(c.scores) <= 0), "scores must be sorted best first"


# -- the suite -----------------------------------------------------------------------------------------------
def test_suite_covers_every_registered_generator() -> None:
    """Every generator, and every bounded variant (``name_*``: the same class with a scaling bound)."""
    assert set(CandidateGenerator.registry) == {name.split("_top_")[0] for name in FACTORIES}


def test_fit_returns_self(make: Callable[[], CandidateGenerator], data: InteractionData) -> None:
    gen = make()
    assert gen.fit(data) is gen


@pytest.mark.parametrize("k", [1, 3, 10])
def test_candidates_contract(fitted: CandidateGenerator, data: InteractionData, k: int) -> None:
    for user in data.user_ids.tolist():
        c = fitted.candidates(user, k)
        assert_well_formed(c, k, data.item_ids)
        assert not set(c.items.tolist()) & seen_items(data, user)
        assert len(c.items) >= 1  # 11 unseen items each: never an empty list


def test_exclude_honoured(fitted: CandidateGenerator) -> None:
    first = fitted.candidates(3, 5)
    banned = [*first.items[:2].tolist(), 999_999]  # an id outside the catalog is ignored
    c = fitted.candidates(3, 5, exclude=banned)
    assert not set(c.items.tolist()) & set(banned)
    assert len(c.items) == 5
    cold_first = fitted.candidates(UNKNOWN_USER, 3, profile=PROFILE).items[0]
    cold = fitted.candidates(UNKNOWN_USER, 3, profile=PROFILE, exclude=[int(cold_first)])
    assert cold_first not in cold.items and len(cold.items) == 3


@pytest.mark.parametrize("profile", [None, PROFILE, {schema.AGE: 99, schema.GENDER: "X",
                                                     schema.OCCUPATION: "astronaut", schema.ZIP: "?"}],
                         ids=["no-profile", "profile", "unseen-segment"])
def test_unknown_user(fitted: CandidateGenerator, data: InteractionData, profile: dict | None) -> None:
    c = fitted.candidates(UNKNOWN_USER, 7, profile=profile)
    assert_well_formed(c, 7, data.item_ids)
    assert len(c.items) == 7


def test_cold_scores_declare_their_profile_use(fitted: CandidateGenerator) -> None:
    """A generator not marked ``profile_aware`` scores every user without history alike, whatever the profile:
    the serving path ranks its cold-start list once per bundle on that promise."""
    others = [PROFILE, {**PROFILE, schema.AGE: 61, schema.GENDER: "M", schema.OCCUPATION: "retired"}, None]
    frame = pd.DataFrame([p or {} for p in others], columns=list(schema.PROFILE_FIELDS))
    scores = fitted.score([UNKNOWN_USER, UNKNOWN_USER + 1, UNKNOWN_USER + 2], frame)
    same = all(np.array_equal(row, fitted.cold_scores(), equal_nan=True) for row in scores)
    assert same is not fitted.profile_aware


def test_k_beyond_catalog(fitted: CandidateGenerator, data: InteractionData) -> None:
    k = data.n_items + 50
    for user in (1, 2):
        c = fitted.candidates(user, k)
        unseen = set(data.item_ids.tolist()) - seen_items(data, user)
        assert_well_formed(c, k, data.item_ids)
        assert set(c.items.tolist()) <= unseen
    cold = fitted.candidates(UNKNOWN_USER, k)
    assert_well_formed(cold, k, data.item_ids)
    assert len(cold.items) <= data.n_items


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_raises(fitted: CandidateGenerator, k: int) -> None:
    with pytest.raises(ValueError, match="k must be"):
        fitted.candidates(1, k)
    with pytest.raises(ValueError, match="k must be"):
        fitted.recommend_batch([1, 2], k)


def test_user_who_saw_everything_gets_nothing(make: Callable[[], CandidateGenerator], synth: SimpleNamespace,
                                              build_data: Callable[..., InteractionData]) -> None:
    first, t0 = synth.ITEM_OFFSET, synth.T0
    rows = [(1, first + i, t0 + i) for i in range(synth.N_ITEMS)] + [(2, first, t0 + 100)]
    gen = make().fit(build_data(rows))
    c = gen.candidates(1, 5)
    assert len(c.items) == 0 and len(c.scores) == 0
    assert len(gen.candidates(2, 5).items) == 5


def test_fit_on_no_interactions(make: Callable[[], CandidateGenerator], data: InteractionData) -> None:
    empty = InteractionData(data.interactions.iloc[:0], data.items, data.users, data.now)
    gen = make().fit(empty)
    for user, profile in [(1, None), (UNKNOWN_USER, PROFILE)]:
        c = gen.candidates(user, 4, profile=profile)
        assert_well_formed(c, 4, data.item_ids)
        assert len(c.items) == 4


def test_recommend_batch_agrees_with_candidates(fitted: CandidateGenerator, data: InteractionData) -> None:
    ids = [*data.user_ids.tolist(), UNKNOWN_USER]
    profiles = pd.DataFrame([PROFILE] * len(ids))
    exclude = [[int(data.item_ids[u % data.n_items])] for u in ids]
    batch = fitted.recommend_batch(ids, 6, profiles=profiles, exclude=exclude)
    assert len(batch) == len(ids)
    for u, ex, got in zip(ids, exclude, batch, strict=True):
        one = fitted.candidates(u, 6, profile=PROFILE, exclude=ex)
        np.testing.assert_array_equal(got.items, one.items)
        np.testing.assert_allclose(got.scores, one.scores)


def textbook_top(scores: np.ndarray, blocked, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """A full stable sort of the masked scores, cut at ``depth``; -1 / -inf where fewer items are left."""
    masked = scores.copy()
    masked[blocked.nonzero()] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :depth]
    vals = np.take_along_axis(masked, order, axis=1)
    cols = np.where(np.isfinite(vals), order, -1)
    pad = depth - cols.shape[1]
    return (np.pad(cols, ((0, 0), (0, pad)), constant_values=-1),
            np.pad(np.where(cols >= 0, vals, -np.inf), ((0, 0), (0, pad)), constant_values=-np.inf))


@pytest.mark.parametrize("depth", [1, 4, 9, 50])
def test_bounded_answers_are_the_dense_ones(fitted: CandidateGenerator, data: InteractionData, depth: int) -> None:
    """``top`` (what Stage1 uses with a rank depth) gives the dense scores' answer and their values at the pairs not
    blocked, exactly: known users, users without history with and without a profile, exclusions, ties, and rows
    shorter than depth."""
    ids = np.array([*data.user_ids.tolist(), UNKNOWN_USER, UNKNOWN_USER + 1, UNKNOWN_USER + 2])
    profiles = pd.DataFrame([PROFILE] * (len(ids) - 2) + [{}, {**PROFILE, schema.OCCUPATION: "astronaut"}],
                            columns=list(schema.PROFILE_FIELDS))
    exclude = [[int(data.item_ids[(3 * i) % data.n_items]), int(data.item_ids[(7 * i) % data.n_items])]
               for i in range(len(ids))]
    blocked = fitted.blocked(ids, exclude)
    dense = fitted.score(ids, profiles)
    want_cols, want_vals = textbook_top(dense, blocked, depth)
    top = fitted.top(ids, profiles, blocked, depth)
    np.testing.assert_array_equal(top.cols, want_cols)
    np.testing.assert_array_equal(top.vals, want_vals)
    free = ~blocked.toarray().astype(bool)
    pair_user, pair_col = np.nonzero(free)
    np.testing.assert_array_equal(top.score_at(pair_user, pair_col), dense[free])


def test_save_load_roundtrip(fitted: CandidateGenerator, tmp_path: Path) -> None:
    fitted.save(tmp_path / "gen")
    loaded = CandidateGenerator.load(tmp_path / "gen")
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    for user, profile in [(1, None), (2, None), (UNKNOWN_USER, None), (UNKNOWN_USER, PROFILE)]:
        a, b = fitted.candidates(user, 8, profile=profile), loaded.candidates(user, 8, profile=profile)
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_deterministic(make: Callable[[], CandidateGenerator], data: InteractionData) -> None:
    a, b = make().fit(data), make().fit(data)
    for user in (1, 2, UNKNOWN_USER):
        ca, cb = a.candidates(user, 10, profile=PROFILE), b.candidates(user, 10, profile=PROFILE)
        np.testing.assert_array_equal(ca.items, cb.items)
        np.testing.assert_array_equal(ca.scores, cb.scores)


def assert_same_candidates(a: CandidateGenerator, b: CandidateGenerator) -> None:
    for user in (1, 2, 5, UNKNOWN_USER):
        ca, cb = a.candidates(user, 10, profile=PROFILE), b.candidates(user, 10, profile=PROFILE)
        np.testing.assert_array_equal(ca.items, cb.items)
        np.testing.assert_allclose(ca.scores, cb.scores, rtol=1e-9)


def test_row_order_of_interactions_and_items_does_not_matter(
        make: Callable[[], CandidateGenerator], data: InteractionData, interactions: pd.DataFrame,
        items: pd.DataFrame, users: pd.DataFrame, now: int) -> None:
    shuffled = InteractionData(interactions.sample(frac=1.0, random_state=1),
                               items.sample(frac=1.0, random_state=2), users, now)
    assert_same_candidates(make().fit(data), make().fit(shuffled))


def test_row_order_of_users_does_not_matter(
        make: Callable[[], CandidateGenerator], data: InteractionData, interactions: pd.DataFrame,
        items: pd.DataFrame, users: pd.DataFrame, now: int) -> None:
    shuffled = InteractionData(interactions, items, users.sample(frac=1.0, random_state=3), now)
    assert_same_candidates(make().fit(data), make().fit(shuffled))


# -- known answers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "gen",
    [ItemKNN(), ItemKNN(neighbours=5, shrink=0.0), RecentItemKNN(recent_items=3), EASE(lam=1.0), EASE()],
    ids=repr)
def test_checkerboard_top1_is_the_withheld_item(gen: CandidateGenerator, data: InteractionData,
                                                synth: SimpleNamespace) -> None:
    gen.fit(data)
    for user in range(1, synth.N_USERS + 1):
        c = gen.candidates(user, 3)
        assert c.items[0] == synth.withheld_item(user)
        assert c.scores[0] > c.scores[1]


def test_popularity_orders_by_counts(build_data: Callable[..., InteractionData],
                                     synth: SimpleNamespace) -> None:
    # item 100+i is seen by users 1..i+1 (i < 5): counts 1..5, and user u saw items 100+u-1 .. 104
    assert synth.ITEM_OFFSET == 100
    rows = [(u, 100 + i, synth.T0 + 60 * (u + 10 * i)) for i in range(5) for u in range(1, i + 2)]
    gen = Popularity().fit(build_data(rows))
    cold = gen.candidates(UNKNOWN_USER, 5)
    assert cold.items.tolist() == [104, 103, 102, 101, 100]
    assert cold.scores.tolist() == [5, 4, 3, 2, 1]
    # user 3 saw items 102..104: the rest in count order, then the never-seen items (count 0, lower id first)
    known = gen.candidates(3, 4)
    assert known.items.tolist() == [101, 100, 105, 106]
    assert known.scores.tolist() == [2, 1, 0, 0]


def test_recent_popularity_prefers_recent_items_when_counts_tie(
        build_data: Callable[..., InteractionData], synth: SimpleNamespace) -> None:
    t0, day = synth.T0, synth.DAY
    now = t0 + 100 * day
    old = [(u, 100, t0 + u) for u in range(1, 4)]  # item 100: three interactions, 100 days ago
    recent = [(u, 101, now - day - u) for u in range(4, 7)]  # item 101: three, yesterday
    data = build_data(old + recent, now=now)
    plain = Popularity().fit(data).candidates(UNKNOWN_USER, 2)
    assert plain.items.tolist() == [100, 101]  # a tie: lower id first
    assert plain.scores[0] == plain.scores[1] == 3
    c = RecentPopularity(half_life_days=14.0).fit(data).candidates(UNKNOWN_USER, 2)
    assert c.items.tolist() == [101, 100]
    assert c.scores[0] == pytest.approx(3 * 0.5 ** (1 / 14), rel=1e-3)


def test_profile_popularity_ranks_the_segment_favourite_first(
        build_data: Callable[..., InteractionData], synth: SimpleNamespace) -> None:
    # five women (writers) all watched item 100; ten men (engineers) all watched item 101
    women, men = list(range(1, 6)), list(range(6, 16))
    rows = [(u, 100, synth.T0 + u) for u in women] + [(u, 101, synth.T0 + u) for u in men]
    users = synth.make_users(women + men, genders=["F"] * 5 + ["M"] * 10,
                       occupations=["writer"] * 5 + ["engineer"] * 10, ages=[30] * 15)
    gen = ProfilePopularity(half_life_days=None, shrinkage=5.0).fit(build_data(rows, users=users))
    female = {schema.AGE: 31, schema.GENDER: "F", schema.OCCUPATION: "writer", schema.ZIP: "02139"}
    male = {**female, schema.GENDER: "M", schema.OCCUPATION: "engineer"}
    assert gen.candidates(UNKNOWN_USER, 2, profile=female).items.tolist() == [100, 101]
    assert gen.candidates(UNKNOWN_USER, 2, profile=male).items.tolist() == [101, 100]
    # globally item 101 is twice as popular: without a profile it comes first
    assert gen.candidates(UNKNOWN_USER, 2).items.tolist() == [101, 100]
    # a known user is scored by their own sign-up profile, exactly like a newcomer with that profile
    own = {schema.AGE: 30, schema.GENDER: "F", schema.OCCUPATION: "writer", schema.ZIP: "0"}
    np.testing.assert_allclose(gen.score([1]), gen.score([UNKNOWN_USER], pd.DataFrame([own])))


def test_new_user_popularity_counts_only_the_first_days(
        build_data: Callable[..., InteractionData], synth: SimpleNamespace) -> None:
    t0, day = synth.T0, synth.DAY
    # users 1-3 start with item 100, users 4-5 with item 102; all five watch item 101 ten days later
    rows = [(u, 100, t0 + u) for u in (1, 2, 3)] + [(u, 102, t0 + u) for u in (4, 5)]
    rows += [(u, 101, t0 + 10 * day + u) for u in (1, 2, 3, 4, 5)]
    data = build_data(rows)
    assert Popularity().fit(data).candidates(UNKNOWN_USER, 1).items.tolist() == [101]
    c = NewUserPopularity(half_life_days=None, first_days=3.0).fit(data).candidates(UNKNOWN_USER, 3)
    assert c.items.tolist() == [100, 102, 101]  # 101 was never watched early: score 0, lowest id first
    assert c.scores.tolist() == [3, 2, 0]
