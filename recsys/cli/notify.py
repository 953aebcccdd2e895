"""``recsys notify``: test the channels, replay pending deliveries, list recent notifications."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import JsonOption, emit, run, settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="Notifications: test the channels, replay pending deliveries, list recent ones.",
                  no_args_is_help=True)

_STYLE = {"sent": "green", "pending": "yellow", "sending": "yellow", "failed": "bold red", "suppressed": "dim"}


@app.command("test")
def test_(as_json: JsonOption = False) -> None:
    """Send a test message to every channel of RECSYS_NOTIFY; exit 1 when one of them did not deliver it."""
    from recsys.stages.notify import send_test

    result = run(lambda: send_test(settings()))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        table = Table("channel", "status", "attempts", "error", title=f"test notification {result.id}")
        for c in result.channels:
            table.add_row(c.channel, c.status, str(c.attempts), c.error or "", style=_STYLE.get(c.status))
        yield table
        yield f"{'every channel delivered it' if result.ok else 'NOT DELIVERED everywhere'}; store {result.store}"

    emit(result, as_json, render)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def replay(
    include_failed: Annotated[bool, typer.Option("--include-failed", help="Also retry deliveries the receiver "
                                                 "refused for good (after fixing the cause).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Send every pending (message, channel) again; exit 1 when some are still pending afterwards."""
    from recsys.stages.notify import replay as replay_stage

    result = run(lambda: replay_stage(settings(), include_failed=include_failed))
    o = result.outcome

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        table = Table("channel", "sent", "pending", "failed", "not configured", title="replay")
        for name, counts in sorted(o.channels.items()):
            table.add_row(name, *(str(counts.get(k, 0)) for k in ("sent", "pending", "failed", "not configured")))
        yield table
        yield (f"claimed {o.claimed}: {o.sent} sent, {o.pending} still pending, {o.failed} failed, "
               f"{o.skipped} skipped; store {result.store}")

    emit(result, as_json, render)
    if o.pending:
        raise typer.Exit(1)


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    pending: Annotated[bool, typer.Option("--pending", help="Only messages some channel has not delivered.")
                       ] = False,
    as_json: JsonOption = False,
) -> None:
    """Recent notifications with each channel's delivery status."""
    from recsys.stages.notify import recent

    result = run(lambda: recent(settings(), limit=limit, pending=pending))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table
        from rich.text import Text

        table = Table("created (UTC)", "id", "event", "title", "channels")
        for n in result.notifications:
            cells = Text()
            for i, d in enumerate(n.deliveries):
                label = f"{d.channel}:{d.status}" + (f"×{d.attempts}" if d.attempts > 1 else "")
                cells.append(("  " if i else "") + label, style=_STYLE.get(d.status))
            table.add_row(f"{n.created_at:%Y-%m-%d %H:%M:%S}", n.id, n.event, n.title, cells)
        yield table
        yield f"{len(result.notifications)} notification(s); store {result.store}"

    emit(result, as_json, render)
