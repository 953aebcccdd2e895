"""The expectation suites: a real batch passes every expectation, each injected fault fails the expected one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from recsys import schema
from recsys.data.faults import FAULTS, inject
from recsys.validation.gx_runner import GxRunner, SuiteRun
from recsys.validation.runner import BatchCheck, Reference, check_batch, check_reference
from recsys.validation.suites import DEFAULT_VOLUME_BAND, History

WEEK = 20  # 2119 rows, 0.71x the median of weeks 0..19: a typical week

EXPECTED_CHECK = {
    "shuffled_columns": "schema.type",
    "null_keys": "keys.not_null",
    "rating_out_of_range": "rating.range",
    "duplicate_rows": "rows.unique",
    "volume_spike": "volume.band",
    "volume_drop": "volume.band",
    "renamed_column": "schema.columns",
    "dropped_column": "schema.columns",
    "extra_column": "schema.columns",
    "timestamps_outside_week": "timestamp.in_week",
    "future_timestamps": "timestamp.not_future",
    "unknown_items": "item_id.known",
    "rating_skew": "rating.distribution",
}

Check = Callable[..., BatchCheck]


@pytest.fixture(scope="module")
def now(reference: Reference) -> int:
    """A clock a day after the week ends: nothing in the real batch is in the future."""
    return reference.clock.start(WEEK + 1) + 24 * 3600


@pytest.fixture(scope="module")
def check(reference: Reference, gx_runner: GxRunner, reference_runs: list[SuiteRun],
          history: Callable[[int], History], now: int) -> Check:
    hist = history(WEEK)

    def run(frame: pd.DataFrame, *, week: int = WEEK, hist: History = hist) -> BatchCheck:
        return check_batch(frame, week, reference, gx_runner, history=hist, now=now, reference_runs=reference_runs)

    return run


@pytest.fixture(scope="module")
def good(batch: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    return batch(WEEK)


def test_reference_tables_pass(reference_runs: list[SuiteRun]) -> None:
    assert [(r.name, r.success) for r in reference_runs] == [("users", True), ("items", True)]


def test_reference_table_faults_fail(reference: Reference, gx_runner: GxRunner) -> None:
    users = reference.users.copy()
    users.loc[1, schema.USER] = users.loc[0, schema.USER]
    users[schema.GENDER] = users[schema.GENDER].cat.add_categories(["X"])
    users.loc[2, schema.GENDER] = "X"
    items = reference.items.drop(columns=[schema.GENRES])
    bad = Reference(users=users, items=items, clock=reference.clock)
    failed = {(f["table"], f["check"]) for r in check_reference(bad, gx_runner) for f in r.failed()}
    assert {("users", "keys.unique"), ("users", "gender.value"), ("items", "schema.columns")} <= failed


def test_a_real_batch_passes_every_expectation(check: Check, good: pd.DataFrame) -> None:
    result = check(good)
    assert result.success, result.failed
    checks = {r["check"] for r in result.runs[-1].results}
    assert set(EXPECTED_CHECK.values()) | {"week.value", "user_id.known_share", "rating.mean"} <= checks
    assert result.notes == []
    assert result.volume_band is not None and result.volume_band[0] < len(good) < result.volume_band[1]


def test_every_fault_has_an_expected_check() -> None:
    assert set(EXPECTED_CHECK) == set(FAULTS)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_fails_its_expectation(fault: str, check: Check, good: pd.DataFrame, now: int) -> None:
    bad = inject(good, fault, seed=1, now=now)
    result = check(bad)
    assert not result.success
    assert EXPECTED_CHECK[fault] in result.failed_checks, result.failed_checks
    failure = next(f for f in result.failed if f.check == EXPECTED_CHECK[fault])
    assert failure.table == "interactions"
    assert failure.expectation.startswith("expect_")


def test_failure_reports_count_and_examples(check: Check, good: pd.DataFrame) -> None:
    bad = good.copy()
    bad.loc[[3, 7, 11], schema.RATING] = np.float32(9.0)
    (failure,) = [f for f in check(bad).failed if f.check == "rating.range"]
    assert failure.column == schema.RATING
    assert failure.unexpected_count == 3
    assert failure.examples == [9.0, 9.0, 9.0]


@pytest.mark.parametrize(("name", "corrupt", "expected"), [
    ("wrong week", lambda b: b.assign(**{schema.WEEK: np.int16(WEEK + 1)}), "week.value"),
    ("null rating", lambda b: b.assign(**{schema.RATING: b[schema.RATING].where(b.index > 5)}), "rating.not_null"),
    ("mostly unknown users", lambda b: b.assign(**{schema.USER: (b[schema.USER] + 5000).astype("int32")}),
     "user_id.known_share"),
    ("all fives", lambda b: b.assign(**{schema.RATING: np.float32(5.0)}), "rating.mean"),
])
def test_more_expectations_fail(name: str, corrupt: Callable[[pd.DataFrame], pd.DataFrame], expected: str,
                                check: Check, good: pd.DataFrame) -> None:
    assert expected in check(corrupt(good)).failed_checks


def test_a_few_unknown_users_are_allowed_and_counted(check: Check, good: pd.DataFrame) -> None:
    bad = good.copy()
    bad.loc[:9, schema.USER] = np.arange(5000, 5010, dtype="int32")
    result = check(bad)
    assert result.success, result.failed
    assert result.unknown_users == 10


def test_without_history_the_volume_band_is_the_wide_default(check: Check, good: pd.DataFrame) -> None:
    result = check(good, hist=History(weeks=(0, 1), row_counts=(100, 100)))
    assert result.success and result.volume_band is None
    assert any(n.startswith("volume.band: only 2 earlier accepted week(s)") for n in result.notes)
    assert any(n.startswith("rating.distribution: skipped") for n in result.notes)
    run = result.runs[-1].results
    (band,) = [r for r in run if r["check"] == "volume.band"]
    assert band["success"] and DEFAULT_VOLUME_BAND[0] <= band["observed"] <= DEFAULT_VOLUME_BAND[1]
    assert not any(r["check"] == "rating.distribution" for r in run)


def test_inject_is_deterministic_and_rejects_unknown_faults(good: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(inject(good, "null_keys", seed=3), inject(good, "null_keys", seed=3))
    assert len(inject(good, "volume_spike")) == 10 * len(good)
    assert len(inject(good, "volume_drop")) == len(good) // 10
    with pytest.raises(ValueError, match="unknown fault"):
        inject(good, "gremlins")


def test_unknown_ids_are_reported_by_id_column_and_value(check: Check, good: pd.DataFrame) -> None:
    """The known-id checks run on derived flags (a value set of every id does not scale); a failure still names the
    id column and the unknown ids, and null ids are the not-null check's, not these."""
    bad = good.copy()
    bad.loc[[2, 5], schema.ITEM] = np.array([99_001, 99_002], dtype="int32")
    bad.loc[:len(bad) // 2 + 10, schema.USER] = (bad.loc[:len(bad) // 2 + 10, schema.USER] + 50_000).astype("int32")
    result = check(bad)
    items = next(f for f in result.failed if f.check == "item_id.known")
    users = next(f for f in result.failed if f.check == "user_id.known_share")
    assert (items.column, items.unexpected_count, items.examples) == (schema.ITEM, 2, [99_001, 99_002])
    assert users.column == schema.USER and users.unexpected_count > len(bad) // 2
    assert all(u > 50_000 for u in users.examples) and len(users.examples) == 20
    assert result.unknown_users == bad[schema.USER].where(bad[schema.USER] > 50_000).nunique()
    nulls = good.copy()
    nulls[schema.ITEM] = nulls[schema.ITEM].astype("float64")
    nulls.loc[[1, 4], schema.ITEM] = np.nan
    assert "item_id.known" not in check(nulls).failed_checks


def test_a_batch_column_named_like_a_derived_flag_is_not_overwritten(check: Check, good: pd.DataFrame) -> None:
    """A batch arriving with a column of a derived flag's name is an extra column: quarantined, not masked."""
    result = check(good.assign(item_id_known=1.0))
    assert "schema.columns" in result.failed_checks
