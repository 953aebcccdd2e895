"""Label windows for the two offline protocols: the rolling temporal backtest and RecBole's random split.

A :class:`LabelWindow` is what one model sees (``history``, everything before ``now``) and what it must
predict (``positives``: pairs not in the history). The same shape serves ranker training windows,
validation windows and test windows, so no protocol can accidentally train on what it tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.data.replay import ReplayClock, interactions_before, interactions_between


@dataclass
class LabelWindow:
    history: pd.DataFrame
    now: int
    positives: pd.DataFrame
    """(user, item, rating) rows to predict; never pairs already in ``history``."""
    exclude: dict[int, np.ndarray] = field(default_factory=dict)
    """Per user, items that are neither history nor positives but must not be recommended (masked)."""
    name: str = ""

    @property
    def users(self) -> np.ndarray:
        return np.sort(self.positives[S.USER].unique().astype(np.int64))

    def cold_mask(self, users: np.ndarray) -> np.ndarray:
        """True for users with no history in this window (cold start)."""
        return ~np.isin(users, self.history[S.USER].unique())

    def truth(self) -> dict[int, set[int]]:
        return {int(u): set(g.astype(int)) for u, g in self.positives.groupby(S.USER)[S.ITEM]}


def _new_pairs(history: pd.DataFrame, later: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``later`` whose (user, item) pair is not in ``history``; one row per pair (the first)."""
    seen = pd.MultiIndex.from_frame(history[[S.USER, S.ITEM]])
    key = pd.MultiIndex.from_frame(later[[S.USER, S.ITEM]])
    fresh = later[~key.isin(seen)]
    return fresh.drop_duplicates([S.USER, S.ITEM]).reset_index(drop=True)


def temporal_window(interactions: pd.DataFrame, clock: ReplayClock, start: int, horizon: int) -> LabelWindow:
    """Train on weeks < ``start``; positives are new pairs in weeks ``[start, start + horizon)``."""
    if start < 1:
        raise ValueError(f"a label window needs history before it: start week {start} < 1")
    end = min(start + horizon, clock.n_weeks)
    history = interactions_before(interactions, clock, start)
    later = interactions_between(interactions, clock, start, end)
    return LabelWindow(history, clock.start(start), _new_pairs(history, later), name=f"weeks {start}-{end - 1}")


def recbole_counts(n: int, ratios: tuple[float, ...] = (0.8, 0.1, 0.1)) -> list[int]:
    """RecBole 1.2's ``_calcu_split_ids`` rule: how many of a user's ``n`` interactions go to each part."""
    counts = [int(r * n) for r in ratios]
    counts[0] = n - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def recbole_split(interactions: pd.DataFrame, seed: int = 2020) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """RecBole's ``RS [0.8, 0.1, 0.1]``, ``order RO``, ``group_by user``: a random per-user split."""
    rng = np.random.default_rng(seed)
    shuffled = interactions.iloc[rng.permutation(len(interactions))]
    shuffled = shuffled.sort_values(S.USER, kind="stable")
    pos = shuffled.groupby(S.USER).cumcount().to_numpy()
    sizes = shuffled.groupby(S.USER)[S.USER].transform("size").to_numpy()
    part = np.zeros(len(shuffled), dtype=np.int8)
    for n in np.unique(sizes):
        train_n, valid_n, _ = recbole_counts(int(n))
        m = sizes == n
        part[m] = np.where(pos[m] < train_n, 0, np.where(pos[m] < train_n + valid_n, 1, 2))
    parts = [shuffled[part == p].reset_index(drop=True) for p in range(3)]
    return parts[0], parts[1], parts[2]


def _items_by_user(frame: pd.DataFrame) -> dict[int, np.ndarray]:
    return {int(u): g.to_numpy(np.int64) for u, g in frame.groupby(S.USER)[S.ITEM]}


def recbole_windows(
    interactions: pd.DataFrame, seed: int = 2020, folds: int = 2
) -> tuple[list[LabelWindow], LabelWindow, LabelWindow]:
    """Ranker-training folds, the validation window and the test window of RecBole's protocol.

    Models are fitted on the 80 % train part only. Validation ranks against the train history; test ranks
    against the same history with validation items masked (no refit on train + validation). Ranker training
    labels come from ``folds`` disjoint random slices of the *train* part (each ~1/8 of a user's train items),
    with the rest of train as history, so no validation or test pair is ever a training label.
    """
    train, valid, test = recbole_split(interactions, seed)
    now = int(interactions[S.TS].max()) + 1
    rng = np.random.default_rng(seed + 1)
    fold_of = rng.integers(0, 8, size=len(train))
    train_windows = [
        LabelWindow(train[fold_of != f].reset_index(drop=True), now, train[fold_of == f].reset_index(drop=True),
                    name=f"train fold {f}")
        for f in range(folds)
    ]
    valid_window = LabelWindow(train, now, valid, name="validation")
    test_window = LabelWindow(train, now, test, exclude=_items_by_user(valid), name="test")
    return train_windows, valid_window, test_window
