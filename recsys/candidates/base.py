"""One interface for every candidate generator.

A generator is fitted on an :class:`InteractionData`, scores the whole catalog for a batch of users (dense,
vectorised), and turns those scores into at most ``k`` unique candidates with the user's seen items and any
``exclude`` removed. Users without history fall back to the generator's ``_score_unknown`` (popularity by
default, or the profile where a generator can use it). Learned state lives in attributes ending in ``_``
and is saved as one ``.npz`` plus a JSON of the constructor parameters.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
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
    """Column indices of the ``k`` highest finite scores per row, best first (ties by lower index)."""
    k_eff = min(k, scores.shape[1])
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    out = []
    for i, cols in enumerate(part):
        vals = scores[i, cols]
        order = np.lexsort((cols, -vals))
        cols = cols[order]
        out.append(cols[np.isfinite(scores[i, cols])])
    return out


def item_columns(item_ids: np.ndarray, wanted: list[int] | np.ndarray) -> np.ndarray:
    """Columns of the ``wanted`` items that are in the sorted catalog ``item_ids`` (others are dropped)."""
    ids = np.asarray(wanted, dtype=np.int64)
    if not len(ids) or not len(item_ids):
        return np.empty(0, dtype=np.int64)
    pos = np.clip(np.searchsorted(item_ids, ids), 0, len(item_ids) - 1)
    return pos[item_ids[pos] == ids]
