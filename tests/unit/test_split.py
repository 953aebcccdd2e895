"""Label windows leak nothing: the temporal backtest window and RecBole's random per-user split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from recsys import schema
from recsys.data.replay import WEEK_SECONDS, ReplayClock
from recsys.data.split import recbole_counts, recbole_split, recbole_windows, temporal_window

T0 = 1_000_000_000
PAIR = [schema.USER, schema.ITEM]


def frame_of(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return pd.DataFrame({
        schema.USER: arr[:, 0].astype("int32"),
        schema.ITEM: arr[:, 1].astype("int32"),
        schema.RATING: (1 + arr[:, 2] % 5).astype("float32"),
        schema.TS: (T0 + arr[:, 2]).astype("int64"),
    })


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame[schema.USER].astype(int), frame[schema.ITEM].astype(int), strict=True))


def rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Order-free form of a frame, for comparing sets of rows."""
    return frame.sort_values([*PAIR, schema.TS]).reset_index(drop=True)


# small random logs: 5 users, 8 items, ~10 weeks, repeated (user, item) pairs allowed
logs = st.lists(
    st.tuples(st.integers(1, 5), st.integers(1, 8), st.integers(0, 10 * WEEK_SECONDS)),
    min_size=2, max_size=60,
).map(frame_of)


# -- temporal backtest window -------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(logs, st.data())
def test_temporal_window_leaks_nothing(inter: pd.DataFrame, data: st.DataObject) -> None:
    clock = ReplayClock.from_interactions(inter)
    assume(clock.n_weeks >= 2)
    start = data.draw(st.integers(1, clock.n_weeks - 1), label="start")
    horizon = data.draw(st.integers(1, 4), label="horizon")
    w = temporal_window(inter, clock, start, horizon)
    end = clock.start(min(start + horizon, clock.n_weeks))

    assert w.now == clock.start(start)
    assert (w.history[schema.TS] < w.now).all()
    pd.testing.assert_frame_equal(rows(w.history), rows(inter[inter[schema.TS] < w.now]))
    assert ((w.positives[schema.TS] >= w.now) & (w.positives[schema.TS] < end)).all()
    assert not pairs(w.positives) & pairs(w.history)
    assert not w.positives.duplicated(PAIR).any()
    later = inter[(inter[schema.TS] >= w.now) & (inter[schema.TS] < end)]
    assert pairs(w.positives) == pairs(later) - pairs(w.history)  # and every new pair is a positive
    np.testing.assert_array_equal(w.users, np.sort(w.positives[schema.USER].unique()))
    assert w.truth() == {u: {i for uu, i in pairs(w.positives) if uu == u} for u in w.users.tolist()}


def test_temporal_window_known_answer() -> None:
    week = WEEK_SECONDS
    inter = frame_of([
        (1, 1, 0), (1, 2, 1),             # week 0
        (1, 1, week + 5),                 # week 1: a repeat of history, not a positive
        (1, 3, week + 6), (1, 3, week + 7),  # week 1: new pair twice -> one positive (the first)
        (2, 1, 2 * week + 1),             # week 2: a cold user's new pair
        (1, 4, 3 * week + 1),             # week 3: beyond a 2-week horizon
    ])
    clock = ReplayClock(origin=T0, n_weeks=4)
    w = temporal_window(inter, clock, 1, 2)
    assert pairs(w.history) == {(1, 1), (1, 2)}
    assert sorted(pairs(w.positives)) == [(1, 3), (2, 1)]
    assert w.positives.loc[w.positives[schema.USER] == 1, schema.TS].item() == T0 + week + 6
    assert w.cold_mask(np.array([1, 2])).tolist() == [False, True]


def test_temporal_window_needs_history() -> None:
    inter = frame_of([(1, 1, 0), (1, 2, WEEK_SECONDS)])
    clock = ReplayClock.from_interactions(inter)
    with pytest.raises(ValueError, match="history"):
        temporal_window(inter, clock, 0, 1)


# -- RecBole's random split ---------------------------------------------------------------------------------
def recbole_reference(tot: int, ratios: tuple[float, ...] = (0.8, 0.1, 0.1)) -> list[int]:
    """RecBole 1.2.1 ``Dataset._calcu_split_ids`` verbatim, turned from split points back into counts."""
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    split_ids = list(np.cumsum(cnt)[:-1])
    return np.diff([0, *split_ids, tot]).tolist()


@pytest.mark.parametrize(("n", "expected"), [
    (10, [8, 1, 1]),   # 10 % exactly one each
    (20, [16, 2, 2]),
    (5, [3, 1, 1]),    # 0.5 rounds down to 0, then each small part is topped up to 1 from train
    (4, [2, 1, 1]),
    (3, [1, 1, 1]),
    (2, [1, 0, 1]),    # after the test part is topped up, train is down to 1: validation stays empty
    (1, [1, 0, 0]),
    (15, [13, 1, 1]),  # 1.5 rounds down
    (19, [17, 1, 1]),
    (30, [24, 3, 3]),  # 0.1 * 30 = 3.0000000000000004
])
def test_recbole_counts_examples(n: int, expected: list[int]) -> None:
    assert recbole_counts(n) == expected
    assert recbole_reference(n) == expected


@given(st.integers(1, 2000))
def test_recbole_counts_match_recbole(n: int) -> None:
    counts = recbole_counts(n)
    assert counts == recbole_reference(n)
    assert sum(counts) == n and min(counts) >= 0
    assert counts[0] >= 1


def user_log(sizes: dict[int, int]) -> pd.DataFrame:
    """User u has sizes[u] interactions with distinct items (so every row is one (user, item) pair)."""
    return frame_of([(u, i, 1000 * u + i) for u, n in sizes.items() for i in range(1, n + 1)])


SIZES = {1: 1, 2: 2, 3: 3, 4: 5, 5: 10, 6: 20, 7: 37}


def assert_partition(inter: pd.DataFrame, parts: tuple[pd.DataFrame, ...]) -> None:
    for part in parts:
        assert list(part.columns) == list(inter.columns)
        assert dict(part.dtypes) == dict(inter.dtypes)
    pd.testing.assert_frame_equal(rows(pd.concat(parts)), rows(inter))
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            assert not pairs(parts[a]) & pairs(parts[b])


def test_recbole_split_partitions_each_user_with_recbole_counts() -> None:
    inter = user_log(SIZES)
    parts = recbole_split(inter, seed=7)
    assert_partition(inter, parts)
    for u, n in SIZES.items():
        assert [int((p[schema.USER] == u).sum()) for p in parts] == recbole_counts(n)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.integers(1, 30), st.integers(1, 25), min_size=1, max_size=8), st.integers(0, 2**31))
def test_recbole_split_partition_property(sizes: dict[int, int], seed: int) -> None:
    inter = user_log(sizes).sample(frac=1.0, random_state=seed % 1000)  # input order must not matter
    parts = recbole_split(inter, seed=seed)
    assert_partition(inter, parts)
    for u, n in sizes.items():
        assert [int((p[schema.USER] == u).sum()) for p in parts] == recbole_counts(n)


def test_recbole_split_is_seeded() -> None:
    inter = user_log(SIZES)
    a, b, c = recbole_split(inter, seed=3), recbole_split(inter, seed=3), recbole_split(inter, seed=4)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert any(pairs(x) != pairs(z) for x, z in zip(a, c, strict=True))


def test_recbole_windows_keep_labels_apart() -> None:
    inter = user_log(SIZES)
    train, valid, test = recbole_split(inter, seed=11)
    folds, vw, tw = recbole_windows(inter, seed=11, folds=2)
    assert len(folds) == 2
    now = int(inter[schema.TS].max()) + 1
    held_out = pairs(valid) | pairs(test)
    for fold in folds:
        assert fold.now == now
        assert not pairs(fold.positives) & pairs(fold.history)
        assert pairs(fold.positives) <= pairs(train)
        assert not pairs(fold.positives) & held_out
        assert not pairs(fold.history) & held_out
        pd.testing.assert_frame_equal(rows(pd.concat([fold.history, fold.positives])), rows(train))
    assert not pairs(folds[0].positives) & pairs(folds[1].positives)

    for window, truth in ((vw, valid), (tw, test)):
        assert window.now == now
        pd.testing.assert_frame_equal(window.history, train)
        pd.testing.assert_frame_equal(window.positives, truth)
    assert vw.exclude == {}
    expected_exclude = {u: sorted(g.astype(int)) for u, g in valid.groupby(schema.USER)[schema.ITEM]}
    assert {u: sorted(v.tolist()) for u, v in tw.exclude.items()} == expected_exclude
    for u, items in tw.exclude.items():
        assert not set(items.tolist()) & {i for uu, i in pairs(tw.positives) if uu == u}
