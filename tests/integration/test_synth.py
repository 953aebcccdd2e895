"""`recsys data synth`: a synthetic MovieLens fitted from the real ML-100K, in its schema, through the same commands.

The statistics are compared with the real data's (the generator's promise), the files are read back by the real
loader and go through the weekly replay and validation like the real download.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recsys import schema as S
from recsys.cli import app
from recsys.config import SynthParams
from recsys.data.load import MovieLens, load_movielens
from recsys.data.replay import ReplayClock
from recsys.data.synth import REFERENCE, SYNTH_MARKER, TARGET_25M, fit, scaled_sizes, synthesize, write_atomic

runner = CliRunner()


@pytest.fixture(scope="module")
def real(movielens: Path) -> tuple[MovieLens, ReplayClock]:
    ml = load_movielens(movielens)
    return ml, ReplayClock.from_interactions(ml.interactions)


@pytest.fixture(scope="module")
def made(real: tuple[MovieLens, ReplayClock]):
    ml, clock = real
    return synthesize(ml, clock.origin, clock.n_weeks, SynthParams(interactions=300_000, seed=7))


def test_sizes_pass_through_both_movielens_shapes() -> None:
    assert scaled_sizes(REFERENCE["interactions"]) == (REFERENCE["users"], REFERENCE["items"])
    assert scaled_sizes(TARGET_25M["interactions"]) == (TARGET_25M["users"], TARGET_25M["items"])
    users, items = scaled_sizes(1_000_000)
    assert REFERENCE["users"] < users < TARGET_25M["users"] and REFERENCE["items"] < items < TARGET_25M["items"]


def test_exact_count_of_distinct_pairs_with_known_ids(made) -> None:
    users, items, inter, _ = made
    assert len(inter) == 300_000
    assert not inter.duplicated([S.USER, S.ITEM]).any()
    assert set(inter[S.USER]) == set(users[S.USER]) and set(inter[S.ITEM]) <= set(items[S.ITEM])
    assert inter[S.RATING].isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    assert inter[S.TS].is_monotonic_increasing
    assert dict(inter.dtypes.astype(str)) == S.INTERACTION_DTYPES


def test_statistics_follow_the_real_data(real, made) -> None:
    ml, clock = real
    users, items, inter, reference = made
    synthetic = fit(MovieLens(users=users, items=items, interactions=inter, data_hash=""), clock.origin)
    assert reference == fit(ml, clock.origin)
    assert np.allclose(synthetic.rating_shares, reference.rating_shares, atol=0.002)
    assert abs(synthetic.popularity_gini - reference.popularity_gini) < 0.06  # the long tail
    assert abs(synthetic.user_bias_sd - reference.user_bias_sd) < 0.08
    assert abs(synthetic.item_bias_sd - reference.item_bias_sd) < 0.08
    assert synthetic.taste_share > 0.5 * reference.taste_share  # users keep a favourite genre
    assert abs(synthetic.new_item_share - reference.new_item_share) < 0.15  # items arrive over time
    assert synthetic.new_user_share > 0.9  # and so do users
    # the weekly volume follows the real timeline (the same 32 weeks, busy and quiet weeks where they were)
    real_weeks = np.bincount(clock.week_of(ml.interactions[S.TS]), minlength=clock.n_weeks)
    synth_weeks = np.bincount(clock.week_of(inter[S.TS]), minlength=clock.n_weeks)
    assert len(synth_weeks) == clock.n_weeks
    assert np.corrcoef(real_weeks, synth_weeks)[0, 1] > 0.8
    # profiles and genres are the real ones' vocabulary
    assert set(users[S.OCCUPATION]) <= set(ml.users[S.OCCUPATION])
    assert set(items[S.GENRES].dropna()) <= set(ml.items[S.GENRES].dropna())


def test_seeded(real) -> None:
    ml, clock = real
    a = synthesize(ml, clock.origin, clock.n_weeks, SynthParams(interactions=20_000, seed=3))[2]
    b = synthesize(ml, clock.origin, clock.n_weeks, SynthParams(interactions=20_000, seed=3))[2]
    c = synthesize(ml, clock.origin, clock.n_weeks, SynthParams(interactions=20_000, seed=4))[2]
    assert a.equals(b) and not a.equals(c)


def test_a_tiny_catalog_still_gives_the_exact_count(real) -> None:
    """More ratings than half the catalog per user: quotas capped, the rest moved to users with room."""
    ml, clock = real
    _, items, inter, _ = synthesize(ml, clock.origin, clock.n_weeks,
                                    SynthParams(interactions=5_000, users=300, items=40))
    assert len(items) == 40 and len(inter) == 5_000
    assert inter.groupby(S.USER).size().max() <= 20
    assert not inter.duplicated([S.USER, S.ITEM]).any()


def test_files_round_trip_through_the_real_loader(tmp_path: Path, made) -> None:
    users, items, inter, _ = made
    write_atomic(users, items, inter, tmp_path)
    back = load_movielens(tmp_path)
    assert back.interactions.equals(inter)
    assert back.users[S.USER].tolist() == users[S.USER].tolist()
    assert back.users[S.ZIP].tolist() == users[S.ZIP].tolist()
    assert back.items[S.GENRES].tolist() == items[S.GENRES].tolist()
    assert back.items[S.RELEASE_YEAR].isna().sum() == items[S.RELEASE_YEAR].isna().sum()


def test_cli_writes_a_data_dir_that_replays_and_validates(tmp_path: Path,
                                                          raw_data_dir: Callable[[Path], Path]) -> None:
    data = raw_data_dir(tmp_path / "real")
    out = tmp_path / "synthetic"
    env = {"RECSYS_DATA_DIR": str(data), "RECSYS_VAR_DIR": str(tmp_path / "var")}
    result = runner.invoke(app, ["data", "synth", "--interactions", "100000", "--out", str(out),
                                 "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["interactions"] == 100_000 and doc["weeks"] == 32
    marker = json.loads((out / "raw" / "ml-100k" / SYNTH_MARKER).read_text())
    assert marker["params"]["interactions"] == 100_000

    env["RECSYS_DATA_DIR"] = str(out)
    assert runner.invoke(app, ["data", "replay", "--all"], env=env).exit_code == 0
    result = runner.invoke(app, ["validate", "--all", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert sum(w["rows"] for w in json.loads(result.stdout)["outcomes"]) == 100_000

    refused = runner.invoke(app, ["data", "fetch"], env=env)  # would overwrite the synthetic set
    assert refused.exit_code == 1 and "synthetic data set" in refused.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["--interactions", "0"], "field interactions"),
    (["--interactions", "100", "--items", "-1"], "field items"),
])
def test_cli_names_the_bad_field(tmp_path: Path, args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["data", "synth", *args, "--out", str(tmp_path)])
    assert result.exit_code == 1 and needle in result.stderr and "Traceback" not in result.output


def test_cli_refuses_to_overwrite_the_real_data(tmp_path: Path, raw_data_dir: Callable[[Path], Path]) -> None:
    data = raw_data_dir(tmp_path)
    result = runner.invoke(app, ["data", "synth", "--interactions", "100", "--out", str(data)],
                           env={"RECSYS_DATA_DIR": str(data)})
    assert result.exit_code == 1 and "real MovieLens-100K" in result.stderr
