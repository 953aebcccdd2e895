"""Candidate union and ranker features, shared by training, evaluation and serving (one path, no skew).

:class:`Stage1` holds the fitted generators and proposes, for each user, the union of every generator's top-k.
:class:`FeatureBuilder` turns (user, candidate item) pairs into a float32 matrix: each generator's score and
rank, item popularity (overall, 7 and 28 days), trend, item age, rating mean, user activity and recency,
demographics, genre affinity and demographic fit. Everything is computed from data before ``now``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.candidates.base import CandidateGenerator, exact_top
from recsys.candidates.neighbours import cosine_knn
from recsys.candidates.popularity import age_bucket
from recsys.candidates.sessions import latest_matrix, pair_values
from recsys.config import CandidateConfig
from recsys.data.load import genre_names
from recsys.data.matrix import InteractionData
from recsys.profiles import ProfileBlock

DAY = 86400.0
BATCH_CELLS = 2**22
"""Users x items cells of one candidate batch in an offline pass (label windows, evaluation, the drift reference):
each generator scores, masks and ranks a dense batch, so memory is about 7 generators x 20 bytes x this (560 MB),
whatever the number of users."""


def user_chunks(user_ids: np.ndarray, n_items: int, max_cells: int = BATCH_CELLS) -> list[np.ndarray]:
    """``user_ids`` cut into batches of at most ``max_cells`` users x ``n_items`` cells (one, possibly empty, for a
    small catalog)."""
    ids = np.asarray(user_ids, dtype=np.int64)
    size = max(1, max_cells // max(n_items, 1))
    return [ids[lo:lo + size] for lo in range(0, max(len(ids), 1), size)]
PERSONAL_SCORES = ("ease", "item_knn", "recent_item_knn", "als", "covisit")


@dataclass
class CandidateBatch:
    """Candidates of a batch of users as flat (row, item column) pairs, with every generator's score and rank at
    each pair and its own top items."""

    user_ids: np.ndarray
    profiles: ProfileBlock
    pair_user: np.ndarray
    """Index into ``user_ids`` of each pair (sorted, then by column)."""
    pair_col: np.ndarray
    """Catalog column of each pair."""
    scores: dict[str, np.ndarray]
    """Generator -> its score at each pair."""
    ranks: dict[str, np.ndarray]
    """Generator -> its rank (1 = best) of each pair's item for the pair's user."""
    best: dict[str, np.ndarray]
    """Generator -> each user's best score over the items not blocked (-inf when none is left)."""
    tops: dict[str, np.ndarray]
    """Generator -> (users, per_generator) its top columns for each user, best first; -1 pads."""
    item_ids: np.ndarray

    @property
    def items(self) -> np.ndarray:
        return self.item_ids[self.pair_col]

    def top_items(self, name: str, k: int) -> list[np.ndarray]:
        """Generator ``name``'s top ``k`` item ids for each user (``k`` at most its per_generator)."""
        top = self.tops[name]
        if k > top.shape[1]:
            raise ValueError(f"top {k} of {name}: the batch keeps its top {top.shape[1]}")
        return [self.item_ids[row[row >= 0]] for row in top[:, :k]]


class Stage1:
    """The fitted candidate generators, and how many candidates each one proposes."""

    def __init__(self, generators: dict[str, CandidateGenerator], per_generator: int,
                 rank_depth: int | None = None) -> None:
        self.generators = generators
        self.per_generator = per_generator
        self.rank_depth = rank_depth
        """Rank only the top ``rank_depth`` items of each generator exactly (the rest share rank depth + 1), from
        each generator's bounded answer (:meth:`CandidateGenerator.top`): the cost follows users x depth instead of
        users x catalog. None: every item's exact rank, from the dense scores."""
        self._cold: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        """Per generator that ignores profiles: the scores, ranks and top columns of a user without history."""

    def fit(self, data: InteractionData) -> Stage1:
        self.fit_seconds_: dict[str, float] = {}
        self._cold = {}
        for name, gen in self.generators.items():
            t0 = time.perf_counter()
            gen.fit(data)
            self.fit_seconds_[name] = time.perf_counter() - t0
        return self

    def _depth(self, n_items: int) -> int | None:
        """How deep ranks are exact, when that is less than the catalog (else None: every rank)."""
        if self.rank_depth is None or max(self.rank_depth, self.per_generator) >= n_items:
            return None
        return max(self.rank_depth, self.per_generator)

    def _ranked(self, masked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rank of every item, 1 = best; the top ``per_generator`` columns; whether each of those is finite)."""
        n_items = masked.shape[1]
        depth = self._depth(n_items)
        if depth is not None and len(masked):
            order = exact_top(masked, depth)
            rank = np.full(masked.shape, depth + 1, dtype=np.float32)
            np.put_along_axis(rank, order, np.arange(1, depth + 1, dtype=np.float32)[None, :], axis=1)
        else:
            order = np.argsort(-masked, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(1, n_items + 1)[None, :], axis=1)
            rank = rank.astype(np.float32)
        top = order[:, :min(self.per_generator, n_items)]
        return rank, top, np.isfinite(np.take_along_axis(masked, top, axis=1))

    def _cold_rows(self, name: str, gen: CandidateGenerator) -> tuple[np.ndarray, ...]:
        if name not in self._cold:  # computed once per fitted generator (a race only computes it twice)
            row = gen.cold_scores()[None, :]
            self._cold[name] = (row, *self._ranked(row))
        return self._cold[name]

    def candidates(self, user_ids: np.ndarray, profiles: ProfileBlock | pd.DataFrame | None,
                   exclude: list[list[int]] | None = None, *, dense: bool = False) -> CandidateBatch:
        """The union of every generator's top ``per_generator`` unseen, non-excluded items per user.

        With a rank depth the batch comes from each generator's bounded answer; ``dense`` builds it from the dense
        scores instead, the reference the bounded path equals (tests, ``benchmarks/candidates.py``)."""
        ids = np.asarray(user_ids, dtype=np.int64)
        profiles = ProfileBlock.of(profiles, len(ids))
        any_gen = next(iter(self.generators.values()))
        depth = self._depth(len(any_gen.item_ids_))
        if depth is not None and not dense:
            return self._bounded_candidates(ids, profiles, exclude, depth)
        return self._dense_candidates(ids, profiles, exclude)

    def _bounded_candidates(self, ids: np.ndarray, profiles: ProfileBlock, exclude: list[list[int]] | None,
                            depth: int) -> CandidateBatch:
        """:meth:`candidates` from each generator's top ``depth`` and its scores at the union's pairs."""
        any_gen = next(iter(self.generators.values()))
        n_items = len(any_gen.item_ids_)
        blocked = any_gen.blocked(ids, exclude)
        found = {name: gen.top(ids, profiles, blocked, depth) for name, gen in self.generators.items()}
        union = np.zeros((len(ids), n_items), dtype=bool)
        for top in found.values():
            r, j = np.nonzero(top.cols[:, :self.per_generator] >= 0)
            union[r, top.cols[r, j]] = True
        pair_user, pair_col = np.nonzero(union)
        codes = pair_user * n_items + pair_col  # sorted: np.nonzero is row-major
        scores, ranks, best, tops = {}, {}, {}, {}
        for name, top in found.items():
            cols = top.cols
            r, j = np.nonzero(cols >= 0)
            at = np.searchsorted(codes, r * n_items + cols[r, j])
            ok = at < len(codes)
            ok[ok] = codes[at[ok]] == (r * n_items + cols[r, j])[ok]
            ranks[name] = np.full(len(codes), depth + 1, dtype=np.float32)
            ranks[name][at[ok]] = j[ok] + 1
            scores[name] = top.score_at(pair_user, pair_col)
            best[name] = top.vals[:, 0]
            tops[name] = cols[:, :self.per_generator]
        return CandidateBatch(ids, profiles, pair_user, pair_col, scores, ranks, best, tops, any_gen.item_ids_)

    def _dense_candidates(self, ids: np.ndarray, profiles: ProfileBlock, exclude: list[list[int]] | None
                          ) -> CandidateBatch:
        """:meth:`candidates` from every generator's dense scores over the catalog."""
        any_gen = next(iter(self.generators.values()))
        n_items = len(any_gen.item_ids_)
        # Users without history have seen nothing, so without exclusions nothing is blocked, and a generator that
        # ignores profiles scores them all alike: its ranking of such a user is computed once (the cold-start
        # request path then ranks only the profile-aware generators).
        cold = not any(exclude or []) and not (any_gen.user_rows(ids) >= 0).any()
        block_r = block_c = None
        if not cold:
            block_r, block_c = any_gen.blocked(ids, exclude).nonzero()
        union = np.zeros((len(ids), n_items), dtype=bool)
        dense: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for name, gen in self.generators.items():
            if cold and not gen.profile_aware:
                shape = (len(ids), n_items)
                row, rank_row, top_row, finite_row = self._cold_rows(name, gen)
                masked, rank = np.broadcast_to(row, shape), np.broadcast_to(rank_row, shape)
                top = np.broadcast_to(top_row, (len(ids), top_row.shape[1]))
                finite = np.broadcast_to(finite_row, top.shape)
            else:
                masked = gen.score(ids, profiles)  # a fresh array: masked in place
                if block_r is not None:
                    masked[block_r, block_c] = -np.inf
                rank, top, finite = self._ranked(masked)
            np.put_along_axis(union, top, finite | np.take_along_axis(union, top, axis=1), axis=1)
            dense[name] = masked, rank, np.where(finite, top, -1)
        pair_user, pair_col = np.nonzero(union)
        scores, ranks, best, tops = {}, {}, {}, {}
        for name, (masked, rank, top) in dense.items():
            scores[name], ranks[name] = masked[pair_user, pair_col], rank[pair_user, pair_col]
            best[name] = np.max(np.where(np.isfinite(masked), masked, -np.inf), axis=1, initial=-np.inf)
            tops[name] = top
        return CandidateBatch(ids, profiles, pair_user, pair_col, scores, ranks, best, tops, any_gen.item_ids_)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"per_generator": self.per_generator, "generators": list(self.generators)}
        if self.rank_depth is not None:  # bundles without it keep their exact files
            meta["rank_depth"] = self.rank_depth
        (path / "stage1.json").write_text(json.dumps(meta))
        for name, gen in self.generators.items():
            gen.save(path / name)

    @classmethod
    def load(cls, path: Path) -> Stage1:
        meta = json.loads((path / "stage1.json").read_text())
        gens = {name: CandidateGenerator.load(path / name) for name in meta["generators"]}
        return cls(gens, meta["per_generator"], meta.get("rank_depth"))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full_like(a, np.nan, dtype=np.float64), where=b != 0)


FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "item_popularity": ("item_pop", "item_pop_log", "item_pop_7d", "item_pop_28d", "item_pop_3d"),
    "trend": ("item_trend", "item_velocity"),
    "item_age": ("item_age_years", "item_days_since_first", "item_days_since_last"),
    "item_quality": ("item_mean_rating",),
    "user_activity": ("user_n", "user_n_28d", "user_days_since_last", "user_days_since_first", "user_mean_rating",
                      "user_mainstream", "user_is_cold"),
    "demographics": ("age", "gender_f", "occupation", "zip_region", "age_gap", "gender_fit", "item_female_share",
                     "item_rater_age"),
    "genre": ("genre_affinity", "genre_share"),
    "genre_recent": ("genre_recent",),
    "sequence": ("seq_sim_last", "seq_sim_max", "seq_sim_mean"),
    "covisit": ("covisit_score", "covisit_rank", "covisit_score_norm"),
    "demo_cf": ("demo_lift_age", "demo_lift_gender", "demo_lift_occupation", "demo_lift_region", "demo_lift"),
}
"""The ablation's feature groups (:func:`feature_groups`); every generator's own score and rank columns form the
group ``generators``, except the co-visitation generator's (when it is on), which form ``covisit``."""


def feature_groups(names: list[str]) -> dict[str, str]:
    """The group of each feature name (:data:`FEATURE_GROUPS`, else ``generators``)."""
    group_of = {n: g for g, ns in FEATURE_GROUPS.items() for n in ns}
    return {n: group_of.get(n, "generators") for n in names}


DEMO_ATTRIBUTES = ("age", "gender", "occupation", "region")
"""The profile attributes of the demographic collaborative-filtering features (``demo_lift_*``)."""


class FeatureBuilder:
    """Per-item and per-user statistics fitted on the history, joined onto candidate pairs."""

    def __init__(self, neighbours: int = 100, shrink: float = 10.0, max_items: int | None = None,
                 last_items: int = 5, genre_half_life_days: float = 28.0,
                 demo_shrinkage: float = 20.0) -> None:
        self.neighbours, self.shrink, self.max_items = neighbours, shrink, max_items
        """The item-kNN similarity the sequence features read (the item-kNN generator's: computed once)."""
        self.last_items = last_items
        self.genre_half_life_days = genre_half_life_days
        self.demo_shrinkage = demo_shrinkage

    @classmethod
    def for_config(cls, cfg: CandidateConfig) -> FeatureBuilder:
        return cls(cfg.knn_neighbours, cfg.knn_shrink, cfg.knn_max_items)

    def fit(self, data: InteractionData) -> FeatureBuilder:
        inter, n_items = data.interactions, data.n_items
        now = data.now
        cols = np.searchsorted(data.item_ids, inter[S.ITEM].to_numpy())
        rows = np.searchsorted(data.user_ids, inter[S.USER].to_numpy())
        ts = inter[S.TS].to_numpy(np.float64)
        rating = inter[S.RATING].to_numpy(np.float64)
        age_days = (now - ts) / DAY

        def count(mask: np.ndarray | None = None, w: np.ndarray | None = None) -> np.ndarray:
            c = cols if mask is None else cols[mask]
            ww = None if w is None else (w if mask is None else w[mask])
            return np.bincount(c, weights=ww, minlength=n_items).astype(np.float64)

        pop = count()
        self.occupations_ = np.sort(data.users[S.OCCUPATION].astype(str).unique())
        self.genres_ = genre_names(data.items)
        items = data.items.set_index(S.ITEM).loc[data.item_ids]
        self.item_genres_ = np.array(
            [[g in str(gs).split() for g in self.genres_] for gs in items[S.GENRES].fillna("")], dtype=np.float64)
        now_year = pd.Timestamp(now, unit="s").year + pd.Timestamp(now, unit="s").dayofyear / 365.25
        year = items[S.RELEASE_YEAR].astype("float64").to_numpy()
        first = np.full(n_items, np.nan)
        last = np.full(n_items, np.nan)
        frame = pd.DataFrame({"c": cols, "a": age_days}).groupby("c").a.agg(["max", "min"])
        first[frame.index.to_numpy()] = frame["max"].to_numpy()
        last[frame.index.to_numpy()] = frame["min"].to_numpy()

        profiles = data.users.set_index(S.USER)
        rater = profiles.reindex(inter[S.USER].to_numpy())
        female = (rater[S.GENDER].astype(str) == "F").to_numpy(np.float64)
        rater_age = rater[S.AGE].to_numpy(np.float64)
        self.item_ = {
            "item_pop": pop,
            "item_pop_log": np.log1p(pop),
            "item_pop_7d": count(age_days <= 7),
            "item_pop_28d": count(age_days <= 28),
            "item_mean_rating": (count(w=rating) + 3.5 * 10) / (pop + 10),
            "item_age_years": now_year - year,
            "item_days_since_first": first,
            "item_days_since_last": last,
            "item_female_share": (count(w=female) + 0.3 * 5) / (pop + 5),
            "item_rater_age": (count(w=rater_age) + 33.0 * 5) / (pop + 5),
        }
        self.item_["item_trend"] = (self.item_["item_pop_7d"] + 1) / (self.item_["item_pop_28d"] / 4 + 1)
        prev_7d = count((age_days > 7) & (age_days <= 14))
        self.item_["item_velocity"] = (self.item_["item_pop_7d"] - prev_7d) / (prev_7d + 1)
        self.item_["item_pop_3d"] = count(age_days <= 3)

        n_users = len(data.user_ids)
        ucount = np.bincount(rows, minlength=n_users).astype(np.float64)
        log_pop = np.log1p(pop)[cols]
        # per genre, the user's count of rated items of it (bincount: np.add.at's sums, in the same order, faster)
        genre_sum = np.zeros((n_users, len(self.genres_)))
        for g in range(len(self.genres_)):
            genre_sum[:, g] = np.bincount(rows, weights=self.item_genres_[cols, g], minlength=n_users)
        ufirst = pd.Series(age_days).groupby(rows).max().reindex(range(n_users)).to_numpy()
        ulast = pd.Series(age_days).groupby(rows).min().reindex(range(n_users)).to_numpy()
        self.user_ids_ = data.user_ids
        self.user_ = {
            "user_n": ucount,
            "user_n_28d": np.bincount(rows[age_days <= 28], minlength=n_users).astype(np.float64),
            "user_days_since_last": ulast,
            "user_days_since_first": ufirst,
            "user_mean_rating": _safe_div(np.bincount(rows, rating, minlength=n_users), ucount),
            "user_mainstream": _safe_div(np.bincount(rows, log_pop, minlength=n_users), ucount),
        }
        norms = np.linalg.norm(genre_sum, axis=1, keepdims=True)
        self.user_genres_ = np.divide(genre_sum, norms, out=np.zeros_like(genre_sum), where=norms > 0)
        self.user_genre_share_ = genre_sum / np.maximum(genre_sum.sum(axis=1, keepdims=True), 1e-12)
        decay = np.exp2(-age_days / self.genre_half_life_days)
        recent = np.zeros((n_users, len(self.genres_)))
        for g in range(len(self.genres_)):
            recent[:, g] = np.bincount(rows, weights=self.item_genres_[cols, g] * decay, minlength=n_users)
        self.user_genre_recent_ = recent / np.maximum(recent.sum(axis=1, keepdims=True), 1e-12)

        # sequence: the user's latest items and the item-kNN similarity they are read in
        self.latest_ = latest_matrix(data.last_ts, self.last_items)
        self.sim_ = data.derived(("cosine_knn", self.neighbours, self.shrink, self.max_items),
                                 lambda: cosine_knn(data.matrix, self.neighbours, self.shrink,
                                                    max_items=self.max_items))

        # demographic CF: per attribute value, log-lift of each item among the users with that value
        codes = self._demo_codes(ProfileBlock.from_frame(profiles.reindex(inter[S.USER].to_numpy())))
        share = (pop + 1) / (pop.sum() + n_items)
        self.demo_lift_ = {}
        for attr, code in codes.items():
            n_values = int(code.max()) + 1 if (code >= 0).any() else 0
            ok = code >= 0
            table = np.bincount(code[ok] * n_items + cols[ok], minlength=n_values * n_items).reshape(
                n_values, n_items).astype(np.float64)
            within = (table + self.demo_shrinkage * share) / (table.sum(axis=1, keepdims=True) + self.demo_shrinkage)
            self.demo_lift_[attr] = np.log(within / share).astype(np.float32)
        return self

    def _demo_codes(self, profiles: ProfileBlock) -> dict[str, np.ndarray]:
        """Each profile's value code per demographic attribute (-1: missing or unknown)."""
        occ = profiles.occupation.astype(str)
        pos = np.clip(np.searchsorted(self.occupations_, occ), 0, len(self.occupations_) - 1)
        age = profiles.age
        return {
            "age": np.where(np.isnan(age), -1, age_bucket(np.nan_to_num(age))).astype(np.int64),
            "gender": np.where(np.isnan(profiles.female), -1, np.nan_to_num(profiles.female)).astype(np.int64),
            "occupation": np.where(self.occupations_[pos] == occ, pos, -1).astype(np.int64),
            "region": np.where(np.isnan(profiles.zip_region), -1, np.nan_to_num(profiles.zip_region)).astype(np.int64),
        }

    def feature_names(self, generator_names: list[str]) -> list[str]:
        names = []
        for g in generator_names:
            names += [f"{g}_score", f"{g}_rank"]
            if g in PERSONAL_SCORES:
                names.append(f"{g}_score_norm")
        names += list(self.item_) + list(self.user_)
        names += ["user_is_cold", "age", "gender_f", "occupation", "zip_region",
                  "genre_affinity", "genre_share", "age_gap", "gender_fit", "genre_recent",
                  "seq_sim_last", "seq_sim_max", "seq_sim_mean",
                  *(f"demo_lift_{a}" for a in DEMO_ATTRIBUTES), "demo_lift"]
        return names

    def transform(self, batch: CandidateBatch) -> tuple[np.ndarray, list[str]]:
        """Feature matrix (float32, one row per candidate pair) and its column names."""
        pu, pc = batch.pair_user, batch.pair_col
        cols: list[np.ndarray] = []
        for name, s in batch.scores.items():
            cols += [s, batch.ranks[name]]
            if name in PERSONAL_SCORES:
                top = batch.best[name]
                cols.append(_safe_div(s, np.where(top > 0, top, 0)[pu]))
        cols += [v[pc] for v in self.item_.values()]

        urow = np.searchsorted(self.user_ids_, batch.user_ids)
        urow = np.clip(urow, 0, max(len(self.user_ids_) - 1, 0))
        known = (self.user_ids_[urow] == batch.user_ids) if len(self.user_ids_) else np.zeros(len(urow), bool)
        for name, v in self.user_.items():
            # a user without history has zero interactions and undefined averages
            missing = 0.0 if name in ("user_n", "user_n_28d") else np.nan
            cols.append(np.where(known, v[urow] if len(v) else missing, missing)[pu])
        cols.append((~known).astype(np.float64)[pu])

        prof = batch.profiles
        age, female, region = prof.age, prof.female, prof.zip_region
        occ = prof.occupation.astype(str)
        pos = np.clip(np.searchsorted(self.occupations_, occ), 0, len(self.occupations_) - 1)
        occ_code = np.where(self.occupations_[pos] == occ, pos, np.nan).astype(np.float64)
        cols += [age[pu], female[pu], occ_code[pu], region[pu]]

        ug = np.where(known[:, None], self.user_genres_[urow], np.nan)
        ushare = np.where(known[:, None], self.user_genre_share_[urow], np.nan)
        ig = self.item_genres_[pc]
        inorm = np.linalg.norm(ig, axis=1)
        cols.append(_safe_div(np.einsum("ij,ij->i", ug[pu], ig), inorm))
        cols.append(np.einsum("ij,ij->i", ushare[pu], ig))
        cols.append(np.abs(self.item_["item_rater_age"][pc] - age[pu]))
        fshare = self.item_["item_female_share"][pc]
        cols.append(np.where(female[pu] == 1.0, fshare, np.where(female[pu] == 0.0, 1 - fshare, np.nan)))
        recent = np.where(known[:, None], self.user_genre_recent_[urow], np.nan)
        cols.append(np.einsum("ij,ij->i", recent[pu], ig))

        latest = np.where(known[:, None], self.latest_[urow], -1)[pu]  # (pairs, last_items) columns, -1: none
        sims = np.column_stack([pair_values(self.sim_, latest[:, j], pc) for j in range(latest.shape[1])])
        has = latest >= 0
        any_latest = has[:, 0]  # the latest items fill positions from 0
        n_latest = np.maximum(has.sum(axis=1), 1)
        sims0 = np.where(has, sims, 0.0)
        cols += [sims[:, 0], np.where(any_latest, np.where(has, sims, -np.inf).max(axis=1), np.nan),
                 np.where(any_latest, sims0.sum(axis=1) / n_latest, np.nan)]

        lifts = []
        for attr, code in self._demo_codes(prof).items():
            table, c = self.demo_lift_[attr], code[pu]
            ok = (c >= 0) & (c < len(table))
            lift = np.full(len(pu), np.nan)
            lift[ok] = table[c[ok], pc[ok]]
            lifts.append(lift)
        lift_block = np.column_stack(lifts)
        cols += [*lifts, np.where(np.isfinite(lift_block).any(axis=1), np.nansum(lift_block, axis=1), np.nan)]
        x = np.column_stack(cols).astype(np.float32)
        return x, self.feature_names(list(batch.scores))
