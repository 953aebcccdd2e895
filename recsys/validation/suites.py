"""The expectation suites: the users and items reference tables, and one weekly interactions batch.

Every expectation carries ``meta={"check": <name>}``, a short stable name (``rating.range``, ``volume.band``, ...)
used in results, summaries and tests; the GX expectation type is reported next to it.

Rules that are learned from history (see :class:`History`, read from the training store's metadata):

* **volume** (``volume.band``): the batch's row count must lie in ``[0.2, 5] x`` the median row count of the
  earlier accepted weeks. ML-100K's real weeks sit between 0.30x (week 26) and 3.81x (week 8) of that median when
  replayed in order, so the band keeps a margin of 1.5x below and 1.3x above; a 10x spike or a 0.1x drop of a
  typical week falls outside it. (No band can catch every 10x / 0.1x: the real weeks themselves span 11x, from
  800 to 9064 rows, so a 10x copy of the smallest week looks like a busy real week.) With fewer than
  :data:`MIN_HISTORY` earlier accepted weeks the median means little, so the band is the wide default
  :data:`DEFAULT_VOLUME_BAND` (non-empty, at most a million rows) and the result says so in ``notes``.
* **rating distribution**: the mean rating must lie in the fixed band :data:`MEAN_RATING_BAND` (real weekly
  means: 2.98..3.95), and, once :data:`MIN_HISTORY` weeks are accepted, the KL divergence of the week's rating
  histogram from the accepted history's histogram must stay below :data:`KL_THRESHOLD` (real weeks: at most 0.20,
  week 18, a week with many 1-star ratings; a batch with most ratings forced to 5 scores above 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.data.replay import ReplayClock
from recsys.validation.reader import BATCH_DTYPES

VOLUME_FACTORS: tuple[float, float] = (0.2, 5.0)
MIN_HISTORY = 3
DEFAULT_VOLUME_BAND: tuple[int, int] = (1, 1_000_000)
MEAN_RATING_BAND: tuple[float, float] = (2.5, 4.5)
KL_THRESHOLD = 0.3
RATING_VALUES: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)
MAX_UNKNOWN_USER_SHARE = 0.5
"""User ids missing from the users table are allowed (new users) and counted, up to this share of the rows."""

USER_COLUMNS: tuple[str, ...] = (S.USER, *S.PROFILE_FIELDS)


@dataclass(frozen=True)
class History:
    """What the earlier accepted weeks tell about a new one."""

    weeks: tuple[int, ...] = ()
    row_counts: tuple[int, ...] = ()
    rating_counts: dict[str, int] = field(default_factory=dict)
    """Summed over the accepted weeks, keyed by the rating value as text (``"1.0"`` .. ``"5.0"``)."""

    def volume_band(self) -> tuple[int, int] | None:
        """The learned row-count band, or None with fewer than MIN_HISTORY accepted weeks."""
        if len(self.row_counts) < MIN_HISTORY:
            return None
        median = float(np.median(self.row_counts))
        low, high = VOLUME_FACTORS
        return max(1, int(np.floor(low * median))), int(np.ceil(high * median))

    def rating_reference(self) -> list[float] | None:
        """The accepted history's share of each rating value, or None with too little history."""
        if len(self.row_counts) < MIN_HISTORY:
            return None
        counts = np.array([self.rating_counts.get(str(v), 0) for v in RATING_VALUES], dtype=float) + 1.0
        return list(counts / counts.sum())  # +1 smoothing: no zero weight, so KL stays finite


def rating_counts(batch: pd.DataFrame) -> dict[str, int]:
    counts = batch[S.RATING].value_counts()
    return {str(float(v)): int(n) for v, n in counts.items()}


def _meta(check: str) -> dict[str, Any]:
    return {"check": check}


def users_expectations() -> list[Any]:
    from great_expectations import expectations as gxe

    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(USER_COLUMNS), exact_match=True,
                                         meta=_meta("schema.columns")),
        gxe.ExpectColumnValuesToBeOfType(column=S.USER, type_="int32", meta=_meta("schema.type")),
        gxe.ExpectColumnValuesToNotBeNull(column=S.USER, meta=_meta("keys.not_null")),
        gxe.ExpectColumnValuesToBeUnique(column=S.USER, meta=_meta("keys.unique")),
        gxe.ExpectColumnValuesToBeBetween(column=S.AGE, min_value=1, max_value=120, meta=_meta("age.range")),
        gxe.ExpectColumnValuesToBeInSet(column=S.GENDER, value_set=["M", "F"], meta=_meta("gender.value")),
        gxe.ExpectColumnValuesToNotBeNull(column=S.OCCUPATION, meta=_meta("occupation.not_null")),
        gxe.ExpectColumnValuesToNotBeNull(column=S.ZIP, meta=_meta("zip.not_null")),
    ]


def items_expectations() -> list[Any]:
    from great_expectations import expectations as gxe

    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(S.ITEM_COLUMNS), exact_match=True,
                                         meta=_meta("schema.columns")),
        gxe.ExpectColumnValuesToBeOfType(column=S.ITEM, type_="int32", meta=_meta("schema.type")),
        gxe.ExpectColumnValuesToNotBeNull(column=S.ITEM, meta=_meta("keys.not_null")),
        gxe.ExpectColumnValuesToBeUnique(column=S.ITEM, meta=_meta("keys.unique")),
        gxe.ExpectColumnValuesToNotBeNull(column=S.TITLE, meta=_meta("title.not_null")),
        # ML-100K has one item with an unknown year (null): nulls are not range violations in GX
        gxe.ExpectColumnValuesToBeBetween(column=S.RELEASE_YEAR, min_value=1870, max_value=2030,
                                          meta=_meta("release_year.range")),
    ]


KNOWN = {S.ITEM: "item_id_known", S.USER: "user_id_known"}
"""The derived column the batch suite checks for each id column: 1.0 when the id is in the reference table, 0.0
when not, null when the id is. A value set of every id would do the same, but GX copies an expectation's arguments
many times per run: with ML-25M's 162k users and 62k items those copies took 80 % of a week's validation."""


def with_known_flags(batch: pd.DataFrame, item_ids: np.ndarray, user_ids: np.ndarray) -> pd.DataFrame:
    """``batch`` with the :data:`KNOWN` columns (what the batch suite validates; the store keeps the batch). A batch
    that already has a column of that name keeps it, and the flag goes beside it, so the column-set check fails."""
    flags = {}
    for column, ids in ((S.ITEM, item_ids), (S.USER, user_ids)):
        values = batch[column] if column in batch.columns else pd.Series(np.nan, index=batch.index)
        known = values.isin(pd.Index(np.asarray(ids)))
        name = KNOWN[column] if KNOWN[column] not in batch.columns else f"{KNOWN[column]} (derived)"
        flags[name] = np.where(values.isna(), np.nan, known.to_numpy(np.float64))
    return batch.assign(**flags)


def unknown_ids(batch: pd.DataFrame, column: str, ids: np.ndarray, n: int = 20) -> list[Any]:
    """The first ``n`` distinct values of ``column`` that are not in ``ids`` (a failed known-id check's examples)."""
    if column not in batch.columns:
        return []
    values = pd.unique(batch[column].dropna())
    return [v.item() if hasattr(v, "item") else v for v in values[~pd.Index(values).isin(np.asarray(ids))][:n]]


def batch_expectations(week: int, clock: ReplayClock, now: int, history: History) -> tuple[list[Any], list[str]]:
    """The expectations for the batch of ``week`` (its frame :func:`with_known_flags`) and notes on the checks that
    were relaxed or skipped."""
    from great_expectations import expectations as gxe

    notes: list[str] = []
    start, end = clock.start(week), clock.start(week + 1)
    out: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*BATCH_DTYPES, *KNOWN.values()], exact_match=True,
                                         meta=_meta("schema.columns")),
        *(gxe.ExpectColumnValuesToBeOfType(column=c, type_=t, meta=_meta("schema.type"))
          for c, t in BATCH_DTYPES.items()),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c, meta=_meta("keys.not_null")) for c in (S.USER, S.ITEM, S.TS)),
        gxe.ExpectColumnValuesToNotBeNull(column=S.RATING, meta=_meta("rating.not_null")),
        gxe.ExpectColumnValuesToBeBetween(column=S.RATING, min_value=1, max_value=5, meta=_meta("rating.range")),
        gxe.ExpectColumnValuesToBeInSet(column=S.WEEK, value_set=[week], meta=_meta("week.value")),
        gxe.ExpectColumnValuesToBeBetween(column=S.TS, min_value=start, max_value=end - 1,
                                          meta=_meta("timestamp.in_week")),
        gxe.ExpectColumnValuesToBeBetween(column=S.TS, max_value=now, meta=_meta("timestamp.not_future")),
        gxe.ExpectColumnValuesToBeInSet(column=KNOWN[S.ITEM], value_set=[1.0], meta=_meta("item_id.known")),
        gxe.ExpectColumnValuesToBeInSet(column=KNOWN[S.USER], value_set=[1.0], mostly=1 - MAX_UNKNOWN_USER_SHARE,
                                        meta=_meta("user_id.known_share")),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[S.USER, S.ITEM, S.TS], meta=_meta("rows.unique")),
        gxe.ExpectColumnMeanToBeBetween(column=S.RATING, min_value=MEAN_RATING_BAND[0], max_value=MEAN_RATING_BAND[1],
                                        meta=_meta("rating.mean")),
    ]
    band = history.volume_band()
    if band is None:
        band = DEFAULT_VOLUME_BAND
        notes.append(f"volume.band: only {len(history.row_counts)} earlier accepted week(s) (< {MIN_HISTORY}); "
                     f"used the wide default band {list(band)} instead of a learned one")
    out.append(gxe.ExpectTableRowCountToBeBetween(min_value=band[0], max_value=band[1], meta=_meta("volume.band")))
    reference = history.rating_reference()
    if reference is None:
        notes.append(f"rating.distribution: skipped, only {len(history.row_counts)} earlier accepted week(s) "
                     f"(< {MIN_HISTORY}); the fixed mean band {list(MEAN_RATING_BAND)} still applies")
    else:
        out.append(gxe.ExpectColumnKLDivergenceToBeLessThan(
            column=S.RATING, partition_object={"values": list(RATING_VALUES), "weights": reference},
            threshold=KL_THRESHOLD, meta=_meta("rating.distribution")))
    return out, notes
