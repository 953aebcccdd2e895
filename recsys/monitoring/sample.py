"""The two bounded, seeded reductions the reference and every window go through, in the same way.

Served rows are clustered: a request is ``n`` rows of one user, and a user who rates in a burst makes dozens of
requests in minutes, all with the same feature rows (the bundle answers a known user the same way each time).
:func:`cap_per_user` keeps at most ``per_user`` requests of each user, so a window weighs its users about alike
instead of being one or two bursts; :func:`bounded_sample` then keeps at most ``max_rows`` rows. Both are
deterministic for a given input order and seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys import schema as S

REQUEST = "request_id"


def cap_per_user(frame: pd.DataFrame, per_user: int, seed: int, request_col: str = REQUEST,
                 user_col: str = S.USER) -> pd.DataFrame:
    """The rows of at most ``per_user`` requests per user (a seeded choice among each user's requests)."""
    if per_user < 1:
        raise ValueError(f"per_user must be >= 1, got {per_user}")
    if frame.empty:
        return frame
    requests = frame[[request_col, user_col]].drop_duplicates(request_col)
    users = requests[user_col].to_numpy()
    order = np.lexsort((np.random.default_rng(seed).random(len(requests)), users))
    grouped = users[order]
    first = np.r_[True, grouped[1:] != grouped[:-1]]
    position = np.arange(len(order)) - np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    if (position < per_user).all():
        return frame
    kept = requests[request_col].to_numpy()[order[position < per_user]]
    return frame[frame[request_col].isin(kept)]


def bounded_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows, a seeded sample without replacement, in their original order."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if len(frame) <= max_rows:
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[rows]
