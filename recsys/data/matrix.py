"""The interaction matrix a model is fitted on: id maps, a sparse user x item matrix and the as-of time."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import schema as S

T = TypeVar("T")


@dataclass
class InteractionData:
    """Interactions seen up to ``now`` over a fixed item catalog, plus user profiles.

    Rows of ``matrix`` follow ``user_ids`` (users with at least one interaction), columns follow ``item_ids``
    (the whole catalog, so every model of a run shares one item index).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    now: int
    user_ids: np.ndarray = field(init=False)
    item_ids: np.ndarray = field(init=False)
    matrix: sp.csr_matrix = field(init=False)
    last_ts: sp.csr_matrix = field(init=False)
    _derived: dict[Hashable, Any] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.interactions) and int(self.interactions[S.TS].max()) >= self.now:
            raise ValueError("interactions at or after `now` would leak the future into the model")
        self.item_ids = np.sort(self.items[S.ITEM].to_numpy(np.int64))
        self.user_ids = np.sort(self.interactions[S.USER].unique().astype(np.int64))
        rows = np.searchsorted(self.user_ids, self.interactions[S.USER].to_numpy())
        cols = np.searchsorted(self.item_ids, self.interactions[S.ITEM].to_numpy())
        shape = (len(self.user_ids), len(self.item_ids))
        # repeated (user, item) pairs count once; keep the latest timestamp
        pairs = pd.DataFrame({"r": rows, "c": cols, "t": self.interactions[S.TS].to_numpy(np.float64)})
        pairs = pairs.groupby(["r", "c"], as_index=False, sort=False).t.max()
        r, c = pairs.r.to_numpy(), pairs.c.to_numpy()
        self.matrix = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=shape)
        self.last_ts = sp.csr_matrix((pairs.t.to_numpy(), (r, c)), shape=shape)

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``, computed once per data set and ``key``: what several generators fitted on the same data
        share (item-kNN's and session item-kNN's similarity matrix, whatever the other parameters tuned)."""
        if key not in self._derived:
            self._derived[key] = make()
        return cast(T, self._derived[key])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_rows(self, user_ids: np.ndarray | list[int]) -> np.ndarray:
        """Row index of each user, -1 for users without history."""
        ids = np.asarray(user_ids, dtype=np.int64)
        pos = np.searchsorted(self.user_ids, ids)
        pos = np.clip(pos, 0, max(len(self.user_ids) - 1, 0))
        if not len(self.user_ids):
            return np.full(len(ids), -1)
        return np.where(self.user_ids[pos] == ids, pos, -1)

    def item_cols(self, item_ids: np.ndarray | list[int]) -> np.ndarray:
        """Column index of each item, -1 for items outside the catalog."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.item_ids, ids), 0, len(self.item_ids) - 1)
        return np.where(self.item_ids[pos] == ids, pos, -1)
