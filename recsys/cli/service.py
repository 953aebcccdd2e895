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


@app.command()
def smoke(
    url: Annotated[str | None, typer.Option(help="The service's base URL (default: RECSYS_SERVICE_URL, else "
                                                 "http://127.0.0.1:3000).")] = None,
    user: Annotated[int, typer.Option(min=0, help="A known user to ask for recommendations.")] = 1,
    n: Annotated[int, typer.Option(min=1, max=100, help="How many items.")] = 10,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for /readyz before failing.")] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Check a running service as a deployment does: /livez, /readyz, /predict for a known and a cold-start user."""
    from recsys.stages.service import SmokeParams
    from recsys.stages.service import smoke as smoke_stage

    params = SmokeParams(url=url or serving_settings().service_url, user_id=user, n=n, wait=wait)
    result = run(lambda: smoke_stage(params, reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        from rich.table import Table

        m = result.model
        table = Table("#", "item", "title", "score",
                      title=f"user {user}: {m.get('name')} v{m.get('version')} ({m.get('alias')})")
        for rank, item in enumerate(result.items, 1):
            table.add_row(str(rank), str(item["item_id"]), str(item.get("title") or ""), f"{item['score']:.3f}")
        yield table
        yield (f"{result.url}: ready after {result.ready_after:.1f} s, /predict in {result.latency_ms:.1f} ms, "
               f"a cold-start user got {result.cold_start_items} items")

    emit(result, as_json, render)
