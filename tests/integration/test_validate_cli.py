"""`recsys validate` and `recsys data inject` on the real data, and training reading the validated store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock, interactions_of_week
from recsys.settings import Settings
from recsys.stages.base import StageError
from recsys.stages.inputs import load_training_data
from recsys.validation import store

runner = CliRunner()
WEEKS = range(6)


@pytest.fixture(scope="module")
def drill(raw_data_dir: Callable[[Path], Path], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[SimpleNamespace]:
    """Replay weeks 0..5, validate them, then corrupt week 5 and validate it again."""
    root = tmp_path_factory.mktemp("validate")
    raw_data_dir(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_DATA_DIR", str(root / "data"))
        mp.setenv("RECSYS_VAR_DIR", str(root / "var"))
        mp.setenv("RECSYS_NOTIFY", "outbox")
        out = {}
        for w in WEEKS:
            assert runner.invoke(app_(), ["data", "replay", "--week", str(w)]).exit_code == 0
        out["all"] = runner.invoke(app_(), ["validate", "--all"])
        settings = Settings()
        stored = (store.week_dir(settings.store_dir, 5) / store.STORE_FILE).read_bytes()
        out["inject"] = runner.invoke(app_(), ["data", "inject", "--week", "5", "--fault", "duplicate_rows"])
        out["bad"] = runner.invoke(app_(), ["validate", "--week", "5"])
        out["file_fault"] = runner.invoke(app_(), ["data", "inject", "--week", "4", "--fault", "latin1_csv"])
        out["bad_file"] = runner.invoke(app_(), ["validate", "--week", "4"])
        out["unknown_fault"] = runner.invoke(app_(), ["data", "inject", "--week", "4", "--fault", "gremlins"])
        out["neither"] = runner.invoke(app_(), ["validate"])
        yield SimpleNamespace(root=root, settings=settings, out=out, stored_week5=stored)


def app_():  # the app is imported lazily so that the module's import stays cheap for collection
    from recsys.cli import app

    return app


def test_validate_all_accepts_every_real_week(drill: SimpleNamespace) -> None:
    result = drill.out["all"]
    assert result.exit_code == 0, result.output
    assert f"{len(WEEKS)} of {len(WEEKS)} batch(es) accepted" in result.stdout
    assert store.accepted_weeks(drill.settings) == list(WEEKS)
    assert "Data Docs:" in result.stdout
    assert (drill.settings.var_dir / "validation" / "data_docs" / "index.html").is_file()


def test_a_corrupted_batch_is_quarantined_and_the_store_keeps_the_good_copy(drill: SimpleNamespace) -> None:
    assert drill.out["inject"].exit_code == 0, drill.out["inject"].output
    result = drill.out["bad"]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "QUARANTINED" in result.stdout and "0 of 1 batch(es) accepted" in result.stdout
    assert "rows.unique" in result.stdout or "duplicate" in result.stdout.lower()
    [folder] = (drill.settings.data_dir / "quarantine" / "week=05").iterdir()
    assert {p.name for p in folder.iterdir()} >= {"interactions.parquet", "result.json", "summary.md"}
    stored = (store.week_dir(drill.settings.store_dir, 5) / store.STORE_FILE).read_bytes()
    assert stored == drill.stored_week5


def test_an_unreadable_file_is_quarantined_with_the_reason(drill: SimpleNamespace) -> None:
    result = drill.out["bad_file"]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unreadable file" in result.stdout and "not UTF-8" in result.stdout
    assert (drill.settings.data_dir / "quarantine" / "week=04").is_dir()


def test_quarantines_are_notified(drill: SimpleNamespace) -> None:
    lines = (drill.settings.var_dir / "notifications" / "outbox.jsonl").read_text().splitlines()
    notes = [json.loads(line) for line in lines]
    assert [(n["event"], n["details"]["week"]) for n in notes] == [("batch_quarantined", 5), ("batch_quarantined", 4)]
    assert all(n["severity"] == "warning" and n["details"]["quarantine_path"] for n in notes)


def test_bad_arguments_are_one_line_errors(drill: SimpleNamespace) -> None:
    for key, needle in (("unknown_fault", "unknown fault 'gremlins'"), ("neither", "--week W or --all")):
        result = drill.out[key]
        assert result.exit_code == 1 and result.stderr.strip().startswith("error:"), result.output
        assert needle in result.stderr and "\n" not in result.stderr.strip()


# -- training reads the validated store ----------------------------------------------------------------------
@pytest.fixture
def store_settings(raw_data_dir: Callable[[Path], Path], tmp_path: Path) -> Settings:
    raw_data_dir(tmp_path)
    return Settings(data_dir=tmp_path / "data", var_dir=tmp_path / "var")


def test_training_data_comes_from_the_store_on_the_raw_timeline(store_settings: Settings) -> None:
    ml = load_movielens(store_settings.raw_dir)
    clock = ReplayClock.from_interactions(ml.interactions)
    for w in (1, 2, 4):  # week 0 and week 3 were never accepted
        store.accept(store_settings, w, interactions_of_week(ml.interactions, clock, w), run_id="test")
    loaded = load_training_data(store_settings)
    data, data_clock, source = loaded.ml, loaded.clock, loaded.source
    assert "validated store, weeks 1..4" in source and "missing (not validated): [0, 3]" in source
    assert data_clock.origin == clock.origin and data_clock.n_weeks == 5
    expected = sum(len(interactions_of_week(ml.interactions, clock, w)) for w in (1, 2, 4))
    assert len(data.interactions) == expected
    assert set(clock.week_of(data.interactions["timestamp"])) == {1, 2, 4}
    assert data.interactions["timestamp"].is_monotonic_increasing
    assert dict(data.interactions.dtypes.astype(str)) == {"user_id": "int32", "item_id": "int32",
                                                          "rating": "float32", "timestamp": "int64"}
    assert data.data_hash != ml.data_hash and len(data.users) == len(ml.users)

    raw = load_training_data(store_settings.model_copy(update={"training_source": "raw"}))
    assert len(raw.ml.interactions) == len(ml.interactions) and raw.clock == clock


def test_store_source_without_validated_weeks_is_an_error(store_settings: Settings) -> None:
    with pytest.raises(StageError, match="no validated weeks"):
        load_training_data(store_settings.model_copy(update={"training_source": "store"}))
    loaded = load_training_data(store_settings)  # auto: falls back to the raw download
    assert "raw download" in loaded.source
    assert len(loaded.ml.interactions) == 100_000
