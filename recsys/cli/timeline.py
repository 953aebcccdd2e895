"""``recsys registry timeline``: the champion's version and held-out NDCG@10 week by week over the replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from recsys.cli.common import REPORTER, JsonOption, ModelOption, emit, num, run, settings, versions_label

if TYPE_CHECKING:
    from rich.console import RenderableType

_STYLES = {"promoted": "green", "pending": "yellow", "rejected by gate": None}


def timeline(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for timeline.json/.csv/.md/.png (default: <var_dir>/reports/replay).")] = None,
    mlflow: Annotated[bool, typer.Option(
        "--mlflow/--no-mlflow", help="Log the files and per-week metrics as a run of 'replay-timeline'.")] = True,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """The champion week by week: version and NDCG@10 on each gated week's held-out window, from the decisions."""
    from recsys.stages.timeline import TimelineParams
    from recsys.stages.timeline import timeline as timeline_stage

    params = TimelineParams(out_dir=out, log_mlflow=mlflow)
    result = run(lambda: timeline_stage(settings(model=model), params, reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        summary = result.summary
        table = Table(title=f"{result.model}: the champion week by week", box=box.SIMPLE_HEAD,
                      caption="NDCG@10 on the week's held-out gate window [W − H, W); challenger (trained to week)")
        for header in ("week", "challenger", "champion", "outcome", "champion\nNDCG@10", "challenger\nNDCG@10",
                       "best generator\nNDCG@10", "users", "reruns"):
            table.add_column(header, justify="right" if "NDCG" in header or header in ("week", "users", "reruns")
                             else "left", no_wrap=header in ("outcome", "champion"))
        for row in result.rows:
            table.add_row(str(row.week), f"v{row.challenger_version} ({row.challenger_as_of_week})",
                          versions_label(row.champion_before, row.champion_after), row.outcome,
                          num(row.champion_ndcg, ".4f"), num(row.challenger_ndcg, ".4f"),
                          f"{row.best_generator} {num(row.best_generator_ndcg, '.4f')}", str(row.users),
                          str(row.reruns), style=_STYLES.get(row.outcome))
        yield table
        for row in result.rows:
            for move in row.moves_before or ():
                yield f"before week {row.week}: {move}"
        yield (f"{summary.weeks_gated} weeks gated ({summary.first_week}–{summary.last_week}), "
               f"{summary.promotions} promotion(s), {summary.reruns} rerun(s); champions "
               f"{' → '.join(f'v{v}' for v in summary.champion_versions) or '–'}; mean champion NDCG@10 "
               f"{num(summary.mean_champion_ndcg, '.4f')} over {summary.weeks_scored} week(s)")
        paths = result.paths
        names = ", ".join(p.name for p in (paths.json_path, paths.csv, paths.markdown, paths.plot))
        yield f"files: {paths.json_path.parent}/ ({names})"
        if result.mlflow_run_id:
            yield f"MLflow run: {result.mlflow_run_id}"

    emit(result, as_json, render)
