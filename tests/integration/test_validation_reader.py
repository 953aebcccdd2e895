"""The batch reader: good files give the batch dtypes, corrupt files a BatchFileError naming file and problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from recsys import schema
from recsys.data.faults import FILE_FAULTS, write_corrupt_file
from recsys.data.load import DataFileError
from recsys.validation.reader import BATCH_DTYPES, BatchFileError, find_batch_file, read_batch

WEEK = 20

# file fault -> a fragment the message must contain (besides the file's path)
EXPECTED_PROBLEM = {
    "truncated_parquet": "cannot read as parquet (truncated or corrupt",
    "truncated_csv": "(the last line: truncated file?)",
    "missing_column": "missing column(s) ['rating']",
    "renamed_column": "unexpected column(s) ['stars']",
    "non_numeric_rating": "column 'rating' has 1 non-numeric value(s)",
    "empty_batch": "no rows (empty batch)",
    "latin1_csv": "not UTF-8 text",
    "utf16_csv": "UTF-16",
}


@pytest.fixture(scope="module")
def good(batch: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    return batch(WEEK)


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in frame.dtypes.items()}


def test_parquet_from_replay_round_trips(good: pd.DataFrame, tmp_path: Path) -> None:
    good.to_parquet(tmp_path / "interactions.parquet", index=False)
    frame = read_batch(find_batch_file(tmp_path), WEEK)
    assert dtypes(frame) == BATCH_DTYPES
    pd.testing.assert_frame_equal(frame, good)


def test_csv_gets_the_batch_dtypes_and_a_week_column(good: pd.DataFrame, tmp_path: Path) -> None:
    good.drop(columns=[schema.WEEK]).to_csv(tmp_path / "interactions.csv", index=False)
    frame = read_batch(find_batch_file(tmp_path), WEEK)
    assert dtypes(frame) == BATCH_DTYPES
    pd.testing.assert_frame_equal(frame, good)


def test_csv_with_empty_key_cells_is_readable(good: pd.DataFrame, tmp_path: Path) -> None:
    """Nulls are a value problem for the suite (keys.not_null), not a file problem."""
    text = good.drop(columns=[schema.WEEK]).head(3).to_csv(index=False).splitlines()
    text[2] = "," + text[2].split(",", 1)[1]
    (tmp_path / "interactions.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    frame = read_batch(tmp_path / "interactions.csv", WEEK)
    assert frame[schema.USER].isna().tolist() == [False, True, False]


def test_extra_columns_are_kept_for_the_schema_expectation(good: pd.DataFrame, tmp_path: Path) -> None:
    good.assign(source="web").to_parquet(tmp_path / "interactions.parquet", index=False)
    assert "source" in read_batch(tmp_path / "interactions.parquet", WEEK).columns


def test_no_batch_file(tmp_path: Path) -> None:
    with pytest.raises(BatchFileError, match="no batch file"):
        find_batch_file(tmp_path)


def test_file_faults_are_all_covered() -> None:
    assert set(EXPECTED_PROBLEM) == set(FILE_FAULTS)


@pytest.mark.parametrize("fault", FILE_FAULTS)
def test_corrupt_file_gives_a_clear_error(fault: str, good: pd.DataFrame, tmp_path: Path) -> None:
    path = write_corrupt_file(good, tmp_path / "week=20", fault)
    with pytest.raises(BatchFileError) as info:
        read_batch(find_batch_file(path.parent), WEEK)
    message = str(info.value)
    assert isinstance(info.value, DataFileError)
    assert message.startswith(f"{path}: ")
    assert EXPECTED_PROBLEM[fault] in message
    assert info.value.path == path
    assert "Traceback" not in message


def test_errors_name_the_line(good: pd.DataFrame, tmp_path: Path) -> None:
    truncated = write_corrupt_file(good, tmp_path / "a", "truncated_csv")
    with pytest.raises(BatchFileError, match=rf"line {len(good) + 1} has \d fields, the header has 4"):
        read_batch(truncated, WEEK)
    text = write_corrupt_file(good, tmp_path / "b", "non_numeric_rating")
    with pytest.raises(BatchFileError, match=rf"first at line {len(good) // 2 + 2}: 'four'"):
        read_batch(text, WEEK)
    latin = write_corrupt_file(good, tmp_path / "c", "latin1_csv")
    with pytest.raises(BatchFileError, match=r"line 2; latin-1"):
        read_batch(latin, WEEK)
