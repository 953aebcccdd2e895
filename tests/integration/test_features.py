"""The ranker's sequence, genre-decay and demographic-CF features on MovieLens-100K, each against a textbook
computation from the raw interactions for a sample of (user, candidate) pairs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import schema as S
from recsys.candidates.popularity import age_bucket
from recsys.config import CandidateConfig
from recsys.data.load import genre_names, load_movielens
from recsys.data.replay import ReplayClock
from recsys.data.split import temporal_window
from recsys.features.builder import FEATURE_GROUPS, feature_groups
from recsys.ranking.queries import fit_window


@pytest.fixture(scope="module")
def window_features(movielens: Path) -> tuple:
    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    window = temporal_window(ml.interactions, clock, 16, 4)
    fitted = fit_window(window, ml.items, ml.users, CandidateConfig(per_generator=20, tune=False, covisit_window=3))
    batch = next(fitted.batches())
    x, names = fitted.features.transform(batch)
    frame = pd.DataFrame(x, columns=names)
    frame["user"], frame["item"] = batch.user_ids[batch.pair_user], batch.items
    return ml, window, fitted, frame


def sequences(history: pd.DataFrame) -> dict[int, list[int]]:
    """Each user's distinct items, latest first (a repeated item at its latest time; ties by lower item id)."""
    last = history.groupby([S.USER, S.ITEM], as_index=False)[S.TS].max()
    last = last.sort_values([S.USER, S.TS, S.ITEM], ascending=[True, False, True])
    return {int(u): g[S.ITEM].astype(int).tolist() for u, g in last.groupby(S.USER)}


def test_every_feature_has_one_group(window_features: tuple) -> None:
    *_, frame = window_features
    names = [c for c in frame.columns if c not in ("user", "item")]
    groups = feature_groups(names)
    assert set(groups.values()) == {*FEATURE_GROUPS, "generators"}
    listed = [n for ns in FEATURE_GROUPS.values() for n in ns]
    assert len(listed) == len(set(listed)) and set(listed) <= set(names)


def test_sequence_features_follow_the_users_latest_items(window_features: tuple) -> None:
    _ml, window, fitted, frame = window_features
    seqs = sequences(window.history)
    sim = fitted.features.sim_
    col = {int(i): c for c, i in enumerate(fitted.data.item_ids)}
    warm = frame[frame["user"].isin(seqs)].sample(300, random_state=0)
    for row in warm.itertuples():
        latest = seqs[int(row.user)][:5]
        sims = [sim[col[i], col[int(row.item)]] for i in latest]
        assert row.seq_sim_last == pytest.approx(sims[0], abs=1e-6)
        assert row.seq_sim_max == pytest.approx(max(sims), abs=1e-6)
        assert row.seq_sim_mean == pytest.approx(np.mean(sims), abs=1e-6)
    cold = frame[~frame["user"].isin(seqs)]
    assert len(cold) and cold[["seq_sim_last", "seq_sim_max", "seq_sim_mean", "genre_recent"]].isna().all().all()


def test_recent_genre_affinity_decays_with_age(window_features: tuple) -> None:
    ml, window, _fitted, frame = window_features
    genres = genre_names(ml.items)
    item_genres = {int(i): set(str(g).split()) for i, g in zip(ml.items[S.ITEM], ml.items[S.GENRES], strict=True)}
    hist = window.history
    sample = frame[frame["user"].isin(hist[S.USER].unique())].sample(100, random_state=1)
    for row in sample.itertuples():
        mine = hist[hist[S.USER] == row.user]
        weight = {g: 0.0 for g in genres}
        for item, ts in zip(mine[S.ITEM], mine[S.TS], strict=True):
            for g in item_genres[int(item)]:
                weight[g] += 2.0 ** (-(window.now - ts) / 86400.0 / 28.0)
        total = sum(weight.values())
        expected = sum(weight[g] for g in item_genres[int(row.item)]) / total
        assert row.genre_recent == pytest.approx(expected, rel=1e-4)


def test_demographic_lift_is_the_items_share_within_the_segment_over_its_share(window_features: tuple) -> None:
    ml, window, fitted, frame = window_features
    hist = window.history.merge(ml.users, on=S.USER)
    pop = hist[S.ITEM].value_counts()
    n_items = len(ml.items)
    share = {int(i): (pop.get(i, 0) + 1) / (len(hist) + n_items) for i in ml.items[S.ITEM]}
    profiles = ml.users.set_index(S.USER)
    m = fitted.features.demo_shrinkage
    for row in frame.sample(200, random_state=2).itertuples():
        p = profiles.loc[int(row.user)]
        gender_peers = hist[hist[S.GENDER] == p[S.GENDER]]
        n_g = int((gender_peers[S.ITEM] == row.item).sum())
        expected = math.log((n_g + m * share[int(row.item)]) / (len(gender_peers) + m) / share[int(row.item)])
        assert row.demo_lift_gender == pytest.approx(expected, rel=1e-4, abs=1e-5)
        bucket = age_bucket(np.array([p[S.AGE]]))[0]
        age_peers = hist[age_bucket(hist[S.AGE].to_numpy()) == bucket]
        n_a = int((age_peers[S.ITEM] == row.item).sum())
        expected = math.log((n_a + m * share[int(row.item)]) / (len(age_peers) + m) / share[int(row.item)])
        assert row.demo_lift_age == pytest.approx(expected, rel=1e-4, abs=1e-5)
        parts = [row.demo_lift_age, row.demo_lift_gender, row.demo_lift_occupation, row.demo_lift_region]
        assert row.demo_lift == pytest.approx(np.nansum(parts), rel=1e-4, abs=1e-5)
