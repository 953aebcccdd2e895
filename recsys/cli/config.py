"""``recsys config``: the settings in effect (secrets masked), and the reference docs/configuration.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recsys.cli.common import fail, out, serving_settings

app = typer.Typer(help="The settings: every RECSYS_* variable, its value in effect and its meaning.",
                  no_args_is_help=True)


@app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False) -> None:
    """Print every setting's variable, the value in effect (secrets masked) and its default."""
    import json

    from recsys.settings import effective

    rows = effective(serving_settings())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("variable", "value", "default", title="settings in effect (ServingSettings ⊇ Settings)")
    for row in rows:
        changed = row["value"] != row["default"]
        table.add_row(row["variable"], row["value"], row["default"], style="bold" if changed else None)
    out.print(table)


@app.command("docs")
def docs(
    check: Annotated[Path | None, typer.Option(
        "--check", help="Fail (exit 1) if this file differs from the generated reference.")] = None,
) -> None:
    """Print the configuration reference (docs/configuration.md) generated from the settings."""
    from recsys.settings import reference_markdown

    text = reference_markdown()
    if check is None:
        typer.echo(text, nl=False)
        return
    if not check.exists() or check.read_text(encoding="utf-8") != text:
        fail(f"{check} is stale: regenerate it with `recsys config docs > {check}`")
    out.print(f"{check} is current")
