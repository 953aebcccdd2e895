"""Fault injection: bad batches made from a good one, for tests, the demo and the pipeline's failure drills.

:func:`inject` corrupts a batch *frame* (the values GX must catch); :func:`write_corrupt_file` writes a corrupt
batch *file* (what the reader must turn into a BatchFileError). Both are deterministic for a given seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import schema as S

DAY = 24 * 3600


def _rows(batch: pd.DataFrame, rng: np.random.Generator, share: float) -> np.ndarray:
    n = max(1, round(share * len(batch)))
    return rng.choice(len(batch), size=min(n, len(batch)), replace=False)


def _shuffled_columns(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    """Column order permuted, and the rating and timestamp values swapped (their names and types no longer fit)."""
    out = batch.copy()
    out[S.RATING], out[S.TS] = batch[S.TS].to_numpy(), batch[S.RATING].to_numpy()
    return out[list(rng.permutation(out.columns))]


def _null_keys(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    out = batch.copy()
    rows = _rows(batch, rng, 0.02)
    for column in (S.USER, S.ITEM):
        values = out[column].astype("float64")
        values.iloc[rows] = np.nan
        out[column] = values
    return out


def _rating_out_of_range(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    out = batch.copy()
    rows = _rows(batch, rng, 0.01)
    out.loc[rows, S.RATING] = rng.choice(np.array([0.0, 6.0, 10.0, -1.0], dtype="float32"), size=len(rows))
    return out


def _duplicate_rows(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    return pd.concat([batch, batch.iloc[_rows(batch, rng, 0.05)]], ignore_index=True)


def _volume_spike(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    return batch.iloc[rng.choice(len(batch), size=10 * len(batch), replace=True)].reset_index(drop=True)


def _volume_drop(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    keep = np.sort(rng.choice(len(batch), size=max(1, len(batch) // 10), replace=False))
    return batch.iloc[keep].reset_index(drop=True)


def _renamed_column(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    return batch.rename(columns={S.RATING: "score"})


def _dropped_column(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    return batch.drop(columns=[S.TS])


def _extra_column(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    return batch.assign(source=np.array(["web", "app"])[rng.integers(0, 2, len(batch))])


def _timestamps_outside_week(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    out = batch.copy()
    rows = _rows(batch, rng, 0.05)
    shift = rng.choice(np.array([-1, 1]), size=len(rows)) * 8 * DAY  # more than a week either way
    out.loc[rows, S.TS] = out.loc[rows, S.TS].to_numpy() + shift
    return out


def _future_timestamps(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    out = batch.copy()
    rows = _rows(batch, rng, 0.05)
    out.loc[rows, S.TS] = now + rng.integers(DAY, 30 * DAY, size=len(rows))
    return out


def _unknown_items(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    out = batch.copy()
    rows = _rows(batch, rng, 0.02)
    out.loc[rows, S.ITEM] = (90_000 + rng.integers(0, 1000, size=len(rows))).astype("int32")
    return out


def _rating_skew(batch: pd.DataFrame, rng: np.random.Generator, now: int) -> pd.DataFrame:
    """Most ratings forced to 5 (a client bug, or a review-bombing campaign)."""
    out = batch.copy()
    out.loc[_rows(batch, rng, 0.7), S.RATING] = np.float32(5.0)
    return out


Fault = Callable[[pd.DataFrame, np.random.Generator, int], pd.DataFrame]
_FAULTS: dict[str, Fault] = {
    "shuffled_columns": _shuffled_columns,
    "null_keys": _null_keys,
    "rating_out_of_range": _rating_out_of_range,
    "duplicate_rows": _duplicate_rows,
    "volume_spike": _volume_spike,
    "volume_drop": _volume_drop,
    "renamed_column": _renamed_column,
    "dropped_column": _dropped_column,
    "extra_column": _extra_column,
    "timestamps_outside_week": _timestamps_outside_week,
    "future_timestamps": _future_timestamps,
    "unknown_items": _unknown_items,
    "rating_skew": _rating_skew,
}
FAULTS: tuple[str, ...] = tuple(_FAULTS)
"""Names accepted by :func:`inject`."""


def inject(batch: pd.DataFrame, fault: str, *, seed: int = 0, now: int | None = None) -> pd.DataFrame:
    """A copy of ``batch`` with ``fault`` injected (``now`` anchors ``future_timestamps``; default wall clock)."""
    if fault not in _FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {list(FAULTS)}")
    if batch.empty:
        raise ValueError("cannot inject a fault into an empty batch")
    when = int(time.time()) if now is None else now
    return _FAULTS[fault](batch.reset_index(drop=True), np.random.default_rng(seed), when)


# -- corrupt files -----------------------------------------------------------------------------------------------
FILE_FAULTS: tuple[str, ...] = ("truncated_parquet", "truncated_csv", "missing_column", "renamed_column",
                                "non_numeric_rating", "empty_batch", "latin1_csv", "utf16_csv")
"""Names accepted by :func:`write_corrupt_file`."""

CSV_COLUMNS: tuple[str, ...] = (S.USER, S.ITEM, S.RATING, S.TS)


def _csv_text(batch: pd.DataFrame) -> str:
    return batch[list(CSV_COLUMNS)].to_csv(index=False, lineterminator="\n")


def write_corrupt_file(batch: pd.DataFrame, folder: Path, fault: str) -> Path:
    """Write a corrupt version of ``batch`` into ``folder`` as ``interactions.parquet`` or ``.csv``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = folder / "interactions.csv", folder / "interactions.parquet"
    if fault == "truncated_parquet":
        batch.to_parquet(parquet_path, index=False)
        data = parquet_path.read_bytes()
        parquet_path.write_bytes(data[: len(data) // 2])  # cut mid-file: the footer is gone
        return parquet_path
    if fault == "truncated_csv":
        text = _csv_text(batch)
        csv_path.write_text(text[: text.rfind(",", 0, len(text) - 1)], encoding="utf-8")  # ragged last line
        return csv_path
    if fault == "missing_column":
        batch.drop(columns=[S.RATING]).to_parquet(parquet_path, index=False)
        return parquet_path
    if fault == "renamed_column":
        renamed = batch[list(CSV_COLUMNS)].rename(columns={S.RATING: "stars"})
        csv_path.write_text(renamed.to_csv(index=False, lineterminator="\n"), encoding="utf-8")
        return csv_path
    if fault == "non_numeric_rating":
        bad = batch[list(CSV_COLUMNS)].astype({S.RATING: "object"})
        bad.loc[len(bad) // 2, S.RATING] = "four"
        csv_path.write_text(_csv_text(bad), encoding="utf-8")
        return csv_path
    if fault == "empty_batch":
        batch.iloc[:0].to_parquet(parquet_path, index=False)
        return parquet_path
    if fault == "latin1_csv":
        # a spreadsheet export in a European locale: thousands separated by a no-break space (0xA0 in latin-1)
        frame = batch[list(CSV_COLUMNS)].astype({S.TS: "object"})
        frame.loc[0, S.TS] = f"{int(batch[S.TS].iloc[0]):,}".replace(",", "\u00a0")
        csv_path.write_bytes(_csv_text(frame).encode("latin-1"))
        return csv_path
    if fault == "utf16_csv":
        csv_path.write_bytes(_csv_text(batch).encode("utf-16"))
        return csv_path
    raise ValueError(f"unknown file fault {fault!r}; known: {list(FILE_FAULTS)}")
