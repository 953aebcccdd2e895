"""Ablations on the backtest's design cuts: the ranker trained without one feature group (or with other ranker
settings) at a time, every variant on the same candidates, features and labels, each variant's NDCG@10 against the
full model with a user-clustered paired bootstrap.

Per cut the queries are built once with every feature (:func:`~recsys.ranking.train.ranker_queries`, the very
windows training uses) and so are the test users' candidates; a variant only drops columns or changes the
LightGBM settings, so the full variant's ranking is the backtest's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from recsys.config import RankerConfig, TrainConfig
from recsys.data.load import MovieLens
from recsys.data.replay import ReplayClock
from recsys.data.split import temporal_window
from recsys.evaluation.bootstrap import paired_bootstrap
from recsys.evaluation.protocols import recbole_queries
from recsys.features.builder import FEATURE_GROUPS, feature_groups
from recsys.parallel import thread_map
from recsys.ranking.queries import QueryFrame, fit_window, users_ndcg, window_queries
from recsys.ranking.ranker import predict
from recsys.ranking.recommender import blended
from recsys.ranking.train import RankerQueries, WindowCache, fit_booster, ranker_queries
from recsys.schema import K

FULL = "full"


@dataclass(frozen=True)
class Variant:
    """The full model without the features of ``drop`` (group names), with ``ranker`` overrides; ``binary``: every
    positive labelled 1 (instead of the graded gains the queries were built with)."""

    drop: tuple[str, ...] = ()
    ranker: dict[str, Any] = field(default_factory=dict)
    binary: bool = False
    generator: str | None = None
    """No ranker: the candidates in this generator's order (its own top 10: a baseline on the same users)."""
    per_generator: int | None = None
    """Only the candidates within some generator's top this many (fewer candidates, in training and test)."""


@dataclass
class CutQueries:
    """One cut's ranker queries and its test users' candidates (labelled with the test positives)."""

    cut: int
    queries: RankerQueries
    test: QueryFrame
    truth: dict[int, set[int]]
    cold: set[int]


def cut_queries(ml: MovieLens, clock: ReplayClock, cut: int, cfg: TrainConfig, cache: WindowCache) -> CutQueries:
    """What every variant of the cut ``cut`` learns from and is tested on."""
    queries = ranker_queries(ml, clock, cut, cfg, cache)
    window = temporal_window(ml.interactions, clock, cut, cfg.backtest.horizon)
    fitted = fit_window(window, ml.items, ml.users, queries.candidates)
    test = window_queries(fitted, cfg.ranker.graded_labels, require_positive=False)
    cold = set(window.users[window.cold_mask(window.users)].tolist())
    return CutQueries(cut, queries, test, window.truth(), cold)


def recbole_cut(ml: MovieLens, cfg: TrainConfig) -> CutQueries:
    """RecBole's protocol as one "cut" (0): what :func:`~recsys.evaluation.protocols.run_recbole` trains and
    scores."""
    queries, test = recbole_queries(ml, cfg)
    fitted = fit_window(test, ml.items, ml.users, queries.candidates)
    test_q = window_queries(fitted, cfg.ranker.graded_labels, require_positive=False)
    return CutQueries(0, queries, test_q, test.truth(), set())


def union_rank(q: QueryFrame) -> np.ndarray:
    """Each candidate's best rank over the generators (the smallest per-generator count that proposes it)."""
    ranks = [i for i, n in enumerate(q.feature_names) if n.endswith("_rank")]
    return q.x[:, ranks].min(axis=1)


def _columns(q: QueryFrame, keep: np.ndarray, variant: Variant) -> QueryFrame:
    """``q`` with the columns ``keep``, the rows the variant keeps and its labels."""
    rows = np.ones(len(q.y), dtype=bool) if variant.per_generator is None else union_rank(q) <= variant.per_generator
    y = q.y[rows]
    y = (y > 0).astype(y.dtype) if variant.binary else y
    group = np.bincount(np.repeat(np.arange(len(q.group)), q.group)[rows], minlength=len(q.group))
    return QueryFrame(q.x[rows][:, keep], y, group[group > 0],
                      [n for n, k in zip(q.feature_names, keep, strict=True) if k], q.user[rows], q.item[rows])


def run_variant(cut: CutQueries, variant: Variant, base: RankerConfig) -> dict[int, float]:
    """Per test user of ``cut``: NDCG@10 of the ranker trained as ``variant`` says."""
    if variant.generator is not None:
        rank = cut.test.x[:, cut.test.feature_names.index(f"{variant.generator}_rank")]
        return users_ndcg(-rank.astype(np.float64), cut.test, cut.truth, K)
    groups = feature_groups(cut.test.feature_names)
    unknown = sorted(set(variant.drop) - set(groups.values()))
    if unknown:
        raise ValueError(f"unknown feature group(s) {unknown}; the groups are {sorted(set(groups.values()))}")
    keep = np.array([groups[n] not in variant.drop for n in cut.test.feature_names])
    q = cut.queries
    v = variant
    sub = RankerQueries(q.candidates, q.tuning, q.starts, q.valid_window, _columns(q.train, keep, v),
                        _columns(q.valid, keep, v), None if q.refit is None else _columns(q.refit, keep, v), q.seconds)
    booster, _, blend = fit_booster(sub, base.model_copy(update=variant.ranker))
    test = _columns(cut.test, keep, variant)
    scores = blended(predict(booster, test.x), test.x, test.feature_names, blend)
    return users_ndcg(scores, test, cut.truth, K)


def _run_seeded(cut: CutQueries, base: RankerConfig, task: tuple[str, Variant, int]) -> dict[int, float]:
    return run_variant(cut, task[1], base.model_copy(update={"seed": task[2], "num_threads": 1}))


RECALL_AT = (10, 25, 50, 100)
"""Per-generator counts at which :func:`candidate_recall` measures the union's recall."""


def candidate_recall(cut: CutQueries, at: tuple[int, ...] = RECALL_AT) -> pd.DataFrame:
    """Per test user of ``cut`` and count K: the share of their test positives among the union of every
    generator's top K (the most a ranker of those candidates can find), and the union's size."""
    ranks = union_rank(cut.test)
    hit = np.array([item in cut.truth.get(int(user), ()) for user, item in zip(cut.test.user, cut.test.item,
                                                                                strict=True)])
    rows = []
    for k in at:
        inside = ranks <= k
        found = pd.Series(hit & inside).groupby(cut.test.user).sum()
        size = pd.Series(inside).groupby(cut.test.user).sum()
        for user, truth in cut.truth.items():
            rows.append((cut.cut, user, k, found.get(user, 0) / len(truth), int(size.get(user, 0)),
                         user in cut.cold))
    return pd.DataFrame(rows, columns=["cut", "key", "k", "recall", "candidates", "cold"])


@dataclass
class AblationResult:
    per_user: pd.DataFrame
    """Per (cut, test user, variant): NDCG@10 and whether the user is cold."""
    recall: pd.DataFrame
    """Per (cut, test user, K): the candidate union's recall and size (:func:`candidate_recall`)."""


def ablation(ml: MovieLens, clock: ReplayClock, cuts: list[int], cfg: TrainConfig, variants: dict[str, Variant],
             progress: Callable[[Iterable[int]], Iterable[int]] = lambda x: x,
             seeds: tuple[int, ...] | None = None) -> AblationResult:
    """Every variant (and ``full``, always run) on each cut; cut 0 stands for RecBole's protocol
    (:func:`recbole_cut`). With ``seeds`` each variant is trained once per LightGBM seed and a user's NDCG@10 is
    the mean over them: the trees' own randomness (bagging, feature sampling) moves a ranker's NDCG by as much as
    a feature group does, and the bootstrap only resamples users. None: the config's seed alone."""
    known = {*FEATURE_GROUPS, "generators"}
    for name, variant in variants.items():
        if set(variant.drop) - known:
            raise ValueError(f"variant {name!r}: unknown feature group(s) {sorted(set(variant.drop) - known)}; "
                             f"the groups are {sorted(known)}")
    cache = WindowCache()
    rows, recall = [], []
    for w in progress(cuts):
        cut = recbole_cut(ml, cfg) if w == 0 else cut_queries(ml, clock, w, cfg, cache)
        recall.append(candidate_recall(cut))
        tasks = [(name, variant, seed) for name, variant in {FULL: Variant(), **variants}.items()
                 for seed in (seeds or (cfg.ranker.seed,))]
        # one LightGBM thread per fit and the fits on the process's CPUs (LightGBM releases the GIL)
        done = thread_map(partial(_run_seeded, cut, cfg.ranker), tasks)
        runs: dict[str, list[dict[int, float]]] = {}
        for (name, _, _), result in zip(tasks, done, strict=True):
            runs.setdefault(name, []).append(result)
        for name, per_seed in runs.items():
            for user in per_seed[0]:
                rows.append((w, user, name, float(np.mean([r[user] for r in per_seed])), user in cut.cold))
    return AblationResult(pd.DataFrame(rows, columns=["cut", "key", "variant", f"ndcg@{K}", "cold"]),
                          pd.concat(recall, ignore_index=True))


def recall_table(recall: pd.DataFrame) -> pd.DataFrame:
    """Mean candidate recall and union size per K, for all, warm and cold users."""
    out = []
    for slice_, frame in (("all", recall), ("warm", recall[~recall["cold"]]), ("cold", recall[recall["cold"]])):
        for k, part in frame.groupby("k"):
            out.append({"slice": slice_, "k": int(k), "recall": float(part["recall"].mean()),
                        "candidates": float(part["candidates"].mean()), "rows": len(part)})
    return pd.DataFrame(out)


def ablation_table(per_user: pd.DataFrame, n_resamples: int = 2000) -> pd.DataFrame:
    """Per variant and slice (all, warm, cold): mean NDCG@10, and the full model's gain over the variant with its
    user-clustered 95 % CI (a positive gain: what the variant removed pays)."""
    metric = f"ndcg@{K}"
    out = []
    for slice_, frame in (("all", per_user), ("warm", per_user[~per_user["cold"]]),
                          ("cold", per_user[per_user["cold"]])):
        wide = frame.pivot_table(index=["cut", "key"], columns="variant", values=metric)
        users = wide.index.get_level_values("key").to_numpy()
        for variant in wide.columns:
            row: dict[str, Any] = {"variant": variant, "slice": slice_, metric: float(wide[variant].mean()),
                                   "rows": len(wide)}
            if variant != FULL and len(np.unique(users)) >= 2:
                diff = paired_bootstrap(wide[FULL].to_numpy(), wide[variant].to_numpy(), n_resamples=n_resamples,
                                        clusters=users)
                row |= {"gain": diff.diff, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                        "rel_gain": diff.rel_gain}
            out.append(row)
    return pd.DataFrame(out)
