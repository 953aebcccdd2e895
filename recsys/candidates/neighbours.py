"""Item-based collaborative generators: cosine item-kNN (whole history or most recent items) and EASE."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.candidates.base import CandidateGenerator
from recsys.data.matrix import InteractionData


def cosine_knn(x: sp.csr_matrix, neighbours: int, shrink: float, block: int | None = None) -> sp.csr_matrix:
    """Item x item cosine similarity (with shrinkage), keeping the top ``neighbours`` per item column.

    Built ``block`` columns at a time (default: as many as keep one block near 512 MB, at most 2,048), so memory is
    items x block, not items x items; the result is the same for any block size (each column is computed whole).
    """
    x = x.tocsc().astype(np.float64)
    n = x.shape[1]
    block = block or int(np.clip(2**26 // max(n, 1), 64, 2048))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    k = min(neighbours, n - 1)
    xt = x.T.tocsr()
    parts = []
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        sim = (xt @ x[:, lo:hi]).toarray()
        sim /= np.outer(norms, norms[lo:hi]) + shrink + 1e-12
        sim[np.arange(lo, hi), np.arange(hi - lo)] = 0.0
        if 0 < k < n - 1:
            # zero all but the k largest entries of each column
            cut = np.partition(sim, -k, axis=0)[-k]
            sim[sim < cut[None, :]] = 0.0
        parts.append(sp.csc_matrix(sim.astype(np.float32)))
    return sp.hstack(parts, format="csr") if parts else sp.csr_matrix((n, n), dtype=np.float32)


class ItemKNN(CandidateGenerator):
    """score(u, j) = sum over the user's items i of sim(i, j), sim = cosine on the implicit matrix."""

    name = "item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        self.neighbours = neighbours
        self.shrink = shrink

    def get_params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "shrink": self.shrink}

    _state_names: ClassVar[tuple[str, ...]] = ("sim_",)

    def _fit(self, data: InteractionData) -> None:
        self.sim_ = data.derived(("cosine_knn", self.neighbours, self.shrink),
                                 lambda: cosine_knn(data.matrix, self.neighbours, self.shrink))

    def _history(self, rows: np.ndarray) -> sp.csr_matrix:
        return self.seen_[rows]

    def _score_known(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self._history(rows) @ self.sim_).todense(), dtype=np.float64)


class RecentItemKNN(ItemKNN):
    """Item-kNN over only the user's ``recent_items`` latest items, each weighted by ``decay ** position``.

    Co-occurrence with what the user watched last carries most of the short-term signal on this data.
    """

    name = "recent_item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0, recent_items: int = 10,
                 decay: float = 0.8) -> None:
        super().__init__(neighbours, shrink)
        self.recent_items = recent_items
        self.decay = decay

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "recent_items": self.recent_items, "decay": self.decay}

    _state_names: ClassVar[tuple[str, ...]] = ("sim_", "recent_")

    def _fit(self, data: InteractionData) -> None:
        super()._fit(data)
        last = data.last_ts.tocsr()
        rows, cols, vals = [], [], []
        for r in range(last.shape[0]):
            start, end = last.indptr[r], last.indptr[r + 1]
            order = np.argsort(-last.data[start:end], kind="stable")[: self.recent_items]
            rows.append(np.full(len(order), r))
            cols.append(last.indices[start:end][order])
            vals.append(self.decay ** np.arange(len(order)))
        if rows:
            rows_a, cols_a, vals_a = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        else:
            rows_a = cols_a = np.empty(0, np.int64)
            vals_a = np.empty(0)
        self.recent_ = sp.csr_matrix((vals_a, (rows_a, cols_a)), shape=last.shape, dtype=np.float32)

    def _history(self, rows: np.ndarray) -> sp.csr_matrix:
        return self.recent_[rows]


class EASE(CandidateGenerator):
    """Embarrassingly Shallow Autoencoder (Steck, 2019): closed-form item-item weights, L2 ``lam``.

    Its cost is a dense items x items inverse (memory quadratic, time cubic in the catalog); ``max_items`` bounds
    it to the most popular items of the fit (the others get no weights: score 0, never proposed ahead of them).
    """

    name = "ease"

    def __init__(self, lam: float = 300.0, max_items: int | None = None) -> None:
        self.lam = lam
        self.max_items = max_items

    def get_params(self) -> dict[str, Any]:
        return {"lam": self.lam} if self.max_items is None else {"lam": self.lam, "max_items": self.max_items}

    _state_names: ClassVar[tuple[str, ...]] = ("weights_", "columns_")

    def _fit(self, data: InteractionData) -> None:
        x = data.matrix.tocsc()
        n = x.shape[1]
        if self.max_items is not None and self.max_items < n:
            counts = np.diff(x.indptr)
            self.columns_ = np.sort(np.argsort(-counts, kind="stable")[: self.max_items]).astype(np.int64)
            x = x[:, self.columns_]
        else:
            self.columns_ = np.arange(n, dtype=np.int64)
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        precision = scipy.linalg.inv(gram, check_finite=False)
        weights = -precision / np.diag(precision)[None, :]
        np.fill_diagonal(weights, 0.0)
        self.weights_ = weights.astype(np.float32)

    def _score_known(self, rows: np.ndarray) -> np.ndarray:
        columns = getattr(self, "columns_", None)  # bundles saved before max_items have every column
        if columns is None or len(columns) == len(self.item_ids_):
            return np.asarray(self.seen_[rows] @ self.weights_, dtype=np.float64)
        out = np.zeros((len(rows), len(self.item_ids_)), dtype=np.float64)
        out[:, columns] = self.seen_[rows][:, columns] @ self.weights_
        return out
