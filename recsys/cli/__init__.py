"""The ``recsys`` command line: a small root over one module per command group, each a thin wrapper over a stage.

Heavy modules (pandas, LightGBM, MLflow) are imported inside the commands, so ``recsys --help`` stays fast.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from recsys.cli import (
    ab,
    config,
    data,
    db,
    drift,
    evaluate,
    monitor,
    notify,
    registry,
    schedule,
    serve,
    service,
    simulate,
    train,
    tune,
    validate,
)
from recsys.runtime import prepare_process

app = typer.Typer(help="Two-stage content recommender on MovieLens-100K, replayed week by week.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
app.add_typer(data.app, name="data")
app.add_typer(db.app, name="db")
app.add_typer(registry.app, name="registry")
app.add_typer(config.app, name="config")
app.add_typer(monitor.app, name="monitor")
app.add_typer(ab.app, name="ab")
app.add_typer(notify.app, name="notify")
app.add_typer(schedule.app, name="schedule")
app.add_typer(service.app, name="service")
app.command()(validate.validate)
app.command()(train.train)
app.command()(tune.tune)
app.command()(evaluate.evaluate)
app.command()(serve.serve)
app.command()(serve.bake)
app.command()(simulate.simulate)
app.command()(drift.drift)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the library's progress.")] = False,
) -> None:
    prepare_process(verbose)
    if verbose:
        from rich.logging import RichHandler

        from recsys.cli.common import err

        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=err)])
