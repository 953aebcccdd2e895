"""The two offline protocols: the rolling-origin temporal backtest and RecBole's 80/10/10 random split.

Both produce an :class:`EvalResult`: per-user metric rows for the ranker and every single generator (the
baselines), list-level metrics (coverage, novelty, popularity bias) and fit times. Slices: ``warm`` and
``cold`` users, and ``long_tail`` (the same top-10 lists judged only on positives outside the head: the
most popular 20 % of the items in the history).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.config import TrainConfig
from recsys.data.load import MovieLens
from recsys.data.replay import ReplayClock
from recsys.data.split import LabelWindow, recbole_windows, temporal_window
from recsys.evaluation.bootstrap import paired_bootstrap
from recsys.features.builder import BATCH_CELLS
from recsys.metrics import (
    average_recommendation_popularity,
    catalog_coverage,
    novelty,
    per_user_metrics,
)
from recsys.parallel import thread_map
from recsys.ranking.queries import QueryFrame, fit_window, profiles_for, window_queries
from recsys.ranking.recommender import Recommender
from recsys.ranking.train import RankerQueries, WindowCache, fit_booster, train_recommender, tune_generators
from recsys.schema import K

RANKER = "ranker"


@dataclass
class EvalResult:
    protocol: str
    per_user: pd.DataFrame
    """One row per (cut, user, model): slice flags, ``activity`` (the user's interactions in the history) and
    metric@10 columns."""
    list_metrics: pd.DataFrame
    """Per model: coverage, novelty, ARP."""
    fit_seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    cut_lists: dict[int, dict] = field(default_factory=dict, repr=False)
    """Per cut, every model's top-10 lists and list statistics (what :func:`list_metrics` pools)."""
    n_items: int = 0

    def subset(self, cuts: list[int], protocol: str) -> EvalResult:
        """The same evaluation restricted to the rows and lists of ``cuts`` (fit times stay the whole run's)."""
        missing = sorted(set(cuts) - set(self.cut_lists))
        if missing:
            raise ValueError(f"cut(s) {missing} are not in this evaluation (cuts {sorted(self.cut_lists)})")
        rows = self.per_user[self.per_user["cut"].isin(cuts)].reset_index(drop=True)
        per_cut = self.info.get("per_cut", {})
        info = {**self.info, "cuts": sorted(set(cuts)), "per_cut": {w: v for w, v in per_cut.items() if w in cuts}}
        lists = {w: self.cut_lists[w] for w in sorted(set(cuts))}
        return EvalResult(protocol, rows, list_metrics(list(lists.values()), self.n_items), self.fit_seconds, info,
                          lists, self.n_items)

    def metric_columns(self) -> list[str]:
        return [c for c in self.per_user.columns if "@" in c]

    def table(self, slice_: str = "all") -> pd.DataFrame:
        """Mean metrics per model over the users of ``slice_`` (all, warm, cold, long_tail)."""
        frame = self.per_user[self.per_user["slice"] == ("long_tail" if slice_ == "long_tail" else "main")]
        if slice_ in ("warm", "cold"):
            frame = frame[frame["cold"] == (slice_ == "cold")]
        out = frame.groupby("model")[self.metric_columns()].mean()
        out["users"] = frame.groupby("model").size()
        if slice_ == "all":
            out = out.join(self.list_metrics)
            out["fit_s"] = pd.Series(self.fit_seconds)
        return out.sort_values(f"ndcg@{K}", ascending=False)

    def best_baseline(self, slice_: str = "all") -> str:
        table = self.table(slice_)
        candidates = [m for m in table.index if m != RANKER]
        return str(table.loc[candidates, f"ndcg@{K}"].idxmax())

    def gain(self, slice_: str = "all", baseline: str | None = None, metric: str = f"ndcg@{K}",
             n_resamples: int = 2000) -> dict[str, Any]:
        """Paired bootstrap of the ranker against ``baseline`` (default: the best single generator), resampling
        users: a user's rows over several cuts form one cluster."""
        if baseline is None:
            # the strongest single generator on this very slice (for cold users every generator is a
            # popularity ranking: the personalised ones fall back to recent popularity)
            baseline = self.best_baseline(slice_)
        frame = self.per_user[self.per_user["slice"] == ("long_tail" if slice_ == "long_tail" else "main")]
        if slice_ in ("warm", "cold"):
            frame = frame[frame["cold"] == (slice_ == "cold")]
        wide = frame.pivot_table(index=["cut", "key"], columns="model", values=metric)
        diff = paired_bootstrap(wide[RANKER].to_numpy(), wide[baseline].to_numpy(), n_resamples=n_resamples,
                                clusters=wide.index.get_level_values("key").to_numpy())
        return {"slice": slice_, "baseline": baseline, "metric": metric, **diff.to_dict()}


def head_items(history: pd.DataFrame, head_share: float = 0.2) -> set[int]:
    """The head: the most popular ``head_share`` of the items seen in ``history``; every other item is long tail."""
    counts = history[S.ITEM].value_counts()
    return set(counts.index[: int(np.ceil(head_share * len(counts)))].astype(int))


def evaluate_window(rec: Recommender, window: LabelWindow, users: pd.DataFrame, cut: int,
                    max_cells: int = BATCH_CELLS) -> tuple[pd.DataFrame, dict]:
    """Score the ranker and every generator of its stage 1 on one test window (users in bounded batches)."""
    ids = window.users
    top: dict[str, dict[int, Any]] = {}  # model -> user -> its top K item ids

    def tops(chunk: np.ndarray) -> dict[str, list[np.ndarray]]:
        exclude = ([window.exclude.get(int(u), np.empty(0, np.int64)).tolist() for u in chunk] if window.exclude
                   else None)
        batch = rec.candidate_batch(chunk, profiles_for(users, chunk), exclude)
        ranked = [batch.item_ids[batch.pair_col[b]] for b in rec.best(batch, rec.score_pairs(batch), K)]
        return {RANKER: ranked, **{name: batch.top_items(name, K) for name in batch.tops}}

    chunks = rec.user_batches(ids, max_cells)  # bounded memory: a batch's dense scores are users x items
    for chunk, found in zip(chunks, thread_map(tops, chunks), strict=True):
        for model, items in found.items():
            top.setdefault(model, {}).update(zip(chunk.tolist(), items, strict=True))
    truth = window.truth()
    cold = window.cold_mask(ids)
    head = head_items(window.history)
    tail_truth = {u: t - head for u, t in truth.items() if t - head}
    popularity = window.history[S.ITEM].value_counts()
    n_hist_users = window.history[S.USER].nunique()
    activity = window.history[S.USER].value_counts()
    rows, lists = [], {}
    for model, recs in top.items():
        lists[model] = list(recs.values())
        for slice_, tr in (("main", truth), ("long_tail", tail_truth)):
            if not tr:
                continue
            frame = per_user_metrics(recs, tr, K)
            frame["model"], frame["slice"], frame["cut"] = model, slice_, cut
            frame["cold"] = np.isin(frame["key"].to_numpy(), ids[cold])
            frame["activity"] = activity.reindex(frame["key"].to_numpy()).fillna(0).to_numpy(np.int64)
            rows.append(frame)
    list_stats = {m: {"novelty": novelty(v, popularity, n_hist_users, K),
                      "arp": average_recommendation_popularity(v, popularity, K)} for m, v in lists.items()}
    return pd.concat(rows, ignore_index=True), {"lists": lists, "stats": list_stats}


def evaluate_holdout(rec: Recommender, window: LabelWindow, ml: MovieLens, cut: int,
                     protocol: str = "holdout") -> EvalResult:
    """The ranker and its generators on one held-out window (weeks from ``cut`` on): the one evaluation behind
    training's report, the promotion gate and the refit (pass a model trained on weeks < ``cut`` only)."""
    per_user, lists = evaluate_window(rec, window, ml.users, cut=cut)
    return EvalResult(protocol, per_user, list_metrics([lists], len(ml.items)), {}, {"test_window": window.name})


def list_metrics(per_cut: list[dict], n_items: int) -> pd.DataFrame:
    """Coverage over every list of every cut, novelty and ARP averaged over cuts, per model."""
    models = per_cut[0]["lists"].keys()
    out = {}
    for m in models:
        all_lists = [lst for c in per_cut for lst in c["lists"][m]]
        out[m] = {"coverage": catalog_coverage(all_lists, n_items, K),
                  "novelty": float(np.mean([c["stats"][m]["novelty"] for c in per_cut])),
                  "arp": float(np.mean([c["stats"][m]["arp"] for c in per_cut]))}
    return pd.DataFrame(out).T


def run_backtest(ml: MovieLens, cfg: TrainConfig, cuts: list[int] | None = None,
                 progress: Callable[[Iterable[int]], Iterable[int]] = lambda x: x,
                 clock: ReplayClock | None = None) -> EvalResult:
    """Rolling-origin backtest: for each cut W train on weeks < W, test on [W, W + horizon); pool the users.

    ``clock`` defaults to the interactions' own (pass the raw data's when they are a subset of the weeks).
    """
    clock = clock or ReplayClock.from_interactions(ml.interactions)
    cuts = cfg.backtest.cuts() if cuts is None else cuts
    h = cfg.backtest.horizon
    bad = [w for w in cuts if w + h > clock.n_weeks]
    if bad:
        raise ValueError(f"cut week(s) {bad}: the test window would run past the last week {clock.n_weeks - 1}")
    cache = WindowCache()
    frames, per_cut, infos, fit_s = [], {}, {}, []
    gen_fit_s: list[dict[str, float]] = []
    for w in progress(cuts):
        t0 = time.perf_counter()
        result = train_recommender(ml, clock, w, cfg, cache)
        fit_s.append(time.perf_counter() - t0)
        frame, lists = evaluate_window(result.recommender, temporal_window(ml.interactions, clock, w, h), ml.users, w)
        frames.append(frame)
        per_cut[w] = lists
        infos[w] = result.info
        gen_fit_s.append(result.recommender.stage1.fit_seconds_)
    per_user = pd.concat(frames, ignore_index=True)
    fit_seconds = {RANKER: float(np.mean(fit_s)),
                   **{g: float(np.mean([f[g] for f in gen_fit_s])) for g in gen_fit_s[0]}}
    return EvalResult("temporal_backtest", per_user, list_metrics(list(per_cut.values()), len(ml.items)), fit_seconds,
                      {"cuts": cuts, "horizon": h, "per_cut": infos}, per_cut, len(ml.items))


def recbole_queries(ml: MovieLens, cfg: TrainConfig, seed: int = 2020, folds: int = 4
                    ) -> tuple[RankerQueries, LabelWindow]:
    """RecBole's split, the generators tuned on its validation part and the ranker's queries: label folds of the
    train part, the validation part to stop early on (no refit); and the test window."""
    train_folds, valid, test = recbole_windows(ml.interactions, seed, folds)
    cand_cfg, tuning = (tune_generators(valid, ml, cfg.candidates) if cfg.candidates.tune
                        else (cfg.candidates, {}))
    graded = cfg.ranker.graded_labels
    train_q = QueryFrame.concat([window_queries(fit_window(f, ml.items, ml.users, cand_cfg), graded)
                                 for f in train_folds])
    valid_q = window_queries(fit_window(valid, ml.items, ml.users, cand_cfg), graded)
    return RankerQueries(cand_cfg, tuning, [], valid, train_q, valid_q, None, {}), test


def run_recbole(ml: MovieLens, cfg: TrainConfig, seed: int = 2020, folds: int = 4) -> EvalResult:
    """RecBole's protocol: fit on 80 %, tune and stop early on 10 %, test on 10 % with train+valid masked."""
    t0 = time.perf_counter()
    queries, test = recbole_queries(ml, cfg, seed, folds)
    booster, best_iteration, blend = fit_booster(queries, cfg.ranker)
    fitted = fit_window(test, ml.items, ml.users, queries.candidates)
    rec = Recommender(fitted.stage1, fitted.features, booster, ml.users.set_index(S.USER),
                      {"blend": blend} if blend else None)
    fit_s = time.perf_counter() - t0
    frame, lists = evaluate_window(rec, test, ml.users, cut=0)
    return EvalResult("recbole", frame, list_metrics([lists], len(ml.items)),
                      {RANKER: fit_s, **fitted.stage1.fit_seconds_},
                      {"seed": seed, "tuning": queries.tuning, "best_iteration": best_iteration, "blend": blend,
                       "candidates": queries.candidates.model_dump()})
