"""Train the two-stage recommender as of a replay week.

For a cut week ``W`` with test horizon ``H``: the generators' main parameters are tuned on the validation
window ``[W-H, W)`` (fitted on weeks < W-H); the ranker learns from stacked label windows that end before the
validation window starts (``start <= W-2H``: features from before each window, labels inside it) and stops
early on the validation window, then (``refit``) is refitted with that many trees on all windows up to the
validation one; stage 1 and the features are finally fitted on everything before ``W``.
Nothing at or after week ``W`` is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.candidates.base import CandidateGenerator
from recsys.config import CandidateConfig, RankerConfig, TrainConfig
from recsys.data.load import MovieLens
from recsys.data.matrix import InteractionData
from recsys.data.replay import ReplayClock
from recsys.data.split import LabelWindow, temporal_window
from recsys.metrics import ndcg_at_k
from recsys.ranking.queries import (
    QueryFrame,
    fit_window,
    make_generators,
    profiles_for,
    users_ndcg,
    window_frame,
)
from recsys.ranking.ranker import feature_importance, predict, train_ranker
from recsys.ranking.recommender import Recommender, blended
from recsys.schema import K

log = logging.getLogger(__name__)

TUNING_GRID: dict[str, tuple[str, list[Any]]] = {
    "recent_popularity": ("pop_half_life_days", [3.0, 7.0, 14.0, 28.0, 56.0]),
    "new_user_popularity": ("new_user_half_life_days", [7.0, 14.0, 28.0, 56.0, 112.0]),
    "ease": ("ease_lambda", [50.0, 150.0, 300.0, 600.0, 1200.0]),
    "item_knn": ("knn_neighbours", [25, 50, 100, 200, 400]),
    "recent_item_knn": ("recent_items", [3, 5, 10, 20, 40]),
}


def generator_ndcg(gen: CandidateGenerator, window: LabelWindow, users: pd.DataFrame, k: int = K) -> float:
    """Mean NDCG@k of one fitted generator over the window's users."""
    truth = window.truth()
    ids = window.users
    exclude = [window.exclude.get(int(u), np.empty(0)).tolist() for u in ids] if window.exclude else None
    recs = gen.recommend_batch(ids, k, profiles_for(users, ids), exclude)
    return float(np.mean([ndcg_at_k(r.items, truth[int(u)], k) for u, r in zip(ids, recs, strict=True)]))


def tune_generators(window: LabelWindow, ml: MovieLens, cfg: CandidateConfig) -> tuple[CandidateConfig, dict]:
    """Pick each tuned generator's main parameter by NDCG@10 on ``window`` (a validation window).

    Personalised generators are scored on warm users only: for cold users they all fall back to popularity.
    """
    data = InteractionData(window.history, ml.items, ml.users, window.now)
    warm_users = window.users[~window.cold_mask(window.users)]
    warm_window = LabelWindow(window.history, window.now, window.positives[window.positives[S.USER].isin(warm_users)],
                              window.exclude, window.name)
    chosen: dict[str, Any] = {}
    report: dict[str, dict[str, float]] = {}
    for gen_name, (param, values) in TUNING_GRID.items():
        scores = {}
        for value in values:
            gen = make_generators(cfg.model_copy(update={param: value}))[gen_name].fit(data)
            target = window if gen_name in ("recent_popularity", "new_user_popularity") else warm_window
            scores[value] = generator_ndcg(gen, target, ml.users) if len(target.positives) else 0.0
        chosen[param] = max(scores, key=lambda v: scores[v])
        report[gen_name] = {str(v): round(s, 5) for v, s in scores.items()}
    return cfg.model_copy(update=chosen), report


@dataclass
class WindowCache:
    """Ranker queries of label windows, keyed by (start week, candidate config): reused across cuts."""

    frames: dict[tuple[int, str], QueryFrame] = field(default_factory=dict)

    def get(self, key: tuple[int, str], build: Callable[[], QueryFrame]) -> QueryFrame:
        if key not in self.frames:
            self.frames[key] = build()
        return self.frames[key]


@dataclass
class TrainResult:
    recommender: Recommender
    config: TrainConfig
    """The config the model was built with (the candidate generators' settings as resolved)."""
    info: dict[str, Any]
    requested: TrainConfig | None = None
    """The config asked for (what a run key hashes: it is known before training)."""

    def with_config(self, config: TrainConfig) -> TrainResult:
        """The same model recorded under another config, asked for and built (so another run key)."""
        return replace(self, config=config, requested=config)


def training_starts(as_of_week: int, cfg: TrainConfig) -> list[int]:
    """Start weeks of the stacked ranker-training label windows for a model trained as of ``as_of_week``."""
    h, r = cfg.backtest.horizon, cfg.ranker
    last = as_of_week - 2 * h
    starts = [last - i * r.window_stride for i in range(r.label_windows)]
    return [s for s in starts if s >= 1]


def check_as_of_week(as_of_week: int, clock: ReplayClock, cfg: TrainConfig) -> None:
    """Raise ValueError unless a model can be trained as of ``as_of_week``."""
    if not 1 <= as_of_week <= clock.n_weeks:
        raise ValueError(f"week {as_of_week} is out of range: the data has weeks 0..{clock.n_weeks - 1}, so a "
                         f"model can be trained as of week 1..{clock.n_weeks}")
    if not training_starts(as_of_week, cfg):
        h = cfg.backtest.horizon
        raise ValueError(f"week {as_of_week} is too early: the ranker needs {h}-week label windows and a "
                         f"validation window before it; the earliest week is {2 * h + 1}")


@dataclass
class RankerQueries:
    """What the ranker of a model trained as of a week learns from: the stacked label windows (``train``), the
    validation window it stops early on, and, with ``refit``, every window up to the validation one."""

    candidates: CandidateConfig
    """The generators' settings as tuned on the validation window."""
    tuning: dict[str, Any]
    starts: list[int]
    valid_window: LabelWindow
    train: QueryFrame
    valid: QueryFrame
    refit: QueryFrame | None
    seconds: dict[str, float]


def ranker_queries(ml: MovieLens, clock: ReplayClock, as_of_week: int, cfg: TrainConfig,
                   cache: WindowCache | None = None,
                   progress: Callable[[Iterable[int]], Iterable[int]] = lambda x: x,
                   store: Mapping[int, Path] | None = None) -> RankerQueries:
    """Tune the generators on the validation window and build the ranker's queries (see the module docstring)."""
    t0 = time.perf_counter()
    check_as_of_week(as_of_week, clock, cfg)
    h = cfg.backtest.horizon
    cache = cache or WindowCache()
    starts = training_starts(as_of_week, cfg)
    valid_window = temporal_window(ml.interactions, clock, as_of_week - h, h)
    cand_cfg, tuning = (tune_generators(valid_window, ml, cfg.candidates) if cfg.candidates.tune
                        else (cfg.candidates, {}))
    key = cand_cfg.model_dump_json()
    seconds: dict[str, float] = {"tuning": time.perf_counter() - t0}

    def add(steps: dict[str, float]) -> None:
        for step, value in steps.items():
            seconds[step] = seconds.get(step, 0.0) + value

    def queries(start: int) -> QueryFrame:
        frame, steps = window_frame(ml, clock, start, h, cand_cfg, cfg.ranker.graded_labels)
        add(steps)
        return frame

    def cached(start: int) -> QueryFrame:
        return cache.get((start, key), lambda: queries(start))

    recent = list(range(starts[0] + 1, as_of_week - h + 1)) if cfg.ranker.refit else []
    if cfg.ranker.engine == "dask":  # every label window at once, one per Dask worker (steps: summed over them)
        from recsys.ranking.distributed import build_windows

        needed = [s for s in dict.fromkeys([*starts, as_of_week - h, *recent]) if (s, key) not in cache.frames]
        t_windows = time.perf_counter()
        for start, (frame, steps) in build_windows(cfg.ranker, ml, clock, needed, h, cand_cfg,
                                                   cfg.ranker.graded_labels, store).items():
            cache.frames[(start, key)] = frame
            add(steps)
        seconds["windows_wall"] = time.perf_counter() - t_windows

    train_q = QueryFrame.concat([cached(s) for s in progress(starts)])
    valid_q = cached(as_of_week - h)
    refit_q = QueryFrame.concat([train_q] + [cached(s) for s in recent]) if cfg.ranker.refit else None
    return RankerQueries(cand_cfg, tuning, starts, valid_window, train_q, valid_q, refit_q, seconds)


BLEND_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
"""The blend weights :func:`choose_blend` tries (0: the ranker alone)."""


def choose_blend(booster: lgb.Booster, queries: RankerQueries, generator: str) -> dict[str, Any]:
    """The weight of ``generator``'s normalised score added to the ranker's that scores best (NDCG@10) on the
    validation window, with every weight's score; ties go to the smaller weight."""
    feature = f"{generator}_score_norm"
    valid = queries.valid
    if feature not in valid.feature_names:
        able = [n.removesuffix("_score_norm") for n in valid.feature_names if n.endswith("_score_norm")]
        raise ValueError(f"blend_with={generator!r}: no feature {feature} (generators with one: {able})")
    truth = queries.valid_window.truth()
    margin = predict(booster, valid.x) if len(valid.y) else np.empty(0)
    scores = {}
    for weight in BLEND_WEIGHTS:
        blend = {"feature": feature, "weight": weight}
        per_user = users_ndcg(blended(margin, valid.x, valid.feature_names, blend), valid, truth, K)
        scores[weight] = float(np.mean(list(per_user.values()))) if per_user else 0.0
    best = max(BLEND_WEIGHTS, key=lambda w: (scores[w], -w))
    return {"feature": feature, "weight": best, "validation_ndcg": {str(w): round(v, 5) for w, v in scores.items()}}


def fit_booster(queries: RankerQueries, cfg: RankerConfig) -> tuple[lgb.Booster, int, dict[str, Any] | None]:
    """The ranker: on the stacked windows, stopping early on the validation window (``cfg.early_stopping``; else
    ``n_estimators`` trees), then (``refit``) that many trees on every window up to the validation one. Returns
    the booster, its number of trees and the blend: ``cfg.blend_with``'s weight chosen on the validation window for
    the booster that serves, so only without a refit (a refitted booster has learnt from the validation window: no
    weight can be chosen for it there); else None."""
    if queries.refit is not None and not cfg.early_stopping:
        return train_ranker(queries.refit, None, cfg), cfg.n_estimators, None  # nothing needs the first fit
    booster = train_ranker(queries.train, queries.valid if cfg.early_stopping else None, cfg)
    best_iteration = booster.num_trees()
    if queries.refit is not None:
        return (train_ranker(queries.refit, None, cfg.model_copy(update={"n_estimators": best_iteration})),
                best_iteration, None)
    blend = choose_blend(booster, queries, cfg.blend_with) if cfg.blend_with else None
    return booster, best_iteration, blend


def train_recommender(ml: MovieLens, clock: ReplayClock, as_of_week: int, cfg: TrainConfig,
                      cache: WindowCache | None = None,
                      progress: Callable[[Iterable[int]], Iterable[int]] = lambda x: x,
                      store: Mapping[int, Path] | None = None) -> TrainResult:
    """Train the two-stage recommender on weeks < ``as_of_week`` (see the module docstring). ``store``: the
    validated store's file of each week of ``ml``'s interactions, which the Dask engine's workers read themselves
    instead of receiving the interactions."""
    t0 = time.perf_counter()
    queries = ranker_queries(ml, clock, as_of_week, cfg, cache, progress, store)
    cand_cfg, seconds = queries.candidates, queries.seconds
    t_fit = time.perf_counter()
    booster, best_iteration, blend = fit_booster(queries, cfg.ranker)
    fit_ranker_s = seconds["ranker"] = time.perf_counter() - t_fit
    train_q, valid_window, starts, tuning = queries.train, queries.valid_window, queries.starts, queries.tuning

    t_final = time.perf_counter()
    serving_window = LabelWindow(ml.interactions[ml.interactions[S.TS] < clock.start(as_of_week)],
                                 clock.start(as_of_week), ml.interactions.iloc[:0])
    fitted = fit_window(serving_window, ml.items, ml.users, cand_cfg, user_ids=np.empty(0, np.int64))
    seconds["final_fit"] = time.perf_counter() - t_final
    known = ml.users[ml.users[S.USER].isin(fitted.data.user_ids)].set_index(S.USER)
    final_cfg = cfg.model_copy(update={"candidates": cand_cfg})
    info = {
        "as_of_week": as_of_week,
        "trained_until": str(clock.bounds(as_of_week)[0]),
        "label_window_starts": starts,
        "validation_window": valid_window.name,
        "train_queries": len(train_q.group),
        "train_rows": len(train_q.y),
        "best_iteration": int(best_iteration),
        "refit": cfg.ranker.refit,
        "blend": blend,
        "tuning": tuning,
        "feature_importance": dict(list(feature_importance(booster).items())[:15]),
        "fit_ranker_seconds": round(fit_ranker_s, 2),
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "stage_seconds": {step: round(value, 2) for step, value in seconds.items()},
    }
    manifest = {"model": "two-stage-lambdarank", "data_hash": ml.data_hash, "as_of_week": as_of_week,
                "params": final_cfg.model_dump(mode="json"),
                **({"blend": {k: blend[k] for k in ("feature", "weight")}} if blend else {})}
    titles = dict(zip(ml.items[S.ITEM].astype(int), ml.items[S.TITLE].astype(str), strict=True))
    rec = Recommender(fitted.stage1, fitted.features, booster, known, manifest, titles)
    return TrainResult(rec, final_cfg, info, requested=cfg)
