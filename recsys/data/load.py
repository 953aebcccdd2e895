"""Load the raw atomic files into typed frames, with clear errors for malformed input."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import schema as S

# header of each atomic file -> our column name
_INTER_COLS = {"user_id:token": S.USER, "item_id:token": S.ITEM, "rating:float": S.RATING, "timestamp:float": S.TS}
_USER_COLS = {"user_id:token": S.USER, "age:token": S.AGE, "gender:token": S.GENDER,
              "occupation:token": S.OCCUPATION, "zip_code:token": S.ZIP}
_ITEM_COLS = {"item_id:token": S.ITEM, "movie_title:token_seq": S.TITLE, "release_year:token": S.RELEASE_YEAR,
              "class:token_seq": S.GENRES}


class DataFileError(ValueError):
    """A data file is missing, truncated, badly encoded or has wrong columns or values."""


@dataclass(frozen=True)
class MovieLens:
    """The three typed frames and a hash that identifies their content."""

    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    data_hash: str


def _read(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    if not path.exists():
        raise DataFileError(f"{path}: file not found (run `recsys data fetch`)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    lines = text.splitlines()
    if not lines:
        raise DataFileError(f"{path}: empty file")
    width = lines[0].count("\t")
    # pandas pads short rows and shifts long ones silently: every row must have the header's field count
    bad = next((n for n, line in enumerate(lines[1:], start=2) if line.count("\t") != width), None)
    if bad is not None:
        raise DataFileError(f"{path}: line {bad} has {lines[bad - 1].count(chr(9)) + 1} fields, the header has "
                            f"{width + 1} (truncated or malformed row)")
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, quoting=3,
                            index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFileError(f"{path}: cannot parse as tab-separated text: {exc}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    if frame.empty:
        raise DataFileError(f"{path}: no rows")
    return frame[list(columns)].rename(columns=columns)


def _require_text(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    for column in columns:
        empty = frame[column].str.strip().eq("")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataFileError(f"{path}: column {column!r} is empty in {int(empty.sum())} row(s), "
                                f"first at data row {row + 1} (truncated line?)")


def _to_number(frame: pd.DataFrame, column: str, path: Path, dtype: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].ne("")
    if bad.any() or values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataFileError(
            f"{path}: column {column!r} has {int(values.isna().sum())} non-numeric or empty value(s), "
            f"first at data row {row + 1}: {frame[column].iloc[row]!r}"
        )
    return values.astype(dtype)


def _read_interactions_fast(path: Path) -> pd.DataFrame | None:
    """A well-formed interactions file through pyarrow's reader (typed columns, no Python strings: seconds and a
    few hundred MB at 25M rows); None when anything is off, so that the careful reader names the problem."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not path.exists():
        return None
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        table = pacsv.read_csv(
            pa.BufferReader(data), parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(_INTER_COLS),
                column_types={"user_id:token": pa.int64(), "item_id:token": pa.int64(),
                              "rating:float": pa.float64(), "timestamp:float": pa.int64()}))
    except (UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowKeyError):
        return None
    if table.num_rows == 0 or any(col.null_count for col in table.columns):
        return None
    frame = table.rename_columns([_INTER_COLS[c] for c in table.column_names]).to_pandas()
    ranges = {c: np.iinfo(t) for c, t in S.INTERACTION_DTYPES.items() if t.startswith("int")}
    if any(frame[c].min() < r.min or frame[c].max() > r.max for c, r in ranges.items()):
        return None
    return frame.astype(S.INTERACTION_DTYPES)[list(S.INTERACTION_DTYPES)]


def load_interactions(path: Path) -> pd.DataFrame:
    out = _read_interactions_fast(path)
    if out is None:
        frame = _read(path, _INTER_COLS)
        out = pd.DataFrame({c: _to_number(frame, c, path, t) for c, t in S.INTERACTION_DTYPES.items()})
    if not out[S.RATING].between(1, 5).all():
        raise DataFileError(f"{path}: ratings outside 1..5")
    return out.sort_values([S.TS, S.USER, S.ITEM], kind="stable").reset_index(drop=True)


def load_users(path: Path) -> pd.DataFrame:
    frame = _read(path, _USER_COLS)
    _require_text(frame, (S.GENDER, S.OCCUPATION, S.ZIP), path)
    return pd.DataFrame({
        S.USER: _to_number(frame, S.USER, path, "int32"),
        S.AGE: _to_number(frame, S.AGE, path, "int16"),
        S.GENDER: frame[S.GENDER].astype("category"),
        S.OCCUPATION: frame[S.OCCUPATION].astype("category"),
        S.ZIP: frame[S.ZIP].astype("string"),
    })


def load_items(path: Path) -> pd.DataFrame:
    frame = _read(path, _ITEM_COLS)
    _require_text(frame, (S.TITLE,), path)
    year = pd.to_numeric(frame[S.RELEASE_YEAR], errors="coerce").astype("Int16")
    return pd.DataFrame({
        S.ITEM: _to_number(frame, S.ITEM, path, "int32"),
        S.TITLE: frame[S.TITLE].astype("string"),
        S.RELEASE_YEAR: year,
        S.GENRES: frame[S.GENRES].astype("string"),
    })


def genre_names(items: pd.DataFrame) -> list[str]:
    return sorted({g for gs in items[S.GENRES].dropna() for g in str(gs).split()})


def load_movielens(raw_dir: Path) -> MovieLens:
    """Load users, items and interactions from ``raw_dir`` (as written by ``fetch_movielens``)."""
    paths = {k: raw_dir / f"ml-100k.{k}" for k in ("inter", "user", "item")}
    interactions = load_interactions(paths["inter"])
    users, items = load_users(paths["user"]), load_items(paths["item"])
    unknown = set(interactions[S.ITEM].unique()) - set(items[S.ITEM])
    if unknown:
        raise DataFileError(f"{paths['inter']}: {len(unknown)} item id(s) not in {paths['item']}")
    digest = hashlib.sha256()
    for p in paths.values():
        digest.update(p.read_bytes())
    return MovieLens(users=users, items=items, interactions=interactions, data_hash=digest.hexdigest()[:16])


def read_week(path: Path) -> pd.DataFrame:
    """One week of the validated store (``recsys.validation.store``): its typed interactions (what a Dask
    worker reads for its label windows, too)."""
    return pd.read_parquet(path, columns=list(S.INTERACTION_DTYPES))


def combine_weeks(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Weeks of the store as one interactions frame, sorted like the raw loader's."""
    columns = list(S.INTERACTION_DTYPES)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return (frame.astype(S.INTERACTION_DTYPES).sort_values([S.TS, S.USER, S.ITEM], kind="stable")
            .reset_index(drop=True))
