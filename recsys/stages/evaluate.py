"""The evaluation stage: the rolling temporal backtest and/or RecBole's 80/10/10 protocol, with reports.

Every figure in ``reports/metrics.json`` (DVC's metrics) and in the README's result tables comes from here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from recsys.config import TrainConfig
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult
from recsys.stages.inputs import TrainingData, load_training_data

Protocol = Literal["backtest", "recbole", "both"]
PROTOCOL_NAMES = {"backtest": "temporal_backtest", "recbole": "recbole"}
SET_NAMES = {"temporal_backtest": "report cuts", "temporal_design": "design cuts"}
"""The backtest's two sets of cuts (``backtest.report_from`` splits them): every design choice is made on the design
cuts; the report cuts, which no choice looks at, are the headline."""


class EvaluateParams(BaseModel):
    protocol: Protocol = "backtest"
    cuts: list[int] | None = Field(None, description="backtest cut weeks; default: every cut of the config")
    config: TrainConfig = Field(default_factory=TrainConfig)
    report_dir: Path | None = Field(None, description="also write metrics.json (flat) and per protocol the "
                                                      "tables, report.md and plots here")
    json_path: Path | None = Field(None, description="also write the summaries as one JSON file here")
    n_resamples: int = Field(2000, ge=100, description="bootstrap resamples of the gains' confidence intervals")


class ProtocolSummary(BaseModel):
    """One protocol's summary: metrics per slice and model, fit seconds, the ranker's gains (JSON data)."""

    title: str
    markdown: str = Field(description="the tables and the gain line, as printed")
    summary: dict[str, Any]
    seconds: float = Field(description="wall time of the protocol (every fit and evaluation)")


class EvaluateResult(StageResult):
    data_hash: str
    data_source: str
    cuts: list[int] | None
    protocols: dict[str, ProtocolSummary] = Field(description="'temporal_backtest' (the report cuts), "
                                                   "'temporal_design' (the design cuts) and/or 'recbole'")
    report_dir: Path | None
    metrics_path: Path | None
    json_path: Path | None


def check_cuts(cuts: list[int], data: TrainingData, config: TrainConfig) -> list[int]:
    """The sorted distinct cuts; StageError before any training if one has no room for its windows."""
    from recsys.ranking.train import training_starts

    h, n_weeks = config.backtest.horizon, data.clock.n_weeks
    valid = [w for w in range(1, n_weeks + 1) if training_starts(w, config) and w + h <= n_weeks]
    bad = sorted({w for w in cuts if w not in valid})
    if bad:
        span = f"{valid[0]}..{valid[-1]}" if valid else "none"
        raise StageError(f"cut week(s) {bad} out of range: with horizon {h} the backtest can cut at weeks {span}")
    if not cuts:
        raise StageError("no cut weeks given")
    return sorted(set(cuts))


def evaluate(settings: Settings, params: EvaluateParams, *, reporter: Reporter = SILENT,
             data: TrainingData | None = None) -> EvaluateResult:
    """Run the protocol(s), render them, and write the reports that were asked for."""
    from recsys.evaluation.protocols import EvalResult, run_backtest, run_recbole
    from recsys.evaluation.report import recbole_reference_row, render_result, summarize_result

    cfg = params.config
    data = data or load_training_data(settings)
    ml = data.ml
    run_cuts = params.protocol in ("backtest", "both")
    cuts = check_cuts(params.cuts or cfg.backtest.cuts(), data, cfg) if run_cuts else None
    reporter.note(data.source)
    results: dict[str, EvalResult] = {}
    seconds: dict[str, float] = {}
    protocols: dict[str, ProtocolSummary] = {}
    if cuts is not None:
        reporter.note(f"backtest: {len(cuts)} cut(s) {cuts}, horizon {cfg.backtest.horizon} …")
        t0 = time.perf_counter()
        with reporter.progress("temporal backtest", "cuts") as track:
            backtest = run_backtest(ml, cfg, cuts, progress=track, clock=data.clock)
        seconds["temporal_backtest"] = seconds["temporal_design"] = time.perf_counter() - t0
        # the report cuts are the headline; design cuts (where every choice was made) are shown apart
        for name, part in (("temporal_design", cfg.backtest.design_cuts()), ("temporal_backtest",
                                                                          cfg.backtest.report_cuts())):
            if set(cuts) & set(part):
                results[name] = backtest.subset([w for w in cuts if w in part], name)
    if params.protocol in ("recbole", "both"):
        t0 = time.perf_counter()
        with reporter.status("RecBole protocol: fitting on the 80 % split …"):
            results["recbole"] = run_recbole(ml, cfg)
        seconds["recbole"] = time.perf_counter() - t0
    for name, result in results.items():
        summary = summarize_result(result, params.n_resamples)
        if name in SET_NAMES:
            shown = result.info["cuts"]
            shown = shown if len(shown) <= 5 else f"{shown[0]}..{shown[-1]}: {len(shown)} cuts"
            title = f"Temporal backtest, {SET_NAMES[name]} (cuts {shown}, horizon {cfg.backtest.horizon} weeks)"
            extra = None
        else:
            title, extra = "RecBole protocol (random 80/10/10 per user)", recbole_reference_row()
        protocols[name] = ProtocolSummary(title=title, markdown=render_result(result, summary, title, extra),
                                          summary=summary, seconds=round(seconds[name], 1))
    metrics_path = None
    if params.report_dir is not None:
        from recsys.evaluation.report import flat_metrics, write_report

        for name, result in results.items():
            write_report(result, protocols[name].summary, params.report_dir / name)
        metrics_path = params.report_dir / "metrics.json"
        metrics_path.write_text(json.dumps({name: flat_metrics(p.summary) for name, p in protocols.items()},
                                           indent=2, sort_keys=True))
    if params.json_path is not None:
        params.json_path.parent.mkdir(parents=True, exist_ok=True)
        params.json_path.write_text(json.dumps({"data_hash": ml.data_hash, "config": cfg.model_dump(mode="json"),
                                                "protocols": {n: p.summary for n, p in protocols.items()}},
                                               indent=2))
    return EvaluateResult(data_hash=ml.data_hash, data_source=data.source, cuts=cuts, protocols=protocols,
                          report_dir=params.report_dir, metrics_path=metrics_path, json_path=params.json_path)
