"""The checkpoint runner end to end: accept into the store, quarantine and notify, Data Docs, timing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from recsys import schema
from recsys.data.faults import inject, write_corrupt_file
from recsys.data.load import MovieLens
from recsys.data.replay import write_week
from recsys.notify import Channel
from recsys.notify import channels as notify_channels
from recsys.settings import Settings
from recsys.validation import store
from recsys.validation.reader import BATCH_DTYPES
from recsys.validation.runner import Reference, ValidationOutcome, validate_week

ACCEPTED = (0, 1, 2, 3)
NEXT = 4


def clear(part: Path) -> None:
    for f in part.glob("interactions.*"):
        f.unlink()


def store_state(settings: Settings) -> dict[str, bytes]:
    root = settings.store_dir
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outbox(settings: Settings) -> list[dict[str, object]]:
    path = settings.outbox_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, ml: MovieLens, reference: Reference) -> SimpleNamespace:
    """Weeks 0..3 replayed and validated in order into a fresh store (file-mode GX context, Data Docs)."""
    root = tmp_path_factory.mktemp("validation")
    settings = Settings(data_dir=root / "data", var_dir=root / "var")
    channels: list[Channel] = notify_channels(settings, ["outbox"])

    def run(week: int) -> ValidationOutcome:
        return validate_week(settings, week, reference=reference, channels=channels)

    outcomes = []
    for week in (*ACCEPTED, NEXT):
        write_week(ml.interactions, reference.clock, week, settings.batches_dir)
    for week in ACCEPTED:
        outcomes.append(run(week))
    return SimpleNamespace(settings=settings, run=run, outcomes=outcomes,
                           part=store.week_dir(settings.batches_dir, NEXT))


@pytest.fixture
def next_week(env: SimpleNamespace, batch: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    clear(env.part)
    return batch(NEXT)


def test_real_weeks_are_accepted_into_the_store(env: SimpleNamespace, batch: Callable[[int], pd.DataFrame]) -> None:
    for week, outcome in zip(ACCEPTED, env.outcomes, strict=True):
        assert outcome.success, outcome.failed
        assert outcome.store_path == store.week_dir(env.settings.store_dir, week) / "interactions.parquet"
        stored = pd.read_parquet(outcome.store_path)
        assert {c: str(t) for c, t in stored.dtypes.items()} == BATCH_DTYPES
        pd.testing.assert_frame_equal(stored, batch(week))
        meta = store.accepted_meta(env.settings, week)
        assert meta is not None and meta["rows"] == outcome.rows == len(stored)
        assert meta["sha256"] == store.sha256_file(outcome.store_path)
        assert set(meta) == {"week", "rows", "sha256", "rating_counts"}  # bytes depend on the data only
        [logged] = [e for e in store.acceptance_log(env.settings) if e["week"] == week]
        assert logged["gx_run_id"] == outcome.run_id and logged["validated_at"] and logged["sha256"] == meta["sha256"]
        assert outcome.quarantine_path is None
    first = env.outcomes[0]
    assert first.new_users == batch(0)[schema.USER].nunique() and first.new_items == batch(0)[schema.ITEM].nunique()
    assert env.outcomes[1].new_users < batch(1)[schema.USER].nunique()
    for i in range(1, len(ACCEPTED)):  # exactly the ids no earlier accepted week holds
        earlier = pd.concat([batch(w) for w in ACCEPTED[:i]])
        for column, counted in ((schema.USER, env.outcomes[i].new_users), (schema.ITEM, env.outcomes[i].new_items)):
            assert counted == len(set(batch(ACCEPTED[i])[column]) - set(earlier[column])) > 0


def test_volume_band_is_learned_from_the_store(env: SimpleNamespace) -> None:
    assert [o.volume_band for o in env.outcomes[:3]] == [None, None, None]
    assert all("volume.band: only" in o.notes[0] for o in env.outcomes[:3])
    rows = sorted(o.rows for o in env.outcomes[:3])
    assert env.outcomes[3].volume_band == (int(0.2 * rows[1]), int(5 * rows[1]))
    assert env.outcomes[3].history_weeks == [0, 1, 2]


def test_accepting_the_same_week_again_is_idempotent(env: SimpleNamespace) -> None:
    before = env.outcomes[3].store_path.read_bytes()
    again = env.run(3)
    assert again.success
    assert again.store_path.read_bytes() == before


def test_a_bad_batch_is_quarantined_and_notified(env: SimpleNamespace, next_week: pd.DataFrame) -> None:
    before, sent = store_state(env.settings), len(outbox(env.settings))
    inject(next_week, "rating_out_of_range", seed=2).to_parquet(env.part / "interactions.parquet", index=False)
    outcome = env.run(NEXT)
    assert not outcome.success and outcome.store_path is None
    assert "rating.range" in outcome.failed_checks
    assert store_state(env.settings) == before  # the store is untouched
    assert store.accepted_meta(env.settings, NEXT) is None
    q = outcome.quarantine_path
    assert q is not None and q.parent == store.week_dir(env.settings.quarantine_dir, NEXT)
    assert (q / "interactions.parquet").read_bytes() == (env.part / "interactions.parquet").read_bytes()
    result = json.loads((q / "result.json").read_text())
    assert result["success"] is False and set(result["suites"]) == {"users", "items", "interactions_week_04"}
    summary = (q / "summary.md").read_text()
    (failure,) = [f for f in outcome.failed if f.check == "rating.range"]
    assert "rating.range" in summary and "expect_column_values_to_be_between" in summary
    assert f"| {failure.unexpected_count} |" in summary and repr(failure.examples[0]) in summary
    notes = outbox(env.settings)
    assert len(notes) == sent + 1
    note = notes[-1]
    assert note["event"] == "batch_quarantined" and note["severity"] == "warning"
    assert note["body"] == summary and note["details"]["quarantine_path"] == str(q)


def test_a_bad_redelivery_keeps_the_good_copy(env: SimpleNamespace, batch: Callable[[int], pd.DataFrame]) -> None:
    before = store_state(env.settings)
    part = store.week_dir(env.settings.batches_dir, 3)
    good = (part / "interactions.parquet").read_bytes()
    try:
        inject(batch(3), "volume_drop").to_parquet(part / "interactions.parquet", index=False)
        outcome = env.run(3)
    finally:
        (part / "interactions.parquet").write_bytes(good)
    assert outcome.failed_checks == ["volume.band"]
    assert store_state(env.settings) == before


def test_an_unreadable_file_is_quarantined_and_notified(env: SimpleNamespace, next_week: pd.DataFrame) -> None:
    before, sent = store_state(env.settings), len(outbox(env.settings))
    path = write_corrupt_file(next_week, env.part, "truncated_parquet")
    outcome = env.run(NEXT)
    assert not outcome.success and outcome.error is not None
    assert outcome.error.startswith(f"{path}: cannot read as parquet")
    q = outcome.quarantine_path
    assert q is not None and (q / path.name).read_bytes() == path.read_bytes()
    assert json.loads((q / "result.json").read_text())["error"] == outcome.error
    assert outcome.error in (q / "summary.md").read_text()
    assert store_state(env.settings) == before
    assert outbox(env.settings)[sent:][0]["details"]["error"] == outcome.error


def test_a_csv_batch_is_accepted(env: SimpleNamespace, next_week: pd.DataFrame) -> None:
    next_week.drop(columns=[schema.WEEK]).to_csv(env.part / "interactions.csv", index=False)
    try:
        outcome = env.run(NEXT)
        assert outcome.success, outcome.failed
        pd.testing.assert_frame_equal(pd.read_parquet(outcome.store_path), next_week)
    finally:
        clear(env.part)


def test_data_docs_are_built(env: SimpleNamespace) -> None:
    index = env.outcomes[-1].data_docs
    assert index == env.settings.var_dir / "validation" / "data_docs" / "index.html"
    assert index.is_file()
    html = index.read_text()
    assert "interactions_week_03" in html and "users" in html
    assert (env.settings.var_dir / "validation" / "gx").is_dir()
