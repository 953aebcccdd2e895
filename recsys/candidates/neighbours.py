"""Item-based collaborative generators: cosine item-kNN (whole history or most recent items) and EASE."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.candidates.base import CandidateGenerator, TopItems
from recsys.data.matrix import InteractionData
from recsys.parallel import thread_map


def cosine_knn(x: sp.csr_matrix, neighbours: int, shrink: float, block: int | None = None,
               max_items: int | None = None) -> sp.csr_matrix:
    """Item x item cosine similarity (with shrinkage), keeping the top ``neighbours`` per item column.

    Built ``block`` columns at a time (default: as many as keep one block near 512 MB, at most 2,048), each block
    as rows (the similarity is symmetric), so the top-k partition runs along contiguous memory, one block per
    thread (:func:`~recsys.parallel.thread_map`); memory is items x block per thread, not items x items, and the
    result is the same for any block size. With ``max_items`` only the columns
    of the ``max_items`` most popular items are built (the others stay empty): the cost is items x max_items
    instead of items squared, and item-kNN then proposes only those items.
    """
    x = x.tocsc().astype(np.float64)
    n = x.shape[1]
    columns = np.arange(n)
    if max_items is not None and max_items < n:
        columns = np.sort(np.argsort(-np.diff(x.indptr), kind="stable")[:max_items])
    block = block or int(np.clip(2**26 // max(n, 1), 64, 2048))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    k = min(neighbours, n - 1)

    def part(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kept (row, column, similarity) of the columns ``c``."""
        sim = (x[:, c].T.tocsr() @ x).toarray()  # row r: column c[r] of the similarity
        sim /= np.outer(norms[c], norms) + shrink + 1e-12
        sim[np.arange(len(c)), c] = 0.0
        keep = sim != 0
        if 0 < k < n - 1:
            cut = np.partition(sim, n - k, axis=1)[:, n - k]  # each column's k-th largest
            keep &= sim >= cut[:, None]
        r, j = np.nonzero(keep)
        return j, c[r], sim[r, j].astype(np.float32)

    parts = thread_map(part, [columns[lo:lo + block] for lo in range(0, len(columns), block)])
    if not parts:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols, vals = zip(*parts, strict=True)
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n),
                        dtype=np.float32)
    out.sort_indices()
    return out


def latest_items(last_ts: sp.csr_matrix, n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's items, latest first, as (row, column, position) triples (position 0 = the latest; ties by
    column); with ``n`` only the first ``n`` positions per row."""
    csr = last_ts.tocsr()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    order = np.lexsort((csr.indices, -csr.data, rows))
    pos = np.arange(len(order)) - csr.indptr[rows[order]]
    keep = slice(None) if n is None else pos < n
    return rows[order][keep], csr.indices[order][keep], pos[keep]


class ItemKNN(CandidateGenerator):
    """score(u, j) = sum over the user's items i of sim(i, j), sim = cosine on the implicit matrix."""

    name = "item_knn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0, max_items: int | None = None) -> None:
        self.neighbours = neighbours
        self.shrink = shrink
        self.max_items = max_items
        """Similarities towards only this many most popular items (:func:`cosine_knn`); None: every item."""

    def get_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"neighbours": self.neighbours, "shrink": self.shrink}
        return params if self.max_items is None else {**params, "max_items": self.max_items}

    _state_names: ClassVar[tuple[str, ...]] = ("sim_",)

    def _fit(self, data: InteractionData) -> None:
        self.sim_ = data.derived(("cosine_knn", self.neighbours, self.shrink, self.max_items),
                                 lambda: cosine_knn(data.matrix, self.neighbours, self.shrink,
                                                    max_items=self.max_items))

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
                 decay: float = 0.8, max_items: int | None = None) -> None:
        super().__init__(neighbours, shrink, max_items)
        self.recent_items = recent_items
        self.decay = decay

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        max_items = params.pop("max_items", None)
        params |= {"recent_items": self.recent_items, "decay": self.decay}
        return params if max_items is None else {**params, "max_items": max_items}

    _state_names: ClassVar[tuple[str, ...]] = ("sim_", "recent_")

    def _fit(self, data: InteractionData) -> None:
        super()._fit(data)
        rows, cols, pos = latest_items(data.last_ts, self.recent_items)
        self.recent_ = sp.csr_matrix((self.decay ** pos, (rows, cols)), shape=data.last_ts.shape, dtype=np.float32)

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

    def _top_known(self, rows: np.ndarray, blocked: sp.csr_matrix, depth: int) -> TopItems:
        columns = getattr(self, "columns_", None)
        if columns is None or len(columns) == len(self.item_ids_):
            return super()._top_known(rows, blocked, depth)
        # bounded: users x max_items scores, every other item at 0
        return TopItems.of_columns(self.seen_[rows][:, columns] @ self.weights_, columns, len(self.item_ids_),
                                   blocked, depth)
