"""Popularity generators: global (optionally recency-weighted) and profile-aware (demographic segments)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import schema as S
from recsys.candidates.base import (
    SECONDS_PER_DAY,
    CandidateGenerator,
    TopItems,
    decay_weights,
    decayed_counts,
    scored_order,
)
from recsys.data.matrix import InteractionData
from recsys.profiles import ProfileBlock


class Popularity(CandidateGenerator):
    """Most interacted items; with ``half_life_days`` each interaction decays with its age."""

    name = "popularity"

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_days = half_life_days

    def get_params(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days}

    _state_names: ClassVar[tuple[str, ...]] = ("counts_",)

    def _fit(self, data: InteractionData) -> None:
        self.counts_ = decayed_counts(data, self.half_life_days)

    def _score_known(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(rows), len(self.counts_))).copy()

    def _score_unknown(self, n: int, profiles: ProfileBlock | None) -> np.ndarray:
        return self._score_known(np.zeros(n, dtype=np.int64))

    # every user shares one order: a user's top is the first items of it that they have not seen
    def _top_known(self, rows: np.ndarray, blocked: sp.csr_matrix, depth: int) -> TopItems:
        return TopItems.of_order(*self._cold_order(), blocked, depth)


class RecentPopularity(Popularity):
    """Recency-weighted popularity (a registered name of its own so both variants can run side by side)."""

    name = "recent_popularity"

    def __init__(self, half_life_days: float | None = 14.0) -> None:
        super().__init__(half_life_days)


AGE_BINS = np.array([0, 18, 25, 35, 45, 50, 56, 200])


def age_bucket(age: np.ndarray | pd.Series) -> np.ndarray:
    return np.digitize(np.asarray(age, dtype=np.float64), AGE_BINS[1:-1])


def segment_keys(profiles: ProfileBlock, occupations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gender x age-bucket) and occupation segment ids of each profile; unknown values map to -1."""
    gender = np.where(np.isnan(profiles.female), -1, np.nan_to_num(profiles.female)).astype(np.int64)
    age = profiles.age
    bucket = np.where(np.isnan(age), -1, age_bucket(np.nan_to_num(age)))
    demo = np.where((gender < 0) | (bucket < 0), -1, gender * len(AGE_BINS) + bucket)
    occ = profiles.occupation.astype(str)
    pos = np.clip(np.searchsorted(occupations, occ), 0, len(occupations) - 1)
    occ_id = np.where(occupations[pos] == occ, pos, -1)
    return demo.astype(np.int64), occ_id.astype(np.int64)


class ProfilePopularity(CandidateGenerator):
    """Recency-weighted popularity inside the user's demographic segments, shrunk towards global popularity.

    score(i) = mean over segments s in {gender x age bucket, occupation} of
    ``(c_s(i) + m * p(i)) / (n_s + m)`` with ``p`` the global share and ``m`` a pseudo-count. It needs only the
    sign-up profile, so it ranks cold-start users too.
    """

    name = "profile_popularity"
    profile_aware = True

    def __init__(self, half_life_days: float | None = 14.0, shrinkage: float = 50.0) -> None:
        self.half_life_days = half_life_days
        self.shrinkage = shrinkage

    def get_params(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days, "shrinkage": self.shrinkage}

    _state_names: ClassVar[tuple[str, ...]] = ("demo_scores_", "occ_scores_", "global_", "occupations_",
                                               "user_demo_", "user_occ_")

    def _fit(self, data: InteractionData) -> None:
        counts = decayed_counts(data, self.half_life_days)
        self.global_ = counts / max(counts.sum(), 1e-12)
        self.occupations_ = np.sort(data.users[S.OCCUPATION].astype(str).unique()).astype(str)
        profiles = data.users.drop_duplicates(S.USER).set_index(S.USER)
        inter = data.interactions
        # users without a profile row get segment -1 (global popularity) instead of a neighbour's segment
        demo_i, occ_i = segment_keys(ProfileBlock.from_frame(profiles.reindex(inter[S.USER].to_numpy())),
                                     self.occupations_)
        cols = np.searchsorted(data.item_ids, inter[S.ITEM].to_numpy())
        w = decay_weights(inter[S.TS].to_numpy(), data.now, self.half_life_days)
        n_demo, n_occ = 2 * len(AGE_BINS), len(self.occupations_)
        self.demo_scores_ = self._segment_table(demo_i, cols, w, n_demo, data.n_items)
        self.occ_scores_ = self._segment_table(occ_i, cols, w, n_occ, data.n_items)
        self.user_demo_, self.user_occ_ = segment_keys(ProfileBlock.from_frame(profiles.reindex(data.user_ids)),
                                                       self.occupations_)

    def _segment_table(self, seg: np.ndarray, cols: np.ndarray, w: np.ndarray, n_seg: int, n_items: int) -> np.ndarray:
        ok = seg >= 0
        table = np.bincount(seg[ok] * n_items + cols[ok], weights=w[ok], minlength=n_seg * n_items).reshape(
            n_seg, n_items)
        totals = table.sum(axis=1, keepdims=True)
        return (table + self.shrinkage * self.global_) / (totals + self.shrinkage)

    def _blend(self, demo: np.ndarray, occ: np.ndarray) -> np.ndarray:
        d = np.where(demo[:, None] >= 0, self.demo_scores_[np.clip(demo, 0, None)], self.global_)
        o = np.where(occ[:, None] >= 0, self.occ_scores_[np.clip(occ, 0, None)], self.global_)
        return 0.5 * (d + o)

    def _score_known(self, rows: np.ndarray) -> np.ndarray:
        return self._blend(self.user_demo_[rows], self.user_occ_[rows])

    def _score_unknown(self, n: int, profiles: ProfileBlock | None) -> np.ndarray:
        if profiles is None:
            return np.broadcast_to(self.global_, (n, len(self.global_))).copy()
        demo, occ = segment_keys(profiles, self.occupations_)
        return self._blend(demo, occ)

    # users of one (demographic, occupation) segment pair share one order; a batch holds a few hundred at most
    def _segments(self, n: int, profiles: ProfileBlock | None) -> tuple[np.ndarray, np.ndarray]:
        if profiles is None:  # the global scores: (0.5 * (g + g)) is g exactly
            return np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        return segment_keys(profiles, self.occupations_)

    def _segments_top(self, demo: np.ndarray, occ: np.ndarray, blocked: sp.csr_matrix, depth: int) -> TopItems:
        width = len(self.occupations_) + 1
        keys, group = np.unique((demo + 1) * width + occ + 1, return_inverse=True)
        parts = []
        for g, key in enumerate(keys.tolist()):
            d, o = key // width - 1, key % width - 1
            members = np.flatnonzero(group == g)
            scores, order = self._memo(("segment", d, o),
                                       lambda d=d, o=o: scored_order(self._blend(np.array([d]), np.array([o]))[0]))
            parts.append((members, TopItems.of_order(scores, order, blocked[members], depth)))
        top = TopItems.stack(len(demo), depth, parts)
        return TopItems(top.cols, top.vals, lambda rows, cols: self._segment_pairs(demo[rows], occ[rows], cols))

    def _segment_pairs(self, demo: np.ndarray, occ: np.ndarray, cols: np.ndarray) -> np.ndarray:
        d = np.where(demo >= 0, self.demo_scores_[np.clip(demo, 0, None), cols], self.global_[cols])
        o = np.where(occ >= 0, self.occ_scores_[np.clip(occ, 0, None), cols], self.global_[cols])
        return 0.5 * (d + o)

    def _top_known(self, rows: np.ndarray, blocked: sp.csr_matrix, depth: int) -> TopItems:
        return self._segments_top(self.user_demo_[rows], self.user_occ_[rows], blocked, depth)

    def _top_unknown(self, n: int, profiles: ProfileBlock | None, blocked: sp.csr_matrix, depth: int) -> TopItems:
        return self._segments_top(*self._segments(n, profiles), blocked, depth)


class NewUserPopularity(Popularity):
    """What users watch in their first ``first_days`` days, recency-weighted: the sign-up favourites.

    New users' first ratings follow what the sign-up flow shows rather than overall popularity; this gives
    the ranker a separate cold-start signal (as candidates and as a feature).
    """

    name = "new_user_popularity"

    def __init__(self, half_life_days: float | None = 28.0, first_days: float = 3.0) -> None:
        super().__init__(half_life_days)
        self.first_days = first_days

    def get_params(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days, "first_days": self.first_days}

    def _fit(self, data: InteractionData) -> None:
        inter = data.interactions
        first = inter.groupby(S.USER)[S.TS].transform("min").to_numpy()
        early = (inter[S.TS].to_numpy() - first) <= self.first_days * SECONDS_PER_DAY
        cols = np.searchsorted(data.item_ids, inter[S.ITEM].to_numpy()[early])
        w = decay_weights(inter[S.TS].to_numpy()[early], data.now, self.half_life_days)
        self.counts_ = np.bincount(cols, weights=w, minlength=data.n_items).astype(np.float64)
