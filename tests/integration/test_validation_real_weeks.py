"""Every real ML-100K week, replayed in order, passes validation; the learned rules are checked on real counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.load import MovieLens
from recsys.data.replay import write_week
from recsys.notify import channels as notify_channels
from recsys.settings import Settings
from recsys.validation.gx_runner import GxRunner, SuiteRun
from recsys.validation.runner import Reference, check_batch, validate_week
from recsys.validation.suites import KL_THRESHOLD, MEAN_RATING_BAND, MIN_HISTORY, RATING_VALUES, History

N_WEEKS = 32
SUBSET = (0, 3, 8, 18, 26, 31)
"""First week (no history), first learned band, the largest week, the odd rating mix, the smallest, the last."""


def test_the_replay_has_32_weeks(reference: Reference) -> None:
    assert reference.clock.n_weeks == N_WEEKS


def test_real_row_counts_stay_inside_the_learned_band(history: Callable[[int], History],
                                                      batch: Callable[[int], pd.DataFrame]) -> None:
    """Pure arithmetic on the rule: real weeks pass, 10x / 0.1x of every typical week falls outside."""
    typical = 0
    for week in range(MIN_HISTORY, N_WEEKS):
        band = history(week).volume_band()
        assert band is not None
        rows = len(batch(week))
        assert band[0] <= rows <= band[1], week
        median = float(np.median(history(week).row_counts))
        if 0.5 <= rows / median <= 2.0:
            typical += 1
            assert 10 * rows > band[1] and rows // 10 < band[0], week
    assert typical >= 20


def test_real_rating_mix_stays_inside_the_bounds(history: Callable[[int], History],
                                                 batch: Callable[[int], pd.DataFrame]) -> None:
    for week in range(N_WEEKS):
        ratings = batch(week)["rating"]
        assert MEAN_RATING_BAND[0] <= ratings.mean() <= MEAN_RATING_BAND[1]
        reference = history(week).rating_reference()
        if reference is not None:
            p = ratings.value_counts(normalize=True).reindex(RATING_VALUES, fill_value=0).to_numpy()
            kl = float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.asarray(reference)), 0)))
            assert kl < KL_THRESHOLD, (week, kl)


@pytest.mark.parametrize("week", SUBSET)
def test_real_week_passes(week: int, reference: Reference, gx_runner: GxRunner, reference_runs: list[SuiteRun],
                          history: Callable[[int], History], batch: Callable[[int], pd.DataFrame]) -> None:
    now = reference.clock.start(week + 1)
    result = check_batch(batch(week), week, reference, gx_runner, history=history(week), now=now,
                         reference_runs=reference_runs)
    assert result.success, result.failed
    assert (result.volume_band is None) == (week < MIN_HISTORY)


@pytest.mark.slow
def test_every_real_week_passes_in_order(tmp_path: Path, ml: MovieLens, reference: Reference) -> None:
    """The real path: 32 batch files validated in order with the file-mode context, each joining the store."""
    settings = Settings(data_dir=tmp_path / "data", var_dir=tmp_path / "var")
    channels = notify_channels(settings, ["outbox"])
    for week in range(N_WEEKS):
        write_week(ml.interactions, reference.clock, week, settings.batches_dir)
        outcome = validate_week(settings, week, reference=reference, channels=channels)
        assert outcome.success, (week, outcome.failed)
        assert outcome.history_weeks == list(range(week))
    assert not (settings.data_dir / "quarantine").exists()
