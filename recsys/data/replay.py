"""The replay clock: the data's own timeline cut into weekly batches.

Week 0 is the ISO week (Monday 00:00 UTC) that holds the first interaction; week W covers
``[origin + 7W days, origin + 7(W+1) days)``. A logical week therefore maps to a fixed timestamp range, and
ingesting a week is a pure function of the raw data (idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import schema as S

WEEK_SECONDS = 7 * 24 * 3600
_EPOCH_MONDAY = 4 * 24 * 3600  # 1970-01-01 was a Thursday; the first Monday is 1970-01-05


@dataclass(frozen=True)
class ReplayClock:
    """Maps timestamps to logical weeks for one dataset."""

    origin: int
    """Unix time of week 0's Monday 00:00 UTC."""
    n_weeks: int

    @classmethod
    def from_interactions(cls, interactions: pd.DataFrame) -> ReplayClock:
        first, last = int(interactions[S.TS].min()), int(interactions[S.TS].max())
        origin = first - (first - _EPOCH_MONDAY) % WEEK_SECONDS
        return cls(origin=origin, n_weeks=(last - origin) // WEEK_SECONDS + 1)

    def week_of(self, ts: np.ndarray | pd.Series | int) -> np.ndarray:
        return (np.asarray(ts, dtype=np.int64) - self.origin) // WEEK_SECONDS

    def start(self, week: int) -> int:
        """First second of ``week``."""
        return self.origin + week * WEEK_SECONDS

    def bounds(self, week: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        return (pd.Timestamp(self.start(week), unit="s", tz="UTC"),
                pd.Timestamp(self.start(week + 1), unit="s", tz="UTC"))

    def check_week(self, week: int) -> None:
        if not 0 <= week < self.n_weeks:
            raise ValueError(f"week {week} is outside the replay timeline 0..{self.n_weeks - 1}")


def interactions_of_week(interactions: pd.DataFrame, clock: ReplayClock, week: int) -> pd.DataFrame:
    """The batch of interactions whose timestamp falls inside ``week``."""
    clock.check_week(week)
    ts = interactions[S.TS]
    return interactions[(ts >= clock.start(week)) & (ts < clock.start(week + 1))].reset_index(drop=True)


def interactions_between(interactions: pd.DataFrame, clock: ReplayClock, start: int, end: int) -> pd.DataFrame:
    """Interactions of weeks ``[start, end)``."""
    ts = interactions[S.TS]
    return interactions[(ts >= clock.start(start)) & (ts < clock.start(end))].reset_index(drop=True)


def interactions_before(interactions: pd.DataFrame, clock: ReplayClock, week: int) -> pd.DataFrame:
    """Everything that happened before ``week`` started: what a model trained as of ``week`` may see."""
    return interactions[interactions[S.TS] < clock.start(week)].reset_index(drop=True)


def write_week(interactions: pd.DataFrame, clock: ReplayClock, week: int, batches_dir: Path) -> Path:
    """Write the batch of ``week`` as ``week=WW/interactions.parquet``, replacing any earlier copy."""
    batch = interactions_of_week(interactions, clock, week).assign(**{S.WEEK: np.int16(week)})
    part = batches_dir / f"week={week:02d}"
    part.mkdir(parents=True, exist_ok=True)
    tmp = part / ".interactions.parquet.tmp"
    batch.to_parquet(tmp, index=False)
    tmp.replace(part / "interactions.parquet")
    return part / "interactions.parquet"
