"""``recsys db``: migrate the project's SQL stores (audit log, notifications, feedback, bandit) or show their state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer

from recsys.cli.common import JsonOption, emit, run, serving_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="The SQL stores' schemas: migrate them (idempotent) or show their versions.",
                  no_args_is_help=True)


@app.command()
def migrate(as_json: JsonOption = False) -> None:
    """Create missing tables and run pending upgrade steps on every store (RECSYS_AUDIT_URL, RECSYS_NOTIFY_URL,
    RECSYS_FEEDBACK_URL, RECSYS_BANDIT_URL; SQLite under var/ when unset). Safe to run at every deploy."""
    from recsys.stages.db import migrate as migrate_stage

    result = run(lambda: migrate_stage(serving_settings()))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        table = Table("store", "database", "from", "to", "steps run", "tables created", title="migrations")
        for m in result.stores:
            table.add_row(m.store, m.url, "new" if m.from_version is None else str(m.from_version),
                          str(m.to_version), ", ".join(map(str, m.applied)) or "-", ", ".join(m.created) or "-")
        yield table
        yield "schemas brought up to date" if result.changed else "every schema was already current"

    emit(result, as_json, render)


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Each store's recorded schema version beside the code's; exit 1 when one needs `recsys db migrate`."""
    from recsys.stages.db import status as status_stage

    result = run(lambda: status_stage(serving_settings()))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        table = Table("store", "database", "version", "code", title="schema versions")
        for s in result.stores:
            table.add_row(s.store, s.url, "not migrated" if s.version is None else str(s.version),
                          str(s.code_version), style=None if s.current else "yellow")
        yield table
        yield "every store is current" if result.current else "run `recsys db migrate`"

    emit(result, as_json, render)
    if not result.current:
        raise typer.Exit(1)
