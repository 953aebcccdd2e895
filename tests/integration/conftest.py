"""Fixtures for the validation tests: the real ML-100K reference, its weekly batches, one GX context."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from recsys.data.load import MovieLens, load_movielens
from recsys.validation.gx_runner import GxRunner, SuiteRun
from recsys.validation.runner import Reference, batch_of_week, check_reference, load_reference
from recsys.validation.suites import History, rating_counts


@pytest.fixture(scope="session")
def ml(movielens: Path) -> MovieLens:
    return load_movielens(movielens)


@pytest.fixture(scope="session")
def reference(movielens: Path) -> Reference:
    return load_reference(movielens)


@pytest.fixture(scope="session")
def batch(ml: MovieLens, reference: Reference) -> Callable[[int], pd.DataFrame]:
    """The replay's batch of a week, with the batch dtypes (what ``write_week`` writes)."""
    return lambda week: batch_of_week(ml.interactions, reference.clock, week)


@pytest.fixture(scope="session")
def history(batch: Callable[[int], pd.DataFrame]) -> Callable[[int], History]:
    """What the store would hold after accepting the real weeks before ``week`` in order."""

    def build(week: int) -> History:
        rows, ratings = [], {}
        for w in range(week):
            b = batch(w)
            rows.append(len(b))
            for value, n in rating_counts(b).items():
                ratings[value] = ratings.get(value, 0) + n
        return History(weeks=tuple(range(week)), row_counts=tuple(rows), rating_counts=ratings)

    return build


@pytest.fixture(scope="session")
def gx_runner() -> GxRunner:
    """One ephemeral GX context (no Data Docs) for the side-effect-free checks."""
    return GxRunner()


@pytest.fixture(scope="session")
def reference_runs(reference: Reference, gx_runner: GxRunner) -> list[SuiteRun]:
    return check_reference(reference, gx_runner)
