"""``recsys evaluate``: the rolling temporal backtest and/or RecBole's protocol, as tables and reports."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, fail, run, settings
from recsys.cli.train import ConfigOption

if TYPE_CHECKING:
    from rich.console import RenderableType


class Protocol(StrEnum):
    backtest = "backtest"
    recbole = "recbole"
    both = "both"


def parse_cuts(text: str | None) -> list[int] | None:
    """``"12,16,20"`` -> ``[12, 16, 20]``; a one-line error for anything else."""
    if text is None:
        return None
    try:
        cuts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(f"--cuts must be comma-separated week numbers such as 12,16,20, got {text!r}")
    if not cuts:
        fail("--cuts is empty")
    return cuts


def evaluate(
    protocol: Annotated[Protocol, typer.Option(
        help="Which offline protocol(s) to run (see docs/protocols.md).")] = Protocol.backtest,
    cuts: Annotated[str | None, typer.Option(
        help="Backtest cut weeks, comma-separated (e.g. 12,16,20); default: every cut of the config.")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--out", help="Also write the summaries (every model's metrics per slice, the gains) as JSON here.")
    ] = None,
    config: ConfigOption = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report-dir", help="Also write metrics.json (flat, per protocol) and per protocol the tables, "
                             "report.md and plots here.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the rolling temporal backtest and/or RecBole's 80/10/10 protocol; print tables and the gain."""
    from recsys.stages.evaluate import EvaluateParams
    from recsys.stages.evaluate import evaluate as evaluate_stage
    from recsys.stages.inputs import load_train_config

    cfg = settings()
    cut_list = parse_cuts(cuts)
    result = run(lambda: evaluate_stage(cfg, EvaluateParams(
        protocol=protocol.value, cuts=cut_list, config=load_train_config(cfg, config), report_dir=report_dir,
        json_path=json_path), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        for summary in result.protocols.values():
            yield summary.markdown
        if result.report_dir is not None:
            yield f"reports: {result.report_dir}"
        if result.json_path is not None:
            yield f"results: {result.json_path}"

    emit(result, as_json, render)
