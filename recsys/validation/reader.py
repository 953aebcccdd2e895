"""Read an incoming weekly batch file into a typed frame, turning corrupt input into a :class:`BatchFileError`.

Two formats are accepted in ``data/batches/week=WW/``: ``interactions.parquet`` (what the replay writes) and
``interactions.csv`` (comma-separated, header ``user_id,item_id,rating,timestamp``, UTF-8). The reader checks
only what makes a file *unreadable as a batch* (truncation, encoding, missing columns, non-numeric values, no
rows); everything about the *values* (ranges, nulls, types, duplicates, volume) is left to the Great
Expectations suite, so that those problems show up in the validation result and the Data Docs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.data.load import DataFileError

BATCH_FILES: tuple[str, ...] = ("interactions.parquet", "interactions.csv")
"""File names looked for in a week's folder, in order of preference."""
REQUIRED: tuple[str, ...] = (S.USER, S.ITEM, S.RATING, S.TS)
BATCH_DTYPES: dict[str, str] = {**S.INTERACTION_DTYPES, S.WEEK: "int16"}
"""The dtypes of an accepted batch (the replay's output): the four interaction columns and ``week``."""


class BatchFileError(DataFileError):
    """An incoming batch file cannot be read as a batch (truncated, badly encoded, wrong columns, no rows)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def find_batch_file(part_dir: Path) -> Path:
    """The batch file of one week's folder; BatchFileError when there is none."""
    for name in BATCH_FILES:
        if (part_dir / name).is_file():
            return part_dir / name
    raise BatchFileError(part_dir, f"no batch file (expected one of {list(BATCH_FILES)})")


def _decode(path: Path, data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BatchFileError(path, "file is UTF-16 encoded (byte-order mark at byte 0); batches must be UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BatchFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start}, line {line}; "
                                   "latin-1 or another legacy encoding?)") from exc


def _read_csv(path: Path) -> pd.DataFrame:
    text = _decode(path, path.read_bytes())
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise BatchFileError(path, "empty file (no header)")
    width = lines[0].count(",")
    for n, line in enumerate(lines[1:], start=2):
        if line.count(",") != width:
            last = " (the last line: truncated file?)" if n == len(lines) else ""
            raise BatchFileError(path, f"line {n} has {line.count(',') + 1} fields, the header has {width + 1}"
                                       f"{last}")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BatchFileError(path, f"cannot parse as comma-separated text: {exc}") from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BatchFileError(path, f"cannot read as parquet (truncated or corrupt file): {exc}") from exc


def _numeric(frame: pd.DataFrame, column: str, path: Path, *, csv: bool) -> pd.Series:
    """The column as numbers; empty cells become NaN (left to the not-null expectation), text is an error."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw
    text = raw.astype("string").str.strip()
    values = pd.to_numeric(text.mask(text.eq("")), errors="coerce")
    bad = values.isna() & text.notna() & text.ne("")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        where = f"line {row + 2}" if csv else f"row {row}"
        raise BatchFileError(path, f"column {column!r} has {int(bad.sum())} non-numeric value(s), first at {where}: "
                                   f"{raw.iloc[row]!r}")
    return values


def _typed(values: pd.Series, dtype: str) -> pd.Series:
    """Cast to the schema dtype when that loses nothing; otherwise leave it for the type expectation to flag."""
    if values.isna().any():
        return values
    if dtype.startswith("int"):
        as_float = values.astype("float64")
        if not np.array_equal(as_float, np.round(as_float)):
            return values
        info = np.iinfo(dtype)
        if len(values) and (as_float.min() < info.min or as_float.max() > info.max):
            return values
    return values.astype(dtype)


def read_batch(path: Path, week: int) -> pd.DataFrame:
    """Read one batch file into a frame with the batch dtypes; BatchFileError naming the file and the problem.

    A file without a ``week`` column (the CSV format) gets one holding ``week``. Extra columns are kept, so that
    the schema expectation reports them.
    """
    if not path.is_file():
        raise BatchFileError(path, "file not found")
    csv = path.suffix.lower() == ".csv"
    if not csv and path.suffix.lower() != ".parquet":
        raise BatchFileError(path, f"unknown batch format {path.suffix!r} (expected .parquet or .csv)")
    frame = _read_csv(path) if csv else _read_parquet(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        extra = [c for c in frame.columns if c not in BATCH_DTYPES]
        hint = f" (renamed? unexpected column(s) {extra})" if extra else ""
        raise BatchFileError(path, f"missing column(s) {missing}; found {list(frame.columns)}{hint}")
    if frame.empty:
        raise BatchFileError(path, "no rows (empty batch)")
    out = frame.copy()
    for column, dtype in BATCH_DTYPES.items():
        if column in out.columns:
            out[column] = _typed(_numeric(out, column, path, csv=csv), dtype)
    if S.WEEK not in out.columns:
        out[S.WEEK] = np.int16(week)
    return out.reset_index(drop=True)
