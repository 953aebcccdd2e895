"""``recsys validate``: Great Expectations on incoming weekly batches; accept into the store or quarantine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from recsys.cli.common import REPORTER, JsonOption, emit, fail, run, settings

if TYPE_CHECKING:
    from rich.console import RenderableType


def validate(
    week: Annotated[int | None, typer.Option(help="Replay week whose incoming batch to validate.")] = None,
    all_weeks: Annotated[bool, typer.Option(
        "--all", help="Validate every incoming batch in week order (later weeks learn from earlier ones).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Validate incoming weekly batches with Great Expectations: accept into the training store or quarantine.

    Exits 1 if any batch was rejected (its folder under data/quarantine holds the file, the GX result and a
    summary; a notification goes out through RECSYS_NOTIFY's channels).
    """
    from recsys.stages.validate import ValidateParams
    from recsys.stages.validate import validate as validate_stage

    if (week is None) == (not all_weeks):
        fail("give either --week W or --all")
    cfg = settings()
    result = run(lambda: validate_stage(cfg, ValidateParams(weeks=None if week is None else [week]),
                                        reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        table = Table("week", "rows", "new users", "new items", "verdict", "failed checks", "s",
                      title=f"validation of {cfg.batches_dir}", box=box.SIMPLE_HEAD)
        for o in result.outcomes:
            failed = ", ".join(o.failed_checks) or ("unreadable file" if o.error else "–")
            table.add_row(f"{o.week:02d}", f"{o.rows:,}", str(o.new_users), str(o.new_items),
                          "accepted" if o.success else "QUARANTINED", failed, f"{o.seconds:.1f}",
                          style=None if o.success else "bold red")
        yield table
        for o in result.outcomes:
            if o.success:
                continue
            yield f"week {o.week:02d} quarantined: {o.quarantine_path}/summary.md"
            if o.error:
                yield Text(f"  {o.error}")
            for f in o.failed[:5]:
                examples = ", ".join(repr(v) for v in f.examples[:3])
                yield Text(f"  {f.check}: {f.expectation} on {f.column or 'the table'}"
                           f"{f' ({f.unexpected_count} rows)' if f.unexpected_count else ''}"
                           f"{f', e.g. {examples}' if examples else ''}")
        if result.data_docs is not None:
            yield f"Data Docs: {result.data_docs}"
        yield f"{result.accepted} of {len(result.outcomes)} batch(es) accepted into {result.store_dir}"

    emit(result, as_json, render)
    if not result.passed:  # the one line a scheduler's task log and alert carry
        fail("; ".join(f"week {o.week:02d} quarantined ({', '.join(o.failed_checks) or o.error or 'failed'}): "
                       f"{o.quarantine_path}" for o in result.outcomes if not o.success))
