"""Data stages: fetch MovieLens-100K (or synthesize a larger one like it), ingest weeks of the replay as incoming
batches, inject a fault (a drill)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.config import FittedStats, SynthParams
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult
from recsys.stages.inputs import load_raw


class FetchResult(StageResult):
    raw_dir: Path
    data_hash: str
    users: int
    items: int
    interactions: int
    weeks: int
    first_day: datetime
    last_day: datetime


def fetch(settings: Settings, *, reporter: Reporter = SILENT) -> FetchResult:
    """Download MovieLens-100K from the recbole==1.2.1 wheel (cached), verify its checksums and load it."""
    from recsys.data.fetch import fetch_movielens
    from recsys.data.synth import SYNTH_MARKER

    if (settings.raw_dir / SYNTH_MARKER).exists():
        raise StageError(f"{settings.raw_dir} holds a synthetic data set ({SYNTH_MARKER}); fetch MovieLens-100K "
                         "into another data dir (RECSYS_DATA_DIR) instead of overwriting it")
    with reporter.status("fetching MovieLens-100K (recbole==1.2.1 wheel)…"):
        raw_dir = fetch_movielens(settings.raw_dir, settings.wheel_cache)
    ml, clock = load_raw(settings)
    return FetchResult(raw_dir=raw_dir, data_hash=ml.data_hash, users=len(ml.users), items=len(ml.items),
                       interactions=len(ml.interactions), weeks=clock.n_weeks,
                       first_day=clock.bounds(0)[0].to_pydatetime(),
                       last_day=clock.bounds(clock.n_weeks - 1)[1].to_pydatetime())


class SynthRequest(SynthParams):
    data_dir: Path = Field(description="data dir to write (its raw/ml-100k holds the files, as `fetch` writes "
                                       "them); point RECSYS_DATA_DIR at it to run the pipeline on it")


class SynthResult(StageResult):
    raw_dir: Path
    users: int
    items: int
    interactions: int
    weeks: int
    seconds: float
    reference: FittedStats
    synthetic: FittedStats


def synth(settings: Settings, params: SynthRequest, *, reporter: Reporter = SILENT) -> SynthResult:
    """Write a synthetic MovieLens of ``params.interactions`` ratings into ``params.data_dir``, fitted from the real
    ML-100K of ``settings`` (fetched first when missing); see :mod:`recsys.data.synth`."""
    from recsys.data.fetch import fetch_movielens
    from recsys.data.load import MovieLens
    from recsys.data.replay import ReplayClock
    from recsys.data.synth import SYNTH_MARKER, fit, synthesize, write_atomic

    out = params.data_dir / settings.raw_dir.relative_to(settings.data_dir)
    if out.resolve() == settings.raw_dir.resolve():
        raise StageError(f"data_dir {params.data_dir} is the data dir of the real MovieLens-100K; "
                         "write the synthetic set into another one")
    started = time.perf_counter()
    with reporter.status("fetching the reference MovieLens-100K…"):
        fetch_movielens(settings.raw_dir, settings.wheel_cache)
    ref, clock = load_raw(settings)
    with reporter.status(f"synthesizing {params.interactions:,} ratings…"):
        users, items, interactions, reference = synthesize(ref, clock.origin, clock.n_weeks, params)
    synthetic = fit(MovieLens(users=users, items=items, interactions=interactions, data_hash=""), clock.origin)
    with reporter.status(f"writing {out}…"):
        write_atomic(users, items, interactions, out)
    result = SynthResult(raw_dir=out, users=len(users), items=len(items), interactions=len(interactions),
                         weeks=int(ReplayClock.from_interactions(interactions).n_weeks),
                         seconds=round(time.perf_counter() - started, 2), reference=reference, synthetic=synthetic)
    (out / SYNTH_MARKER).write_text(json.dumps({"params": params.model_dump(mode="json"),
                                                **result.model_dump(mode="json")}, indent=2) + "\n")
    return result


class IngestParams(BaseModel):
    weeks: list[int] | None = Field(None, description="replay weeks to write; None: every week of the timeline")


class WeekBatch(BaseModel):
    week: int
    start: datetime
    end: datetime
    rows: int
    path: Path


class IngestResult(StageResult):
    batches_dir: Path
    batches: list[WeekBatch]


def ingest(settings: Settings, params: IngestParams, *, reporter: Reporter = SILENT) -> IngestResult:
    """Write the weekly batch partitions ``<batches_dir>/week=WW`` (idempotent: a rerun overwrites them)."""
    from recsys.data.replay import interactions_of_week, write_week

    ml, clock = load_raw(settings)
    weeks = list(range(clock.n_weeks)) if params.weeks is None else params.weeks
    for w in weeks:
        clock.check_week(w)
    batches = []
    with reporter.progress("writing weekly batches", "weeks") as track:
        for w in track(weeks):
            path = write_week(ml.interactions, clock, w, settings.batches_dir)
            start, end = clock.bounds(w)
            batches.append(WeekBatch(week=w, start=start.to_pydatetime(), end=end.to_pydatetime(),
                                     rows=len(interactions_of_week(ml.interactions, clock, w)), path=path))
    return IngestResult(batches_dir=settings.batches_dir, batches=batches)


class InjectParams(BaseModel):
    week: int
    fault: str = Field(description="a value fault (GX must catch it) or a file fault (the reader must)")
    seed: int = 0


class InjectResult(StageResult):
    week: int
    fault: str
    path: Path


def inject(settings: Settings, params: InjectParams) -> InjectResult:
    """Replace a week's incoming batch with a corrupted copy; ``ingest`` of that week restores the good one."""
    from recsys.data.faults import FAULTS, FILE_FAULTS, write_corrupt_file
    from recsys.data.faults import inject as corrupt
    from recsys.validation.reader import BATCH_FILES, find_batch_file, read_batch

    if params.fault not in FAULTS + FILE_FAULTS:
        raise StageError(f"unknown fault {params.fault!r}; value faults: {', '.join(FAULTS)}; "
                         f"file faults: {', '.join(FILE_FAULTS)}")
    part = settings.batches_dir / f"week={params.week:02d}"
    batch = read_batch(find_batch_file(part), params.week)
    for name in BATCH_FILES:
        (part / name).unlink(missing_ok=True)
    if params.fault in FAULTS:
        path = part / "interactions.parquet"
        corrupt(batch, params.fault, seed=params.seed).to_parquet(path, index=False)
    else:
        path = write_corrupt_file(batch, part, params.fault)
    return InjectResult(week=params.week, fault=params.fault, path=path)
