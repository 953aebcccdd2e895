"""The replay clock: weeks start on Monday 00:00 UTC, every interaction is in exactly one week."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys import schema
from recsys.data.replay import (
    WEEK_SECONDS,
    ReplayClock,
    interactions_before,
    interactions_between,
    interactions_of_week,
    write_week,
)

MONDAY_2024 = 1_704_067_200  # 2024-01-01 00:00:00 UTC, a Monday


def frame_of(timestamps: list[int]) -> pd.DataFrame:
    n = len(timestamps)
    return pd.DataFrame({
        schema.USER: (np.arange(n) % 7 + 1).astype("int32"),
        schema.ITEM: (np.arange(n) + 1).astype("int32"),  # distinct items: each row is identifiable
        schema.RATING: np.full(n, 3.0, dtype="float32"),
        schema.TS: np.asarray(timestamps, dtype="int64"),
    })


# a first timestamp anywhere from 1970 to 2033, then up to ~20 weeks of activity after it
timelines = st.tuples(
    st.integers(0, 2_000_000_000),
    st.lists(st.integers(0, 20 * WEEK_SECONDS), min_size=0, max_size=40),
).map(lambda t: [t[0], *(t[0] + d for d in t[1])])


def by_row(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(schema.ITEM).reset_index(drop=True)


@pytest.mark.parametrize(("ts", "origin"), [
    (MONDAY_2024, MONDAY_2024),                          # exactly Monday midnight
    (MONDAY_2024 + 2 * 86400 + 12 * 3600, MONDAY_2024),  # Wednesday noon
    (MONDAY_2024 - 1, MONDAY_2024 - WEEK_SECONDS),       # Sunday 23:59:59 belongs to the week before
    (881_250_949, 880_934_400),                          # first ML-100K rating -> Monday 1997-12-01
])
def test_origin_known_answers(ts: int, origin: int) -> None:
    clock = ReplayClock.from_interactions(frame_of([ts]))
    assert clock.origin == origin
    assert clock.n_weeks == 1


@settings(max_examples=60, deadline=None)
@given(timelines)
def test_week_zero_starts_monday_midnight_on_or_before_first(timestamps: list[int]) -> None:
    clock = ReplayClock.from_interactions(frame_of(timestamps))
    start = pd.Timestamp(clock.origin, unit="s", tz="UTC")
    assert start.dayofweek == 0 and (start.hour, start.minute, start.second) == (0, 0, 0)
    assert clock.origin <= min(timestamps) < clock.origin + WEEK_SECONDS
    lo, hi = clock.bounds(0)
    assert lo == start and hi - lo == pd.Timedelta(days=7)


@settings(max_examples=60, deadline=None)
@given(timelines)
def test_every_interaction_lands_in_exactly_one_week(timestamps: list[int]) -> None:
    inter = frame_of(timestamps)
    clock = ReplayClock.from_interactions(inter)
    weeks = clock.week_of(inter[schema.TS])
    assert weeks.min() == 0 and weeks.max() == clock.n_weeks - 1
    ts = inter[schema.TS].to_numpy()
    starts = np.array([clock.start(w) for w in weeks])
    assert np.all((starts <= ts) & (ts < starts + WEEK_SECONDS))

    batches = [interactions_of_week(inter, clock, w) for w in range(clock.n_weeks)]
    assert sum(len(b) for b in batches) == len(inter)
    pd.testing.assert_frame_equal(by_row(pd.concat(batches)), by_row(inter))
    for w, batch in enumerate(batches):
        assert (clock.week_of(batch[schema.TS]) == w).all()


@settings(max_examples=60, deadline=None)
@given(timelines, st.data())
def test_interactions_before_sees_no_future(timestamps: list[int], data: st.DataObject) -> None:
    inter = frame_of(timestamps)
    clock = ReplayClock.from_interactions(inter)
    week = data.draw(st.integers(0, clock.n_weeks), label="week")
    before = interactions_before(inter, clock, week)
    assert (before[schema.TS] < clock.start(week)).all()
    assert len(before) == int((inter[schema.TS] < clock.start(week)).sum())
    earlier = [interactions_of_week(inter, clock, w) for w in range(week)]
    expected = pd.concat(earlier) if earlier else inter.iloc[:0]
    pd.testing.assert_frame_equal(by_row(before), by_row(expected))
    end = data.draw(st.integers(week, clock.n_weeks), label="end")
    between = interactions_between(inter, clock, week, end)
    assert len(between) == sum(len(interactions_of_week(inter, clock, w)) for w in range(week, end))


def test_check_week_bounds(interactions: pd.DataFrame) -> None:
    clock = ReplayClock.from_interactions(interactions)
    assert clock.n_weeks == 8  # 2001-09-09 (Sun) .. 2001-10-28 (Sun): the weeks of Mondays 09-03 .. 10-22
    for ok in (0, clock.n_weeks - 1):
        clock.check_week(ok)
    for bad in (-1, clock.n_weeks, clock.n_weeks + 5):
        with pytest.raises(ValueError, match="outside the replay timeline"):
            clock.check_week(bad)
        with pytest.raises(ValueError):
            interactions_of_week(interactions, clock, bad)


def test_write_week_is_idempotent(interactions: pd.DataFrame, tmp_path: Path) -> None:
    clock = ReplayClock.from_interactions(interactions)
    out = tmp_path / "batches"
    first = write_week(interactions, clock, 3, out)
    content = first.read_bytes()
    second = write_week(interactions, clock, 3, out)
    assert first == second == out / "week=03" / "interactions.parquet"
    assert second.read_bytes() == content
    assert sorted(p.name for p in (out / "week=03").iterdir()) == ["interactions.parquet"]  # no temp left

    batch = pd.read_parquet(second)
    assert (batch[schema.WEEK] == 3).all() and batch[schema.WEEK].dtype == np.int16
    expected = interactions_of_week(interactions, clock, 3)
    assert len(batch) > 0
    pd.testing.assert_frame_equal(batch.drop(columns=schema.WEEK), expected)
    assert dict(batch.drop(columns=schema.WEEK).dtypes.astype(str)) == schema.INTERACTION_DTYPES


def test_write_week_replaces_an_earlier_copy(interactions: pd.DataFrame, tmp_path: Path) -> None:
    clock = ReplayClock.from_interactions(interactions)
    path = write_week(interactions.iloc[:5], clock, 0, tmp_path)  # a partial first ingest
    path = write_week(interactions, clock, 0, tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(path).drop(columns=schema.WEEK),
                                  interactions_of_week(interactions, clock, 0))


def test_write_week_rejects_out_of_range(interactions: pd.DataFrame, tmp_path: Path) -> None:
    clock = ReplayClock.from_interactions(interactions)
    with pytest.raises(ValueError):
        write_week(interactions, clock, clock.n_weeks, tmp_path)
    assert not any(tmp_path.iterdir())
