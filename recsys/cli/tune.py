"""``recsys tune``: an Optuna search over the ranker's parameters on the validation weeks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from recsys.cli.common import REPORTER, JsonOption, emit, run, settings
from recsys.cli.train import ConfigOption

if TYPE_CHECKING:
    from rich.console import RenderableType

HEADERS = {"num_leaves": "leaves", "learning_rate": "lr", "min_child_samples": "min_child",
           "feature_fraction": "ff", "lambda_l2": "l2", "label_windows": "windows",
           "candidates.per_generator": "per_gen"}


def tune(
    as_of_week: Annotated[int, typer.Option(
        "--as-of-week", help="Tune for a model trained as of week W (the objective reads weeks < W only).")],
    trials: Annotated[int, typer.Option("--trials", min=1, help="Number of Optuna trials.")] = 20,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the best config: a params .yaml (its candidates and ranker sections) or a "
                      "JSON config file. Default: params.yaml, which training reads.")] = None,
    config: ConfigOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Optuna search over the ranker's parameters on the validation window; each trial a nested MLflow run."""
    from recsys.stages.inputs import load_train_config
    from recsys.stages.tune import TuneParams
    from recsys.stages.tune import tune as tune_stage

    cfg = settings()
    result = run(lambda: tune_stage(cfg, TuneParams(as_of_week=as_of_week, trials=trials, out=out_path, seed=seed,
                                                    config=load_train_config(cfg, config)), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        names = list(result.trials[0].params) if result.trials else []
        table = Table(title=f"tuning as of week {as_of_week}: validation NDCG@10 per trial",
                      caption="per_gen = candidates.per_generator; trees = best iteration; bold = best",
                      box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
        for header in ["#", "NDCG", *(HEADERS.get(n, n) for n in names), "trees", "s"]:
            table.add_column(header, justify="right", no_wrap=True)
        for t in result.trials:
            cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in t.params.values()]
            table.add_row(str(t.number), f"{t.value:.4f}", *cells, str(t.best_iteration), f"{t.seconds:.0f}",
                          style="bold" if t.value == result.best_value else None)
        yield table
        best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
        yield f"best val NDCG@10 {result.best_value:.4f}: {best}"
        how = "" if result.config_path == cfg.params_file else f" --config {result.config_path}"
        yield f"config: {result.config_path}   (train with: recsys train --as-of-week {as_of_week}{how})"

    emit(result, as_json, render)
