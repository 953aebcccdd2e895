"""One interface for every candidate generator.

A generator is fitted on an :class:`InteractionData`, scores the whole catalog for a batch of users (dense,
vectorised), and turns those scores into at most ``k`` unique candidates with the user's seen items and any
``exclude`` removed. Users without history fall back to the generator's ``_score_unknown`` (popularity by
default, or the profile where a generator can use it). Learned state lives in attributes ending in ``_``
and is saved as one ``.npz`` plus a JSON of the constructor parameters.

For a large catalog a generator also answers in bounded form (:meth:`CandidateGenerator.top`, a
:class:`TopItems`): each user's best ``depth`` items and the scores at other pairs, the same values as the dense
path. By default it goes through the dense scores; a generator whose users share an order overrides it so the cost
follows users x depth, not users x items (the popularity family: one order; profile popularity: one per segment).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.artifacts import save_npz, save_sparse_npz
from recsys.data.matrix import InteractionData
from recsys.profiles import ProfileBlock

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class Candidates:
    """Item ids and their scores, best first."""

    items: np.ndarray
    scores: np.ndarray


def decay_weights(timestamps: np.ndarray, now: int, half_life_days: float | None) -> np.ndarray:
    """``0.5 ** (age / half_life)`` per interaction; all ones without a half-life."""
    if half_life_days is None:
        return np.ones(len(timestamps))
    return np.power(0.5, (now - np.asarray(timestamps, dtype=np.float64)) / SECONDS_PER_DAY / half_life_days)


def decayed_counts(data: InteractionData, half_life_days: float | None) -> np.ndarray:
    """Interactions per item, each weighted by ``0.5 ** (age / half_life)`` (plain counts without a half-life)."""
    cols = np.searchsorted(data.item_ids, data.interactions["item_id"].to_numpy())
    weights = decay_weights(data.interactions["timestamp"].to_numpy(), data.now, half_life_days)
    return np.bincount(cols, weights=weights, minlength=data.n_items).astype(np.float64)


class CandidateGenerator(ABC):
    """Base class: subclasses implement ``_fit`` and ``_score_known`` (and optionally ``_score_unknown``)."""

    name: ClassVar[str]
    registry: ClassVar[dict[str, type[CandidateGenerator]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            CandidateGenerator.registry[cls.name] = cls

    # -- the subclass contract -------------------------------------------------------------------------
    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serialisable)."""

    @abstractmethod
    def _fit(self, data: InteractionData) -> None:
        """Learn state from ``data``; store it in ``*_`` attributes listed by ``_state_names``."""

    @abstractmethod
    def _score_known(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores (len(rows), n_items) for users with history (row indices into the fit matrix)."""

    _state_names: ClassVar[tuple[str, ...]] = ()

    profile_aware: ClassVar[bool] = False
    """Whether the scores of users without history depend on their profile (if not, they all score alike)."""

    def _score_unknown(self, n: int, profiles: ProfileBlock | None) -> np.ndarray:
        return np.broadcast_to(self.fallback_, (n, len(self.item_ids_))).copy()

    def cold_scores(self) -> np.ndarray:
        """Catalog scores of a user without history and without a profile, shape ``(n_items,)``."""
        return self._score_unknown(1, None)[0]

    # -- shared behaviour ------------------------------------------------------------------------------
    def fit(self, data: InteractionData) -> Self:
        self.__dict__.pop("_memos", None)  # orders computed from an earlier fit
        self.item_ids_ = data.item_ids
        self.user_ids_ = data.user_ids
        self.seen_ = data.matrix.astype(np.float32).tocsr()
        self.fallback_ = decayed_counts(data, 14.0)
        self._fit(data)
        return self

    def user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user in the fitted matrix, -1 for users without history."""
        pos = np.clip(np.searchsorted(self.user_ids_, user_ids), 0, max(len(self.user_ids_) - 1, 0))
        if not len(self.user_ids_):
            return np.full(len(user_ids), -1)
        return np.where(self.user_ids_[pos] == user_ids, pos, -1)

    def score(self, user_ids: np.ndarray | list[int], profiles: ProfileBlock | pd.DataFrame | None = None
              ) -> np.ndarray:
        """Dense scores over the catalog for each user; seen items are NOT masked here.

        ``profiles`` (one row per user: a :class:`ProfileBlock`, or a frame with columns age/gender/occupation/zip)
        is used for users without history by generators that understand it.
        """
        ids = np.asarray(user_ids, dtype=np.int64)
        rows = self.user_rows(ids)
        out = np.empty((len(ids), len(self.item_ids_)), dtype=np.float64)
        known = rows >= 0
        if known.any():
            out[known] = self._score_known(rows[known])
        if (~known).any():
            sub = None if profiles is None else ProfileBlock.of(profiles, len(ids)).take(np.flatnonzero(~known))
            out[~known] = self._score_unknown(int((~known).sum()), sub)
        return out

    def seen_mask(self, user_ids: np.ndarray) -> sp.csr_matrix:
        """Boolean (len(user_ids), n_items) matrix of items each user has already interacted with."""
        rows = self.user_rows(np.asarray(user_ids, dtype=np.int64))
        if not len(self.user_ids_):
            return sp.csr_matrix((len(rows), len(self.item_ids_)), dtype=np.float32)
        # users without history (row -1) get an all-zero row
        return (sp.diags((rows >= 0).astype(np.float32)) @ self.seen_[np.clip(rows, 0, None)]).tocsr()

    def blocked(self, user_ids: np.ndarray, exclude: list[list[int]] | None = None) -> sp.csr_matrix:
        """(len(user_ids), n_items) mask of what must not be recommended: seen items plus ``exclude``."""
        seen = self.seen_mask(user_ids)
        if exclude is None:
            return seen
        cols = [item_columns(self.item_ids_, ex) for ex in exclude]
        rows = np.repeat(np.arange(len(cols)), [len(c) for c in cols])
        flat = np.concatenate(cols) if cols else np.empty(0, np.int64)
        extra = sp.csr_matrix((np.ones(len(flat), np.float32), (rows, flat)), shape=seen.shape)
        return (seen + extra).tocsr()

    def recommend_batch(
        self, user_ids: np.ndarray | list[int], k: int, profiles: ProfileBlock | pd.DataFrame | None = None,
        exclude: list[list[int]] | None = None,
    ) -> list[Candidates]:
        """Top-``k`` unseen, non-excluded items per user."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        ids = np.asarray(user_ids, dtype=np.int64)
        masked = mask_scores(self.score(ids, profiles), self.blocked(ids, exclude))
        top = top_k(masked, k)
        return [Candidates(self.item_ids_[t], masked[i, t]) for i, t in enumerate(top)]

    def candidates(self, user_id: int, k: int, profile: dict[str, Any] | None = None,
                   exclude: list[int] | None = None) -> Candidates:
        """Top-``k`` candidates of one user (see :meth:`recommend_batch`)."""
        prof = None if profile is None else ProfileBlock.from_records([profile])
        return self.recommend_batch([user_id], k, prof, None if exclude is None else [list(exclude)])[0]

    # -- bounded answers (Stage1 with ``rank_depth``): the dense path's values, at users x depth cost -----------
    def top(self, user_ids: np.ndarray | list[int], profiles: ProfileBlock | pd.DataFrame | None,
            blocked: sp.csr_matrix, depth: int) -> TopItems:
        """Each user's ``depth`` best columns that ``blocked`` (users x items) does not hold, best first with ties
        by lower column (a stable sort of :meth:`score`'s row), their scores, and the scores at other pairs."""
        ids = np.asarray(user_ids, dtype=np.int64)
        rows = self.user_rows(ids)
        blocked = blocked.tocsr()
        parts: list[tuple[np.ndarray, TopItems]] = []
        known, unknown = np.flatnonzero(rows >= 0), np.flatnonzero(rows < 0)
        if len(known):
            parts.append((known, self._top_known(rows[known], blocked[known], depth)))
        if len(unknown):
            sub = None if profiles is None else ProfileBlock.of(profiles, len(ids)).take(unknown)
            parts.append((unknown, self._top_unknown(len(unknown), sub, blocked[unknown], depth)))
        return TopItems.stack(len(ids), depth, parts)

    def _top_known(self, rows: np.ndarray, blocked: sp.csr_matrix, depth: int) -> TopItems:
        return TopItems.of_dense(self._score_known(rows), blocked, depth)

    def _top_unknown(self, n: int, profiles: ProfileBlock | None, blocked: sp.csr_matrix, depth: int) -> TopItems:
        if self.profile_aware:
            return TopItems.of_dense(self._score_unknown(n, profiles), blocked, depth)
        return TopItems.of_order(*self._cold_order(), blocked, depth)

    def _memo(self, key: Any, make: Any) -> Any:
        """``make()``, computed once per fitted generator (a race only computes it twice)."""
        memo = self.__dict__.setdefault("_memos", {})
        if key not in memo:
            memo[key] = make()
        return memo[key]

    def _cold_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(the catalog scores of a user without history, their best-first order; ties by lower column)."""
        return self._memo("cold", lambda: scored_order(self.cold_scores()))

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "params.json").write_text(json.dumps({"name": self.name, "params": self.get_params()}, indent=2))
        arrays = {n: getattr(self, n) for n in ("item_ids_", "user_ids_", "fallback_", *self._state_names)}
        dense = {k: v for k, v in arrays.items() if not sp.issparse(v)}
        save_npz(path / "state.npz", dense)
        save_sparse_npz(path / "seen.npz", self.seen_.astype(np.int8).tocsr())
        for k, v in arrays.items():
            if sp.issparse(v):
                save_sparse_npz(path / f"{k}.npz", v.tocsr())

    @classmethod
    def load(cls, path: Path) -> CandidateGenerator:
        meta = json.loads((path / "params.json").read_text())
        gen_cls = CandidateGenerator.registry[meta["name"]]
        gen = gen_cls(**meta["params"])
        with np.load(path / "state.npz", allow_pickle=False) as state:
            for k in state.files:
                setattr(gen, k, state[k])
        for k in gen._state_names:
            if (path / f"{k}.npz").exists():
                setattr(gen, k, sp.load_npz(path / f"{k}.npz").tocsr())
        gen.seen_ = sp.load_npz(path / "seen.npz").astype(np.float32).tocsr()
        return gen

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def mask_scores(scores: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """Copy of ``scores`` with seen items set to -inf."""
    out = scores.copy()
    r, c = seen.nonzero()
    out[r, c] = -np.inf
    return out


def top_k(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Column indices of the ``k`` highest finite scores per row, best first (ties by lower index, also among the
    items tied with the k-th: :func:`exact_top`)."""
    order = exact_top(scores, min(k, scores.shape[1]))
    finite = np.isfinite(np.take_along_axis(scores, order, axis=1))
    return [cols[ok] for cols, ok in zip(order, finite, strict=True)]


def scored_order(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``scores``, the columns best first, ties by lower column)."""
    return scores, np.argsort(-scores, kind="stable")


def exact_top(masked: np.ndarray, depth: int) -> np.ndarray:
    """Columns of the ``depth`` highest values per row, best first, ties by lower column (the start of a stable
    sort of ``-masked``), in O(items) per row: a partition, ties at the cut resolved only in rows that straddle it.
    ``depth`` at least the row length: every column, sorted."""
    neg = -masked
    if depth >= masked.shape[1]:
        return np.argsort(neg, axis=1, kind="stable")
    part = np.argpartition(neg, depth - 1, axis=1)[:, :depth]  # the top depth, ties at the boundary arbitrary
    kth = np.take_along_axis(neg, part[:, depth - 1:depth], axis=1)
    # rows whose items tied with the depth-th lie on both sides of it: the stable sort keeps the lowest columns
    straddle = np.flatnonzero((neg == kth).sum(axis=1) > (np.take_along_axis(neg, part, axis=1) == kth).sum(1))
    for r in straddle:
        better = np.flatnonzero(neg[r] < kth[r, 0])
        part[r] = np.concatenate([better, np.flatnonzero(neg[r] == kth[r, 0])[:depth - len(better)]])
    part.sort(axis=1)
    return np.take_along_axis(part, np.argsort(np.take_along_axis(neg, part, axis=1), axis=1, kind="stable"), axis=1)


def first_free(order: np.ndarray, taken: sp.csr_matrix, depth: int) -> np.ndarray:
    """Per row of ``taken`` (users x items), the first ``depth`` columns of ``order`` (a permutation of the items)
    that the row does not hold; -1 pads. One pass over ``order`` per call, then depth + the row's entries per row:
    not rows x catalog."""
    n, u = len(order), taken.shape[0]
    out = np.full((u, depth), -1, dtype=np.int64)
    if not n or not u or depth <= 0:
        return out
    taken = taken.tocsr()
    counts = np.diff(taken.indptr)
    width = int(min(n, depth + counts.max()))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    pos = position[taken.indices]
    rows = np.repeat(np.arange(u), counts)
    near = pos < width
    free = np.ones((u, width), dtype=bool)
    free[rows[near], pos[near]] = False
    slot = np.cumsum(free, axis=1) - 1
    r, j = np.nonzero(free & (slot < depth))
    out[r, slot[r, j]] = order[j]
    return out


@dataclass(frozen=True)
class TopItems:
    """A generator's bounded answer for a batch of users (:meth:`CandidateGenerator.top`)."""

    cols: np.ndarray
    """(users, depth) the best columns not blocked, best first, ties by lower column; -1 pads."""
    vals: np.ndarray
    """(users, depth) their scores; -inf pads."""
    score_at: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """(user index, column) pairs the batch does not block -> the generator's scores there (float64)."""

    @classmethod
    def of_dense(cls, scores: np.ndarray, blocked: sp.csr_matrix, depth: int) -> TopItems:
        """From a fresh dense (users, items) ``scores`` array (masked in place)."""
        r, c = blocked.nonzero()
        scores[r, c] = -np.inf
        order = exact_top(scores, depth)
        vals = np.take_along_axis(scores, order, axis=1)
        finite = np.isfinite(vals)
        cols, vals = np.where(finite, order, -1), np.where(finite, vals, -np.inf)
        if cols.shape[1] < depth:  # a catalog smaller than depth
            extra = ((0, 0), (0, depth - cols.shape[1]))
            cols, vals = np.pad(cols, extra, constant_values=-1), np.pad(vals, extra, constant_values=-np.inf)
        return cls(cols, vals, lambda rows, columns: scores[rows, columns])

    @classmethod
    def of_order(cls, scores: np.ndarray, order: np.ndarray, blocked: sp.csr_matrix, depth: int,
                 score_at: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> TopItems:
        """When the users share one row of catalog ``scores`` (``order``: its columns best first)."""
        cols = first_free(order, blocked, depth)
        vals = np.where(cols >= 0, scores[np.maximum(cols, 0)], -np.inf)
        return cls(cols, vals, score_at or (lambda rows, columns: scores[columns]))

    @classmethod
    def of_columns(cls, sub: np.ndarray, columns: np.ndarray, n_items: int, blocked: sp.csr_matrix, depth: int
                   ) -> TopItems:
        """When the scores are ``sub`` (users, len(columns)) on the sorted ``columns`` and 0 on every other item:
        the entries above 0, then the items at 0 by column, then the entries below 0 (users x columns work, not
        users x catalog)."""
        u, m = sub.shape
        masked = sub.astype(np.float64)
        b = blocked.tocsr()
        br, bc = np.repeat(np.arange(u), np.diff(b.indptr)), b.indices.astype(np.int64)
        at = np.minimum(np.searchsorted(columns, bc), max(m - 1, 0))
        inside = columns[at] == bc if m else np.zeros(len(bc), dtype=bool)
        masked[br[inside], at[inside]] = -np.inf
        order = exact_top(masked, min(depth, m))  # positions in ``columns``, best first
        vals = np.take_along_axis(masked, order, axis=1)
        above, below = vals > 0, (vals < 0) & np.isfinite(vals)
        cols = np.full((u, depth), -1, dtype=np.int64)
        out = np.full((u, depth), -np.inf)
        r, j = np.nonzero(above)  # a prefix of each row
        cols[r, j], out[r, j] = columns[order[r, j]], vals[r, j]
        n_above = above.sum(axis=1)
        need = depth - n_above
        nz_r, nz_j = np.nonzero(masked != 0)  # the zeros group: items neither blocked nor scored apart from 0
        taken = sp.csr_matrix((np.ones(len(br) + len(nz_r), dtype=np.int8),
                               (np.concatenate([br, nz_r]), np.concatenate([bc, columns[nz_j]]))), shape=(u, n_items))
        zeros = first_free(np.arange(n_items), taken, int(need.max(initial=0)))
        r, j = np.nonzero((zeros >= 0) & (np.arange(zeros.shape[1]) < need[:, None]))
        cols[r, n_above[r] + j], out[r, n_above[r] + j] = zeros[r, j], 0.0
        filled = n_above + np.bincount(r, minlength=u)
        r, j = np.nonzero(below)  # a suffix of each row's finite part
        slot = filled[r] + np.cumsum(below, axis=1)[r, j] - 1
        ok = slot < depth
        cols[r[ok], slot[ok]], out[r[ok], slot[ok]] = columns[order[r[ok], j[ok]]], vals[r[ok], j[ok]]

        def score_at(rows: np.ndarray, wanted: np.ndarray) -> np.ndarray:
            pos = np.minimum(np.searchsorted(columns, wanted), max(m - 1, 0))
            hit = columns[pos] == wanted if m else np.zeros(len(wanted), dtype=bool)
            got = np.zeros(len(wanted), dtype=np.float64)
            got[hit] = masked[rows[hit], pos[hit]]
            return got

        return cls(cols, out, score_at)

    @classmethod
    def stack(cls, n: int, depth: int, parts: list[tuple[np.ndarray, TopItems]]) -> TopItems:
        """The answers of disjoint subsets of a batch (each with the indices of its users) as one."""
        if len(parts) == 1 and len(parts[0][0]) == n:
            return parts[0][1]
        cols = np.full((n, depth), -1, dtype=np.int64)
        vals = np.full((n, depth), -np.inf)
        owner, local = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        for p, (idx, part) in enumerate(parts):
            cols[idx], vals[idx], owner[idx], local[idx] = part.cols, part.vals, p, np.arange(len(idx))

        def score_at(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
            out = np.empty(len(rows), dtype=np.float64)
            for p, (_, part) in enumerate(parts):
                mine = owner[rows] == p
                out[mine] = part.score_at(local[rows[mine]], columns[mine])
            return out

        return cls(cols, vals, score_at)


def best_pairs(pair_user: np.ndarray, pair_col: np.ndarray, scores: np.ndarray, n_users: int, k: int
               ) -> list[np.ndarray]:
    """Per user, the indices of its ``k`` best pairs by score, ties by lower column (:func:`top_k` of the dense
    users x items matrix the pairs fill, without building it)."""
    order = np.lexsort((pair_col, -scores, pair_user))
    starts = np.searchsorted(pair_user[order], np.arange(n_users + 1))
    return [order[a:min(b, a + k)] for a, b in pairwise(starts)]


def item_columns(item_ids: np.ndarray, wanted: list[int] | np.ndarray) -> np.ndarray:
    """Columns of the ``wanted`` items that are in the sorted catalog ``item_ids`` (others are dropped)."""
    ids = np.asarray(wanted, dtype=np.int64)
    if not len(ids) or not len(item_ids):
        return np.empty(0, dtype=np.int64)
    pos = np.clip(np.searchsorted(item_ids, ids), 0, len(item_ids) - 1)
    return pos[item_ids[pos] == ids]
