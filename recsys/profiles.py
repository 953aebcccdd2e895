"""Sign-up profiles as encoded numpy columns: what the generators and the features read, without pandas.

Training hands over profile frames (:meth:`ProfileBlock.from_frame`); the service hands over one request's fields
(:meth:`ProfileBlock.from_records`). Both encode the same way, so a profile means the same to the ranker whichever
way it came in:

- ``age``: the number, NaN when missing or not numeric;
- ``female``: 1.0 for ``"F"``, 0.0 for ``"M"``, NaN otherwise;
- ``occupation``: the text (``"None"`` / ``"nan"`` when missing: no fitted occupation matches them);
- ``zip_region``: the first character of the zip code as a digit, NaN when it is not one (or the zip is missing).

A request's profile only fills the fields a user's stored profile lacks (:meth:`ProfileBlock.fill_missing`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys import schema as S

_GENDER = {"F": 1.0, "M": 0.0}
_DIGITS = frozenset("0123456789")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _age(value: Any) -> float:
    if _missing(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _region(zip_code: Any) -> float:
    first = "" if _missing(zip_code) else str(zip_code)[:1]
    return float(first) if first in _DIGITS else math.nan


@dataclass(frozen=True)
class ProfileBlock:
    """Encoded profiles, one row per user (see the module docstring)."""

    age: np.ndarray
    female: np.ndarray
    occupation: np.ndarray
    zip_region: np.ndarray
    present: np.ndarray
    """(rows, 4) booleans: which of age, gender, occupation, zip were given (for :meth:`fill_missing`)."""

    def __len__(self) -> int:
        return len(self.age)

    @classmethod
    def empty(cls, n: int) -> ProfileBlock:
        """``n`` rows with nothing known."""
        return cls.from_records([None] * n)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ProfileBlock:
        """Encode a frame with any of the columns age, gender, occupation, zip (missing columns: unknown)."""
        n = len(frame)

        def column(name: str) -> pd.Series:
            return frame[name] if name in frame.columns else pd.Series([None] * n, index=frame.index, dtype=object)

        age, gender, occ, zips = (column(f) for f in S.PROFILE_FIELDS)
        present = np.column_stack([c.notna().to_numpy(bool) for c in (age, gender, occ, zips)])
        first = zips.astype(str).str[:1]
        return cls(
            age=pd.to_numeric(age, errors="coerce").to_numpy(np.float64),
            female=gender.astype(str).map(_GENDER).to_numpy(np.float64),
            occupation=np.asarray(occ.astype(str), dtype=object),
            zip_region=np.where(zips.notna() & first.isin(list(_DIGITS)),
                                pd.to_numeric(first.where(first.isin(list(_DIGITS))), errors="coerce"),
                                np.nan).astype(np.float64),
            present=present,
        )

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any] | None]) -> ProfileBlock:
        """Encode profiles given as mappings (a request's ``profile``); None is a user with nothing known."""
        rows = [r or {} for r in records]
        get = [[r.get(f) for f in S.PROFILE_FIELDS] for r in rows]
        return cls(
            age=np.array([_age(v[0]) for v in get], dtype=np.float64),
            female=np.array([_GENDER.get(str(v[1]), math.nan) if not _missing(v[1]) else math.nan for v in get],
                            dtype=np.float64),
            occupation=np.array([str(v[2]) for v in get], dtype=object),
            zip_region=np.array([_region(v[3]) for v in get], dtype=np.float64),
            present=np.array([[not _missing(x) for x in v] for v in get], dtype=bool).reshape(len(rows), 4),
        )

    def take(self, rows: np.ndarray) -> ProfileBlock:
        return ProfileBlock(self.age[rows], self.female[rows], self.occupation[rows], self.zip_region[rows],
                            self.present[rows])

    def blank_rows(self, rows: np.ndarray) -> ProfileBlock:
        """A copy with the rows where ``rows`` is true emptied (nothing known)."""
        if not rows.any():
            return self
        keep = ~rows
        return ProfileBlock(np.where(keep, self.age, math.nan), np.where(keep, self.female, math.nan),
                            np.where(keep, self.occupation, "None"), np.where(keep, self.zip_region, math.nan),
                            self.present & keep[:, None])

    def fill_missing(self, other: ProfileBlock) -> ProfileBlock:
        """Row by row and field by field, this block's value where it was given, else ``other``'s."""
        if len(other) != len(self):
            raise ValueError(f"profile blocks differ in length: {len(self)} and {len(other)}")
        have = self.present
        return ProfileBlock(
            age=np.where(have[:, 0], self.age, other.age),
            female=np.where(have[:, 1], self.female, other.female),
            occupation=np.where(have[:, 2], self.occupation, other.occupation),
            zip_region=np.where(have[:, 3], self.zip_region, other.zip_region),
            present=have | other.present,
        )

    @classmethod
    def of(cls, profiles: ProfileBlock | pd.DataFrame | None, n: int) -> ProfileBlock:
        """``profiles`` as a block of ``n`` rows (a frame is encoded; None means nothing known)."""
        if profiles is None:
            return cls.empty(n)
        block = profiles if isinstance(profiles, ProfileBlock) else cls.from_frame(profiles)
        if len(block) != n:
            raise ValueError(f"{len(block)} profiles for {n} users")
        return block
