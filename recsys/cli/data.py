"""``recsys data``: fetch MovieLens-100K (or synthesize a larger one), replay it as weekly batches, inject a fault
(a drill)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from recsys.cli.common import REPORTER, JsonOption, emit, fail, run, settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="Fetch MovieLens-100K and replay it as weekly batches.", no_args_is_help=True)


@app.command("fetch")
def fetch(as_json: JsonOption = False) -> None:
    """Download MovieLens-100K from the recbole==1.2.1 wheel (cached), verify its checksums and load it."""
    from recsys.stages.data import fetch as fetch_stage

    result = run(lambda: fetch_stage(settings(), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        table = Table(title="MovieLens-100K", show_header=False)
        for key, value in [("raw dir", str(result.raw_dir)), ("data hash", result.data_hash),
                           ("users", f"{result.users:,}"), ("items", f"{result.items:,}"),
                           ("interactions", f"{result.interactions:,}"),
                           ("replay weeks", f"{result.weeks} (0..{result.weeks - 1}), "
                                            f"{result.first_day:%Y-%m-%d} → {result.last_day:%Y-%m-%d}")]:
            table.add_row(key, value)
        yield table

    emit(result, as_json, render)


@app.command("synth")
def synth(
    interactions: Annotated[int, typer.Option(help="Number of ratings to write (25000000: ML-25M's shape).")],
    out: Annotated[Path, typer.Option(help="Data dir to write; run the pipeline on it with RECSYS_DATA_DIR=OUT.")],
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    users: Annotated[int | None, typer.Option(help="Number of users (default: scaled like MovieLens).")] = None,
    items: Annotated[int | None, typer.Option(help="Number of items (default: scaled like MovieLens).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a synthetic MovieLens of any size in the real schema, fitted from ML-100K (seeded).

    Then `RECSYS_DATA_DIR=OUT recsys data replay --all`, `recsys validate --all`, `recsys train` run on it.
    """
    from recsys.stages.data import SynthRequest
    from recsys.stages.data import synth as synth_stage

    request = run(lambda: SynthRequest(interactions=interactions, data_dir=out, seed=seed, users=users,
                                       items=items))
    result = run(lambda: synth_stage(settings(), request, reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        table = Table("statistic", "ML-100K", "synthetic",
                      title=f"{result.interactions:,} ratings, {result.users:,} users, {result.items:,} items, "
                            f"{result.weeks} weeks in {result.raw_dir} ({result.seconds:.1f} s)")
        ref, syn = result.reference.model_dump(), result.synthetic.model_dump()
        for key in ref:
            fmt = (lambda v: " ".join(f"{x:.3f}" for x in v)) if key == "rating_shares" else (lambda v: f"{v:.3f}")
            table.add_row(key.replace("_", " "), fmt(ref[key]), fmt(syn[key]))
        yield table

    emit(result, as_json, render)


@app.command("replay")
def replay(
    week: Annotated[int | None, typer.Option(help="Replay week to write (week 0 holds the first rating).")] = None,
    all_weeks: Annotated[bool, typer.Option("--all", help="Write every week of the timeline.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the weekly batch partition(s) data/batches/week=WW (idempotent: a rerun overwrites them)."""
    from recsys.stages.data import IngestParams, ingest

    if (week is None) == (not all_weeks):
        fail("give either --week W or --all")
    cfg = settings()
    result = run(lambda: ingest(cfg, IngestParams(weeks=None if week is None else [week]), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        table = Table("week", "from (UTC)", "to (UTC)", "rows", title=f"batches in {result.batches_dir}")
        for b in result.batches:
            table.add_row(str(b.week), f"{b.start:%Y-%m-%d %H:%M}", f"{b.end:%Y-%m-%d %H:%M}", f"{b.rows:,}")
        yield table

    emit(result, as_json, render)


@app.command("inject")
def inject(
    week: Annotated[int, typer.Option(help="Replay week whose incoming batch is corrupted.")],
    fault: Annotated[str, typer.Option(help="A value fault (GX must catch it) or a file fault (the reader must).")],
    seed: Annotated[int, typer.Option(help="Seed of the fault's random choices.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Replace a week's incoming batch with a corrupted copy (a failure drill: `recsys validate` must reject it).

    `recsys data replay --week W` restores the good batch.
    """
    from recsys.stages.data import InjectParams
    from recsys.stages.data import inject as inject_stage

    result = run(lambda: inject_stage(settings(), InjectParams(week=week, fault=fault, seed=seed)))
    emit(result, as_json, lambda: [f"week {week:02d}: wrote a batch with fault {fault!r} to {result.path}; "
                                   f"restore it with `recsys data replay --week {week}`"])
