"""``recsys train``: train as of a week, score the next H weeks, log to MLflow, register a challenger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from recsys.cli.common import REPORTER, JsonOption, ModelOption, emit, num, run, settings
from recsys.schema import K

if TYPE_CHECKING:
    from rich.console import RenderableType

    from recsys.stages.train import HoldoutReport

METRICS = [f"{m}@{K}" for m in ("ndcg", "recall", "map", "mrr", "hit_rate")]
ConfigOption = Annotated[Path | None, typer.Option(
    help="JSON file with TrainConfig fields (candidates, ranker, backtest), or a params YAML; default: "
         "RECSYS_PARAMS_FILE (params.yaml) when it exists, else the code's defaults.")]


def holdout_table(report: HoldoutReport) -> Table:
    """The ranker against each single generator on the held-out weeks (all, warm and cold users)."""
    all_, warm, cold = (report.metrics.get(s, {}) for s in ("all", "warm", "cold"))
    users = {s: int(max((row.get("users") or 0 for row in report.metrics.get(s, {}).values()), default=0))
             for s in ("warm", "cold")}
    table = Table(title=f"@{K} on the held-out {report.window} ({users['warm']} warm + {users['cold']} cold users)",
                  caption="HR = HitRate; warm, cold = NDCG of each user slice", box=box.SIMPLE_HEAD,
                  padding=(0, 1), pad_edge=False)
    table.add_column("model", no_wrap=True)
    for header in ("NDCG", "Recall", "MAP", "MRR", "HR", "warm", "cold"):
        table.add_column(header, justify="right", no_wrap=True)
    for model, row in all_.items():
        cells = [num(row.get(m)) for m in METRICS]
        cells += [num(part.get(model, {}).get(f"ndcg@{K}")) for part in (warm, cold)]
        table.add_row(model, *cells, style="bold" if model == "ranker" else None)
    return table


def train(
    as_of_week: Annotated[int, typer.Option("--as-of-week", help="Train on weeks < W (W = the replay week).")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Bundle directory (default: var/models/week=WW).")] = None,
    config: ConfigOption = None,
    register: Annotated[bool, typer.Option(
        "--register/--no-register", help="Register the logged model as a new version (alias challenger).")
    ] = True,
    through_week: Annotated[int | None, typer.Option(
        "--through-week", help="Use the validated weeks up to this one only (what a scheduled run for that week "
                               "knew); default: all.")] = None,
    reuse: Annotated[bool, typer.Option(
        "--reuse", help="If a registered version already holds this training's run key, return it without "
                        "training again.")] = False,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train as of a week, score it on the next H weeks, log the run to MLflow and register the model."""
    from recsys.evaluation.report import format_gain
    from recsys.stages.inputs import load_train_config
    from recsys.stages.train import TrainParams
    from recsys.stages.train import train as train_stage

    cfg = settings(model=model)
    result = run(lambda: train_stage(cfg, TrainParams(as_of_week=as_of_week, config=load_train_config(cfg, config),
                                                      out_dir=out_dir, register_version=register,
                                                      through_week=through_week, reuse=reuse), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        if result.holdout is not None:
            yield holdout_table(result.holdout)
            yield format_gain(result.holdout.gains["all"])
        if result.reused:
            yield f"not trained again: v{result.version} already holds run key {result.run_key}"
        else:
            yield (f"fit {result.fit_seconds:.1f} s (ranker {result.fit_ranker_seconds:.1f} s), best iteration "
                   f"{result.best_iteration}")
        yield f"bundle: {result.bundle or '(not in this var dir)'}   metrics: {result.metrics_path or '–'}"
        yield f"MLflow run {result.run_id} (run key {result.run_key}) in {result.tracking_uri}"
        if result.version is None:
            return
        if result.created:
            yield (f"registered as {result.model_name} v{result.version} (alias challenger); gate it: "
                   f"recsys registry gate --version {result.version}")
        else:
            yield (f"already registered (same week, config and data) as {result.model_name} v{result.version}; "
                   "no new version")

    emit(result, as_json, render)
