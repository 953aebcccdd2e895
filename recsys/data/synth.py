"""A synthetic MovieLens at any scale, fitted from the real ML-100K and written in its exact schema.

Every synthetic user is drawn from a real user and every synthetic item from a real item, so the joint shape of the
real data carries over without a parametric model of it:

- a user takes a real user's profile (age, gender, occupation, zip code), first-rating time (jittered by up to
  six hours), activity span and number of ratings (scaled so the total is ``interactions``, with log-normal
  noise), its rating bias and its favourite genre;
- an item takes a real item's genres, release year, arrival (the real first rating for a film released in
  the data's first year or later, the start otherwise) and popularity (its number of
  ratings, with log-normal noise: the long tail of ML-100K), and its rating bias.

A user's ratings are drawn by popularity, a fitted share of them from the items of its favourite genre (the taste
that lifts a user's top genre above its popularity share in ML-100K), at times spread over its activity span as
the real users' are (mostly in a burst at the start), and never before the item's arrival. Ratings come from user
bias + item bias + noise, cut at the thresholds that reproduce ML-100K's rating distribution exactly. Users and
items therefore arrive over the timeline as they did in the real data, and the within-week rhythm (hour of day, day
of week) is the real one. The only personal signal is that bias and genre taste: ranking quality measured on a
synthetic set says how the pipeline scales, not how well it would recommend.

Sizes follow a power law through the two published MovieLens shapes (ML-100K: 943 users, 1,682 items for 100,000
ratings; ML-25M: 162,541 users, 62,423 items for 25,000,095 ratings), unless given. The timeline keeps ML-100K's
32 weeks, so the weekly replay, the store and the backtest cuts work unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recsys import schema as S
from recsys.config import FittedStats, SynthParams
from recsys.data.load import MovieLens

REFERENCE = {"interactions": 100_000, "users": 943, "items": 1_682}
TARGET_25M = {"interactions": 25_000_095, "users": 162_541, "items": 62_423}
SYNTH_MARKER = "synth.json"
"""Written beside the atomic files: the parameters and fitted statistics (and what ``recsys data fetch`` checks
before it would overwrite a synthetic data set with the real one)."""

_JITTER_SECONDS = 6 * 3600
_MAX_ROUNDS = 16


def scaled_sizes(interactions: int) -> tuple[int, int]:
    """(users, items) for ``interactions`` ratings: a power law through ML-100K's and ML-25M's shapes."""
    span = math.log(TARGET_25M["interactions"] / REFERENCE["interactions"])
    ratio = math.log(interactions / REFERENCE["interactions"])
    sizes = []
    for key in ("users", "items"):
        exponent = math.log(TARGET_25M[key] / REFERENCE[key]) / span
        sizes.append(max(10, round(REFERENCE[key] * math.exp(exponent * ratio))))
    return sizes[0], sizes[1]


def gini(counts: np.ndarray) -> float:
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(values)
    if n == 0 or values.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ values / (n * values.sum()))


def _first_genre(genres: pd.Series) -> np.ndarray:
    return genres.fillna("").str.split(" ").str[0].to_numpy(dtype=object)


def _frame_stats(ml: MovieLens, origin: int) -> FittedStats:
    inter = ml.interactions
    week0_end = origin + 7 * 24 * 3600
    shares = inter[S.RATING].round().astype(int).value_counts(normalize=True).reindex(range(1, 6), fill_value=0)
    item_counts = inter[S.ITEM].value_counts()
    user_counts = inter[S.USER].value_counts()
    mean = inter[S.RATING].mean()
    by_user = inter.groupby(S.USER)[S.RATING].mean() - mean
    by_item = inter.groupby(S.ITEM)[S.RATING].mean() - mean
    return FittedStats(
        rating_shares=[round(float(s), 5) for s in shares],
        taste_share=round(_taste_share(ml), 4),
        user_bias_sd=round(float(by_user.std()), 4),
        item_bias_sd=round(float(by_item[item_counts.reindex(by_item.index) >= 20].std()), 4),
        popularity_gini=round(gini(item_counts.to_numpy()), 4),
        activity_median=float(user_counts.median()),
        new_user_share=round(float((inter.groupby(S.USER)[S.TS].min() >= week0_end).mean()), 4),
        new_item_share=round(float((inter.groupby(S.ITEM)[S.TS].min() >= week0_end).mean()), 4),
    )


def _taste_share(ml: MovieLens) -> float:
    """t in f_u = t + (1 - t) p_g: f_u is the share of user u's ratings on items of its top genre g, p_g the share
    of all ratings on items of g (what popularity alone would give); averaged over users."""
    genre = pd.Series(_first_genre(ml.items[S.GENRES]), index=ml.items[S.ITEM].to_numpy())
    rated = genre.reindex(ml.interactions[S.ITEM].to_numpy()).to_numpy()
    frame = pd.DataFrame({S.USER: ml.interactions[S.USER].to_numpy(), "g": rated})
    per_user = frame.groupby([S.USER, "g"]).size()
    top = per_user.groupby(level=0).idxmax().str[1]
    f_u = per_user.groupby(level=0).max() / per_user.groupby(level=0).sum()
    p_g = frame["g"].value_counts(normalize=True).reindex(top.to_numpy()).to_numpy()
    return float(np.clip(np.mean((f_u.to_numpy() - p_g) / (1 - p_g)), 0.0, 0.9))


def fit(ml: MovieLens, origin: int) -> FittedStats:
    """The statistics of ``ml`` that the generator reproduces (``origin``: the replay clock's week 0)."""
    return _frame_stats(ml, origin)


def _quotas(rng: np.random.Generator, weights: np.ndarray, total: int, cap: np.ndarray | int) -> np.ndarray:
    """Integers proportional to ``weights`` that sum to ``total`` (largest remainders, ties at random), each at
    most ``cap``; the excess over a cap goes to the others."""
    cap = np.broadcast_to(np.asarray(cap, dtype=np.int64), weights.shape)
    out = np.zeros(len(weights), dtype=np.int64)
    left, open_ = total, (weights > 0) & (cap > 0)
    while left > 0 and open_.any():
        share = np.where(open_, weights, 0.0) * left / np.where(open_, weights, 0.0).sum()
        step = np.floor(share).astype(np.int64)
        rest = left - int(step.sum())
        if rest > 0:
            frac = (share - step) + rng.random(len(share)) * 1e-9
            step[np.argsort(-np.where(open_, frac, -1.0))[:rest]] += 1
        step = np.minimum(step, cap - out)
        out += step
        left -= int(step.sum())
        open_ &= out < cap
    return out


def _rounds_of_draws(rng: np.random.Generator, need: np.ndarray, item_p: np.ndarray,
                     genre_tables: dict[int, tuple[np.ndarray, np.ndarray]], user_genre: np.ndarray,
                     taste: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``need[u]`` items for every user u (with replacement): a ``taste`` share from its genre's items."""
    users = np.repeat(np.arange(len(need), dtype=np.int64), need)
    items = rng.choice(len(item_p), size=len(users), p=item_p).astype(np.int64)
    from_genre = rng.random(len(users)) < taste
    for g, (members, p) in genre_tables.items():
        pick = from_genre & (user_genre[users] == g)
        if pick.any():
            items[pick] = members[rng.choice(len(members), size=int(pick.sum()), p=p)]
    return users, items


def synthesize(ref: MovieLens, origin: int, n_weeks: int, params: SynthParams,
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedStats]:
    """(users, items, interactions, fitted statistics of the reference) for ``params``; seeded, deterministic."""
    rng = np.random.default_rng(params.seed)
    auto_users, auto_items = scaled_sizes(params.interactions)
    n_users, n_items = params.users or auto_users, params.items or auto_items
    stats = fit(ref, origin)
    inter = ref.interactions
    end = origin + n_weeks * 7 * 24 * 3600 - 1
    mean_rating = float(inter[S.RATING].mean())

    # -- items: each drawn from a real item ------------------------------------------------------------------
    ref_items = ref.items.set_index(S.ITEM)
    item_count = inter[S.ITEM].value_counts().reindex(ref_items.index, fill_value=0)
    item_first = inter.groupby(S.ITEM)[S.TS].min().reindex(ref_items.index)
    item_bias = (inter.groupby(S.ITEM)[S.RATING].mean() - mean_rating).reindex(ref_items.index).fillna(0.0)
    rated_items = np.flatnonzero(item_count.to_numpy() > 0)
    src_i = rng.choice(rated_items, size=n_items)
    weight = item_count.to_numpy()[src_i] * rng.lognormal(0.0, 0.3, n_items)
    # a film released in the data's first year or later arrives when the real one was first rated (up to a few
    # hours earlier); an older film is there from the start (its later first rating in ML-100K only means the first
    # users had not rated it)
    first_year = pd.Timestamp(int(inter[S.TS].min()), unit="s").year
    recent = (ref_items[S.RELEASE_YEAR].fillna(0).to_numpy()[src_i] >= first_year)
    arrival = np.where(recent, np.clip(item_first.to_numpy()[src_i] - rng.integers(0, _JITTER_SECONDS, n_items),
                                       origin, end), origin)
    items = pd.DataFrame({
        S.ITEM: np.arange(1, n_items + 1, dtype=np.int32),
        S.TITLE: [f"Synthetic movie {i}" for i in range(1, n_items + 1)],
        S.RELEASE_YEAR: ref_items[S.RELEASE_YEAR].to_numpy()[src_i],
        S.GENRES: ref_items[S.GENRES].to_numpy()[src_i],
    })
    genre_codes, genre_names = pd.factorize(_first_genre(items[S.GENRES]))

    # -- users: each drawn from a real user ------------------------------------------------------------------
    ref_users = ref.users.set_index(S.USER)
    per_user = inter.groupby(S.USER)[S.TS].agg(["min", "max", "count"]).reindex(ref_users.index)
    user_bias = (inter.groupby(S.USER)[S.RATING].mean() - mean_rating).reindex(ref_users.index).fillna(0.0)
    ref_genre = pd.Series(_first_genre(ref.items[S.GENRES]), index=ref.items[S.ITEM].to_numpy())
    fav = (pd.DataFrame({S.USER: inter[S.USER].to_numpy(), "g": ref_genre.reindex(inter[S.ITEM]).to_numpy()})
           .groupby([S.USER, "g"]).size().groupby(level=0).idxmax().str[1].reindex(ref_users.index))
    src_u = rng.integers(0, len(ref_users), n_users)
    start = np.clip(per_user["min"].to_numpy()[src_u] + rng.integers(-_JITTER_SECONDS, _JITTER_SECONDS, n_users),
                    int(inter[S.TS].min()), end)
    stop = np.minimum(start + (per_user["max"] - per_user["min"]).to_numpy()[src_u], end)
    raw = per_user["count"].to_numpy()[src_u] * rng.lognormal(0.0, 0.2, n_users)
    cap = max(1, n_items // 2)
    quota = _quotas(rng, raw, params.interactions, cap)
    user_genre = pd.Index(genre_names).get_indexer(fav.to_numpy()[src_u])
    users = pd.DataFrame({
        S.USER: np.arange(1, n_users + 1, dtype=np.int32),
        S.AGE: ref_users[S.AGE].to_numpy()[src_u],
        S.GENDER: ref_users[S.GENDER].to_numpy()[src_u],
        S.OCCUPATION: ref_users[S.OCCUPATION].to_numpy()[src_u],
        S.ZIP: ref_users[S.ZIP].to_numpy()[src_u],
    })

    # -- ratings: distinct (user, item) pairs, drawn in rounds until every quota is met ---------------------------
    item_p = weight / weight.sum()
    tables = {}
    for g in range(len(genre_names)):
        members = np.flatnonzero(genre_codes == g)
        tables[g] = (members, item_p[members] / item_p[members].sum())
    keys = np.empty(0, dtype=np.int64)
    have = np.zeros(n_users, dtype=np.int64)
    stuck = np.zeros(n_users, dtype=bool)
    before = have
    for round_ in range(_MAX_ROUNDS):
        short = quota - have
        if round_ >= 2 and short.sum() > 0:
            # a user still short that gained nothing last round has run out of items it can rate (too few had
            # arrived in its span): its deficit moves to users with room, so the total stays exact
            stuck |= (short > 0) & (have == before)
            room = np.where(stuck, 0, cap - have)
            quota = have + _quotas(rng, np.where(room > 0, quota, 0).astype(np.float64), int(short.sum()), room)
            short = quota - have
        if short.sum() <= 0:
            break
        before = have
        u, i = _rounds_of_draws(rng, np.ceil(short * 1.25 * 2 ** min(round_, 6)).astype(np.int64) * (short > 0),
                                item_p, tables, user_genre, stats.taste_share)
        ok = arrival[i] <= stop[u]  # an item is rated only once it has arrived
        keys = np.unique(np.concatenate([keys, u[ok] * n_items + i[ok]]))
        # keep the first quota[u] distinct items of each user (in a random order, so no item is favoured)
        order = np.argsort(rng.random(len(keys)), kind="stable")
        order = order[np.argsort(keys[order] // n_items, kind="stable")]
        keys = keys[order]
        user_of = keys // n_items
        rank = np.arange(len(keys)) - np.searchsorted(user_of, user_of)
        keys = np.sort(keys[rank < quota[user_of]])
        have = np.bincount(keys // n_items, minlength=n_users)
    u, i = keys // n_items, keys % n_items

    # where in its span a rating falls: resampled from the real users' (most rate in a burst at the start)
    span = (inter[S.USER].map(per_user["max"] - per_user["min"])).to_numpy()
    position = ((inter[S.TS] - inter[S.USER].map(per_user["min"])).to_numpy() / np.maximum(span, 1))[span > 0]
    lo = np.maximum(start[u], arrival[i])
    ts = lo + (rng.choice(position, size=len(u)) * (np.maximum(stop[u], lo) - lo)).astype(np.int64)
    latent = (user_bias.to_numpy()[src_u][u] + item_bias.to_numpy()[src_i][i]
              + rng.normal(0.0, 1.0, len(u)).astype(np.float32))
    cuts = np.quantile(latent, np.cumsum(stats.rating_shares)[:-1])
    ratings = (np.searchsorted(cuts, latent) + 1).astype(np.float32)
    interactions = pd.DataFrame({S.USER: (u + 1).astype(np.int32), S.ITEM: (i + 1).astype(np.int32),
                                 S.RATING: ratings, S.TS: np.minimum(ts, end).astype(np.int64)})
    interactions = interactions.sort_values([S.TS, S.USER, S.ITEM], kind="stable").reset_index(drop=True)
    seen_users = np.unique(u)
    users = users.iloc[seen_users].reset_index(drop=True)  # a user with no rating (quota unmet) is left out
    return users, items, interactions, stats


def write_atomic(users: pd.DataFrame, items: pd.DataFrame, interactions: pd.DataFrame, raw_dir: Path) -> None:
    """Write the three files in RecBole's atomic format (what ``recsys data fetch`` extracts), atomically."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    year = items[S.RELEASE_YEAR].astype("Int64").astype("string").fillna("")
    tables = {
        "ml-100k.inter": (interactions, ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]),
        "ml-100k.user": (users, ["user_id:token", "age:token", "gender:token", "occupation:token",
                                 "zip_code:token"]),
        "ml-100k.item": (items.assign(**{S.RELEASE_YEAR: year}),
                         ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"]),
    }
    for name, (frame, header) in tables.items():
        tmp = raw_dir / f".{name}.tmp"
        plain = {c: frame[c].to_numpy(dtype=np.int64 if c == S.RATING else None) for c in frame.columns}
        table = pa.table({c: v if v.dtype != object else pa.array(v, pa.string()) for c, v in plain.items()})
        with pa.OSFile(str(tmp), "wb") as sink:
            sink.write(("\t".join(header) + "\n").encode())
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, delimiter="\t",
                                                            quoting_style="none"))
        tmp.replace(raw_dir / name)
