"""Session signals: each user's latest items, and co-visitation (items interacted with next to each other in a
user's sequence), with the generator built on them."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.candidates.neighbours import ItemKNN, latest_items
from recsys.data.matrix import InteractionData


def latest_matrix(last_ts: sp.csr_matrix, n: int) -> np.ndarray:
    """(users, n) the columns of each user's ``n`` latest items, latest first; -1 pads."""
    rows, cols, pos = latest_items(last_ts, n)
    out = np.full((last_ts.shape[0], n), -1, dtype=np.int64)
    out[rows, pos] = cols
    return out


def covisit_counts(last_ts: sp.csr_matrix, window: int) -> sp.csr_matrix:
    """Item x item: how many users interacted with both items at most ``window`` positions apart in their sequence
    (symmetric, zero diagonal). Cost: interactions x window."""
    rows, cols, _ = latest_items(last_ts)
    n_items = last_ts.shape[1]
    parts_r, parts_c = [], []
    for gap in range(1, window + 1):
        same = rows[gap:] == rows[:-gap]  # rows are grouped and ordered by position, so i + gap is gap later
        a, b = cols[:-gap][same], cols[gap:][same]
        parts_r += [a, b]
        parts_c += [b, a]
    if not parts_r:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    r, c = np.concatenate(parts_r), np.concatenate(parts_c)
    out = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_items, n_items))
    out.sum_duplicates()
    return out


def pair_values(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows[i], cols[i]]`` for each i (0 where nothing is stored); NaN where ``rows[i]`` is negative."""
    out = np.full(len(rows), np.nan)
    ok = rows >= 0
    if ok.any():
        out[ok] = np.asarray(matrix[rows[ok], cols[ok]]).ravel()
    return out


class CoVisitation(ItemKNN):
    """score(u, j) = sum over the user's ``recent_items`` latest items i (weighted ``decay ** position``) of
    co-visit(i, j) / sqrt(n_i n_j): how often j came next to i in users' sequences, normalised like a cosine.

    On MovieLens users rate in sessions, in the order the site showed the films, so what came next to a user's
    last films says more about the next ones than the co-occurrence over whole histories (item-kNN)."""

    name = "covisit"

    def __init__(self, window: int = 3, recent_items: int = 10, decay: float = 0.8) -> None:
        super().__init__()
        self.window = window
        self.recent_items = recent_items
        self.decay = decay

    def get_params(self) -> dict[str, Any]:
        return {"window": self.window, "recent_items": self.recent_items, "decay": self.decay}

    _state_names: ClassVar[tuple[str, ...]] = ("sim_", "recent_")

    def _fit(self, data: InteractionData) -> None:
        counts = data.derived(("covisit", self.window), lambda: covisit_counts(data.last_ts, self.window))
        degree = np.sqrt(np.asarray(counts.sum(axis=0)).ravel())
        inv = sp.diags(np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0))
        self.sim_ = (inv @ counts @ inv).tocsr().astype(np.float32)
        rows, cols, pos = latest_items(data.last_ts, self.recent_items)
        self.recent_ = sp.csr_matrix((self.decay ** pos, (rows, cols)), shape=data.last_ts.shape, dtype=np.float32)

    def _history(self, rows: np.ndarray) -> sp.csr_matrix:
        return self.recent_[rows]
