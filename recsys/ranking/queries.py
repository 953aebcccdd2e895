"""Turn a label window into ranker queries: candidates, features and graded labels per user."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.candidates import (
    ALS,
    EASE,
    CandidateGenerator,
    ItemKNN,
    NewUserPopularity,
    Popularity,
    ProfilePopularity,
    RecentItemKNN,
    RecentPopularity,
)
from recsys.candidates.sessions import CoVisitation
from recsys.config import CandidateConfig
from recsys.data.load import MovieLens
from recsys.data.matrix import InteractionData
from recsys.data.replay import ReplayClock
from recsys.data.split import LabelWindow, temporal_window
from recsys.features.builder import BATCH_CELLS, CandidateBatch, FeatureBuilder, Stage1, user_chunks
from recsys.metrics import ndcg_at_k
from recsys.parallel import thread_map


def make_generators(cfg: CandidateConfig) -> dict[str, CandidateGenerator]:
    """The generators of stage 1, keyed by their feature-name prefix."""
    generators: dict[str, CandidateGenerator] = {
        "popularity": Popularity(),
        "recent_popularity": RecentPopularity(cfg.pop_half_life_days),
        "profile_popularity": ProfilePopularity(cfg.pop_half_life_days),
        "new_user_popularity": NewUserPopularity(cfg.new_user_half_life_days),
        "item_knn": ItemKNN(cfg.knn_neighbours, cfg.knn_shrink, cfg.knn_max_items),
        "recent_item_knn": RecentItemKNN(cfg.knn_neighbours, cfg.knn_shrink, cfg.recent_items,
                                         max_items=cfg.knn_max_items),
        "ease": EASE(cfg.ease_lambda, cfg.ease_max_items),
    }
    if cfg.covisit_window:
        generators["covisit"] = CoVisitation(cfg.covisit_window, cfg.recent_items)
    if cfg.als_factors:
        generators["als"] = ALS(cfg.als_factors, cfg.als_regularization, cfg.als_alpha, cfg.als_iterations)
    return generators


def profiles_for(users: pd.DataFrame, user_ids: np.ndarray) -> pd.DataFrame:
    """Sign-up profiles of ``user_ids`` (rows of missing users are empty)."""
    return users.set_index(S.USER).reindex(user_ids)[list(S.PROFILE_FIELDS)]


@dataclass
class QueryFrame:
    """Rows = (user, candidate item) pairs grouped by user, with features and labels."""

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    feature_names: list[str]
    user: np.ndarray
    item: np.ndarray

    @staticmethod
    def concat(frames: list[QueryFrame]) -> QueryFrame:
        return QueryFrame(
            np.concatenate([f.x for f in frames]), np.concatenate([f.y for f in frames]),
            np.concatenate([f.group for f in frames]), frames[0].feature_names,
            np.concatenate([f.user for f in frames]), np.concatenate([f.item for f in frames]),
        )


@dataclass
class FittedWindow:
    """Stage 1 and the feature builder fitted on a window's history; its users' candidates come in batches."""

    data: InteractionData
    stage1: Stage1
    features: FeatureBuilder
    window: LabelWindow
    user_ids: np.ndarray
    users: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each step on this window: generators_fit, features_fit, then candidates and features (added
    by :func:`window_queries`)."""

    _positives: dict[bool, Positives] = field(default_factory=dict, repr=False)

    def positives(self, graded: bool) -> Positives:
        """The window's label lookup (built at the first batch; a race between threads only builds it twice)."""
        if graded not in self._positives:
            self._positives[graded] = Positives.of(self.window.positives, graded)
        return self._positives[graded]

    def user_batches(self, max_cells: int = BATCH_CELLS) -> list[np.ndarray]:
        """The window's users in bounded batches (one, possibly empty, for a small window)."""
        return user_chunks(self.user_ids, self.data.n_items, max_cells)

    def candidates(self, ids: np.ndarray, dense: bool = False) -> CandidateBatch:
        exclude = ([self.window.exclude.get(int(u), np.empty(0, np.int64)).tolist() for u in ids]
                   if self.window.exclude else None)
        return self.stage1.candidates(ids, profiles_for(self.users, ids), exclude, dense=dense)

    def batches(self, max_cells: int = BATCH_CELLS) -> Iterator[CandidateBatch]:
        """Candidates of the window's users, a bounded batch at a time."""
        for ids in self.user_batches(max_cells):
            yield self.candidates(ids)


def fit_window(window: LabelWindow, items: pd.DataFrame, users: pd.DataFrame, cfg: CandidateConfig,
               user_ids: np.ndarray | None = None) -> FittedWindow:
    """Fit stage 1 + features on the window's history (its users' candidates: :meth:`FittedWindow.batches`)."""
    data = InteractionData(window.history, items, users, window.now)
    t0 = time.perf_counter()
    stage1 = Stage1(make_generators(cfg), cfg.per_generator, cfg.rank_depth).fit(data)
    t1 = time.perf_counter()
    features = FeatureBuilder.for_config(cfg).fit(data)
    seconds = {"generators_fit": t1 - t0, "features_fit": time.perf_counter() - t1}
    ids = window.users if user_ids is None else user_ids
    return FittedWindow(data, stage1, features, window, np.asarray(ids, dtype=np.int64), users, seconds)


def window_frame(ml: MovieLens, clock: ReplayClock, start: int, horizon: int, cfg: CandidateConfig,
                 graded: bool) -> tuple[QueryFrame, dict[str, float]]:
    """The ranker queries of the label window ``[start, start + horizon)`` and the seconds of each step: what a
    training builds per window, locally or on a Dask worker (a top-level function, so a worker can run it)."""
    fitted = fit_window(temporal_window(ml.interactions, clock, start, horizon), ml.items, ml.users, cfg)
    frame = window_queries(fitted, graded)
    return frame, dict(fitted.seconds)


def users_ndcg(scores: np.ndarray, q: QueryFrame, truth: dict[int, set[int]], k: int) -> dict[int, float]:
    """NDCG@k of each user of ``truth`` when each query's candidates are ordered by ``scores`` (ties: candidate
    order); a user without a query scores 0."""
    per_user = dict.fromkeys(truth, 0.0)
    offsets = np.concatenate([[0], np.cumsum(q.group)])
    for lo, hi in pairwise(offsets):
        user = int(q.user[lo])
        if user in truth:
            order = np.argsort(-scores[lo:hi], kind="stable")
            per_user[user] = ndcg_at_k(q.item[lo:hi][order][:k], truth[user], k)
    return per_user


def _pair_codes(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """One int64 per (user id, item id) pair (both ids are 32-bit)."""
    return (np.asarray(users, dtype=np.int64) << 32) | (np.asarray(items, dtype=np.int64) & 0xFFFFFFFF)


@dataclass(frozen=True)
class Positives:
    """A window's positives as sorted pair codes and their label gains: built once per window, looked up per batch
    (building the lookup per batch made the work batches x positives)."""

    codes: np.ndarray
    gains: np.ndarray

    @classmethod
    def of(cls, positives: pd.DataFrame, graded: bool) -> Positives:
        """Graded: 2 for a rating >= 4, else 1; the first row of a repeated (user, item) pair counts."""
        pos = positives.drop_duplicates([S.USER, S.ITEM])
        gain = np.where(pos[S.RATING].to_numpy() >= 4, 2.0, 1.0) if graded else np.ones(len(pos))
        codes = _pair_codes(pos[S.USER].to_numpy(), pos[S.ITEM].to_numpy())
        order = np.argsort(codes, kind="stable")
        return cls(codes[order], gain[order])

    def labels(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The label of each (user, item) pair: its gain, 0 unless a positive."""
        codes = _pair_codes(users, items)
        if not len(self.codes):
            return np.zeros(len(codes), dtype=np.float32)
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        return np.where(self.codes[at] == codes, self.gains[at], 0.0).astype(np.float32)


def labels_for(batch: CandidateBatch, positives: Positives) -> np.ndarray:
    """Label of each candidate pair: 0 unless a positive (see :class:`Positives`)."""
    return positives.labels(batch.user_ids[batch.pair_user], batch.items)


def window_queries(fitted: FittedWindow, graded: bool, require_positive: bool = True,
                   max_cells: int = BATCH_CELLS) -> QueryFrame:
    """Ranker queries of a fitted window; users whose candidates hold no positive teach nothing: dropped.

    The batches run on the process's CPUs (:func:`~recsys.parallel.thread_map`; the same queries, in order), so the
    ``candidates`` and ``features`` seconds are summed over the threads."""

    def one(ids: np.ndarray) -> tuple[QueryFrame, float, float]:
        t0 = time.perf_counter()
        batch = fitted.candidates(ids)
        t1 = time.perf_counter()
        return batch_queries(fitted, batch, graded, require_positive), t1 - t0, time.perf_counter() - t1

    done = thread_map(one, fitted.user_batches(max_cells))
    for step, seconds in (("candidates", sum(d[1] for d in done)), ("features", sum(d[2] for d in done))):
        fitted.seconds[step] = fitted.seconds.get(step, 0.0) + seconds
    return QueryFrame.concat([d[0] for d in done])


def batch_queries(fitted: FittedWindow, batch: CandidateBatch, graded: bool, require_positive: bool) -> QueryFrame:
    x, names = fitted.features.transform(batch)
    y = labels_for(batch, fitted.positives(graded))
    keep_user = np.ones(len(batch.user_ids), dtype=bool)
    if require_positive:
        keep_user = np.bincount(batch.pair_user, weights=(y > 0), minlength=len(batch.user_ids)) > 0
    rows = keep_user[batch.pair_user]
    group = np.bincount(batch.pair_user, minlength=len(batch.user_ids))[keep_user]
    return QueryFrame(x[rows], y[rows], group, names, batch.user_ids[batch.pair_user][rows], batch.items[rows])
