"""``recsys service``: talk to a running recommendation service (its admin endpoints)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, serving_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer(help="A running service's admin endpoints (bearer token: RECSYS_ADMIN_TOKEN).",
                  no_args_is_help=True)


@app.command()
def reload(
    url: Annotated[str | None, typer.Option(help="The service's base URL (default: RECSYS_SERVICE_URL, else "
                                                 "http://127.0.0.1:3000).")] = None,
    expect_version: Annotated[int | None, typer.Option(
        "--expect-version", min=1, help="Fail unless the champion served afterwards is this version.")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per attempt.")] = 10.0,
    attempts: Annotated[int, typer.Option(min=1, max=10, help="Attempts on a connection error or a 5xx.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Reload every alias from the registry now (after a promotion or a rollback) and show what is served."""
    from recsys.stages.service import ReloadParams, reload_service

    cfg = serving_settings()
    params = ReloadParams(url=url or cfg.service_url, expect_version=expect_version, timeout=timeout,
                          attempts=attempts)
    result = run(lambda: reload_service(cfg, params, reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        served = ", ".join(f"{alias} v{v}" for alias, v in sorted(result.versions.items())) or "nothing"
        done = ", ".join(f"{alias}: {what}" for alias, what in sorted(result.outcome.items())) or "no change"
        yield f"{result.url} reloaded in {result.seconds:.3f} s ({done}); serving {served}"

    emit(result, as_json, render)
