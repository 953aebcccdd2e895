"""Top-k ranking metrics with binary relevance, following RecBole 1.2 definitions.

Pure functions below every layer that ranks: training tunes its generators with them, the evaluation protocols
and the gate report them.

All per-list metrics take a ranked list of item ids (best first), the set of relevant
(held-out positive) item ids and a cutoff ``k``. Beyond-accuracy metrics operate on the
collection of every user's top-k list.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

from recsys.schema import K

MetricFn = Callable[[Sequence[int] | np.ndarray, Collection[int], int], float]
# A TypeVar rather than Hashable: Mapping keys are invariant, so dict[str, ...] would not match.
Key = TypeVar("Key", bound=Hashable)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _as_list(ranked: Sequence[int] | np.ndarray) -> list[int]:
    if isinstance(ranked, np.ndarray):
        if ranked.ndim != 1:
            raise ValueError(f"ranked must be 1-D, got shape {ranked.shape}")
        return list(ranked.tolist())
    return list(ranked)


def _hits(ranked: Sequence[int] | np.ndarray, relevant: Collection[int], k: int) -> tuple[np.ndarray, int]:
    """Validate inputs; return the boolean hit vector of the top-k and the number of relevant items."""
    _check_k(k)
    items = _as_list(ranked)
    if len(set(items)) != len(items):
        raise ValueError("ranked contains duplicate items")
    rel = set(relevant)
    if not rel:
        # RecBole drops users without test positives; scoring them would be undefined (0/0).
        raise ValueError("relevant must be non-empty")
    hits = np.fromiter((item in rel for item in items[:k]), dtype=bool, count=min(len(items), k))
    return hits, len(rel)


def _ndcg(hits: np.ndarray, n_rel: int, k: int) -> float:
    ranks = np.arange(1, hits.size + 1)
    dcg = float(np.sum(hits / np.log2(ranks + 1)))
    ideal = np.arange(1, min(n_rel, k) + 1)
    idcg = float(np.sum(1.0 / np.log2(ideal + 1)))
    return dcg / idcg


def _recall(hits: np.ndarray, n_rel: int, k: int) -> float:
    return float(hits.sum()) / n_rel


def _precision(hits: np.ndarray, n_rel: int, k: int) -> float:
    # Divide by k, not len(ranked): a short list is penalised like RecBole's padded top-k.
    return float(hits.sum()) / k


def _map(hits: np.ndarray, n_rel: int, k: int) -> float:
    precision_at_i = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(np.sum(precision_at_i[hits])) / min(n_rel, k)


def _mrr(hits: np.ndarray, n_rel: int, k: int) -> float:
    positions = np.flatnonzero(hits)
    return 1.0 / (positions[0] + 1) if positions.size else 0.0


def _hit_rate(hits: np.ndarray, n_rel: int, k: int) -> float:
    return 1.0 if hits.any() else 0.0


def ndcg_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int], k: int = K) -> float:
    """NDCG@k: DCG with 1/log2(rank+1) discounts over an ideal DCG of min(|relevant|, k) hits."""
    return _ndcg(*_hits(ranked, relevant, k), k)


def recall_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int], k: int = K) -> float:
    """Recall@k: relevant items in the top-k divided by the number of relevant items."""
    return _recall(*_hits(ranked, relevant, k), k)


def precision_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int], k: int = K) -> float:
    """Precision@k: relevant items in the top-k divided by k."""
    return _precision(*_hits(ranked, relevant, k), k)


def map_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int], k: int = K) -> float:
    """MAP@k: sum of precision@i over hit positions i, divided by min(|relevant|, k)."""
    return _map(*_hits(ranked, relevant, k), k)


def mrr_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int], k: int = K) -> float:
    """MRR@k: reciprocal rank of the first relevant item in the top-k, 0 if there is none."""
    return _mrr(*_hits(ranked, relevant, k), k)


def hit_rate_at_k(ranked: Sequence[int] | np.ndarray, relevant: Collection[int], k: int = K) -> float:
    """HitRate@k: 1 if any relevant item appears in the top-k, else 0."""
    return _hit_rate(*_hits(ranked, relevant, k), k)


METRICS: dict[str, MetricFn] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "map": map_at_k,
    "mrr": mrr_at_k,
    "hit_rate": hit_rate_at_k,
    "precision": precision_at_k,
}

# Same order as METRICS; lets per_user_metrics validate and scan each list once.
_FROM_HITS: dict[str, Callable[[np.ndarray, int, int], float]] = {
    "ndcg": _ndcg,
    "recall": _recall,
    "map": _map,
    "mrr": _mrr,
    "hit_rate": _hit_rate,
    "precision": _precision,
}


def query_ndcg(scores: np.ndarray, labels: np.ndarray, group: np.ndarray, k: int = K) -> float:
    """Mean NDCG@k over ranker queries (rows in query order, ``group`` rows per query): each query's rows ordered by
    ``scores``, its rows with a label > 0 relevant; queries without one are left out."""
    out, start = [], 0
    for size in np.asarray(group, dtype=np.int64):
        s, y = scores[start:start + size], labels[start:start + size]
        start += size
        relevant = set(np.flatnonzero(y > 0).tolist())
        if relevant:
            out.append(ndcg_at_k(np.argsort(-s, kind="stable").tolist(), relevant, k))
    return float(np.mean(out)) if out else float("nan")


def per_user_metrics(
    recs: Mapping[Key, Sequence[int]],
    truth: Mapping[Key, Collection[int]],
    k: int = K,
) -> pd.DataFrame:
    """Compute every metric in METRICS for each key of ``truth``.

    Returns a DataFrame with a ``key`` column and one ``f"{name}@{k}"`` column per metric.
    Keys absent from ``recs`` are scored as an empty recommendation list (all zeros).
    Raises ValueError if a key has an empty relevant set.
    """
    _check_k(k)
    columns = [f"{name}@{k}" for name in _FROM_HITS]
    rows: list[list[float]] = []
    for key, relevant in truth.items():
        try:
            hits, n_rel = _hits(recs.get(key, []), relevant, k)
        except ValueError as exc:
            raise ValueError(f"key {key!r}: {exc}") from exc
        rows.append([fn(hits, n_rel, k) for fn in _FROM_HITS.values()])
    frame = pd.DataFrame(rows, columns=columns, dtype=float)
    frame.insert(0, "key", list(truth.keys()))
    return frame


def _top_k_lists(recs_lists: Iterable[Sequence[int]], k: int) -> list[list[int]]:
    _check_k(k)
    return [_as_list(r)[:k] for r in recs_lists]


def catalog_coverage(recs_lists: Iterable[Sequence[int]], n_catalog_items: int, k: int = K) -> float:
    """Share of the catalog that appears in at least one user's top-k list."""
    if n_catalog_items < 1:
        raise ValueError(f"n_catalog_items must be >= 1, got {n_catalog_items}")
    distinct = {item for top in _top_k_lists(recs_lists, k) for item in top}
    return len(distinct) / n_catalog_items


def _per_user_mean(lists: list[list[int]], value: pd.Series, default: float) -> float:
    """Average item values within each non-empty list, then across lists (RecBole's convention)."""
    lists = [top for top in lists if top]
    if not lists:
        raise ValueError("no recommended items to evaluate")
    flat = pd.Series([item for top in lists for item in top])
    values = flat.map(value).fillna(default).to_numpy(dtype=float)
    lengths = np.array([len(top) for top in lists])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return float(np.mean(np.add.reduceat(values, starts) / lengths))


def _as_series(item_popularity: Mapping[int, float] | pd.Series) -> pd.Series:
    if isinstance(item_popularity, pd.Series):
        return item_popularity.astype(float)
    return pd.Series(dict(item_popularity), dtype=float)


def novelty(
    recs_lists: Iterable[Sequence[int]],
    item_popularity: Mapping[int, float] | pd.Series,
    n_users: int,
    k: int = K,
) -> float:
    """Mean self-information -log2(pop(i) / n_users) of recommended top-k items.

    ``item_popularity`` holds interaction (user) counts per item; items missing from it, or with
    a count below 1, are given a count of 1 so that their self-information stays finite.
    Averaged within each user's list, then across users.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    pop = _as_series(item_popularity).clip(lower=1.0)
    self_information = -np.log2(pop / n_users)
    return _per_user_mean(_top_k_lists(recs_lists, k), self_information, -np.log2(1.0 / n_users))


def average_recommendation_popularity(
    recs_lists: Iterable[Sequence[int]],
    item_popularity: Mapping[int, float] | pd.Series,
    k: int = K,
) -> float:
    """ARP: mean popularity count of recommended top-k items (unknown items count 0).

    Averaged within each user's list, then across users.
    """
    return _per_user_mean(_top_k_lists(recs_lists, k), _as_series(item_popularity), 0.0)


def summarize(per_user: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Average every metric column (names containing "@") and count users.

    Without ``by`` the result has a single row indexed "all". With ``by`` there is one row per
    group value (index named ``by``, missing values kept as their own group) plus an "all" row.
    """
    metric_cols = [c for c in per_user.columns if "@" in str(c)]
    if not metric_cols:
        raise ValueError("per_user has no metric columns (names containing '@')")
    overall = per_user[metric_cols].mean().to_frame("all").T
    overall["users"] = len(per_user)
    if by is None:
        return overall
    if by not in per_user.columns:
        raise KeyError(by)
    grouped = per_user.groupby(by, dropna=False, sort=True)
    groups = grouped[metric_cols].mean()
    groups["users"] = grouped.size()
    result = pd.concat([groups, overall])
    result.index.name = by
    result["users"] = result["users"].astype(int)
    return result
