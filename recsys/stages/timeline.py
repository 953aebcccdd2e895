"""The timeline stage: the champion's version and held-out NDCG@10 week by week over the replay.

Reads the model's gate decision records (``<var_dir>/registry/decisions/<model>-v*.json``) and, to annotate
promotions and rollbacks made between two gates, the audit log; builds one row per gated week
(:func:`~recsys.registry.timeline.build_timeline`, whose docstring says what each column means and why) and
writes ``timeline.json``, ``timeline.csv``, ``timeline.md`` and ``timeline.png`` under
``<var_dir>/reports/replay/``. With ``log_mlflow`` they are logged as one run of the ``replay-timeline``
experiment, with the metrics ``champion_ndcg_at_10`` and ``champion_version`` at step = week.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from recsys.registry.audit import AuditRecord
from recsys.registry.timeline import (
    COLUMNS,
    DecisionRecord,
    TimelineRow,
    TimelineSummary,
    build_timeline,
    csv_records,
    markdown_table,
    plot_timeline,
    summarize,
)
from recsys.schema import K
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult

EXPERIMENT = "replay-timeline"
FILES = ("timeline.json", "timeline.csv", "timeline.md", "timeline.png")


class TimelineParams(BaseModel):
    out_dir: Path | None = Field(None, description="where the files go; default <var_dir>/reports/replay")
    log_mlflow: bool = Field(True, description="log the files and per-week metrics as one MLflow run")
    use_audit: bool = Field(True, description="annotate champion moves between gates from the audit log")


class TimelinePaths(BaseModel):
    json_path: Path
    csv: Path
    markdown: Path
    plot: Path


class TimelineResult(StageResult):
    model: str
    records: int = Field(description="decision records read (reruns included)")
    rows: list[TimelineRow]
    summary: TimelineSummary
    paths: TimelinePaths
    mlflow_run_id: str | None


def timeline(settings: Settings, params: TimelineParams, *, reporter: Reporter = SILENT) -> TimelineResult:
    """Build, write and (optionally) log the timeline; no decision records is a :class:`StageError`."""
    name = settings.model_name
    records = read_decisions(settings.registry_dir / "decisions", name)
    if not records:
        raise StageError(f"no gate decision records of {name!r} in {settings.registry_dir / 'decisions'}: run the "
                         "gate first (recsys registry gate --week W, or the replay backfill of the retrain DAG)")
    reporter.note(f"{len(records)} decision record(s) of {name} in {settings.registry_dir / 'decisions'}")
    audit = _audit_events(settings) if params.use_audit else None
    rows = build_timeline(records, audit)
    summary = summarize(rows)
    out = params.out_dir or settings.reports_dir / "replay"
    paths = write_timeline(rows, summary, out, name)
    run_id = _log_to_mlflow(settings, rows, summary, paths, reporter) if params.log_mlflow else None
    return TimelineResult(model=name, records=len(records), rows=rows, summary=summary, paths=paths,
                          mlflow_run_id=run_id)


def read_decisions(folder: Path, model: str) -> list[DecisionRecord]:
    """Every decision record of ``model`` in ``folder`` (an unreadable file is a :class:`StageError`)."""
    records = []
    for path in sorted(folder.glob(f"{model}-v*.json")):
        try:
            rec = DecisionRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
            first = str(exc).splitlines()[0]
            raise StageError(f"{path} is not a gate decision record ({first}); move it away or rerun that gate") \
                from exc
        if rec.model == model:  # another model whose name starts with this one's
            records.append(rec)
    return records


def _audit_events(settings: Settings) -> list[AuditRecord]:
    from recsys.registry.audit import CHAMPION_EVENTS, AuditLog

    log = AuditLog(settings.audit_db_url)
    try:
        return [r for r in log.history(settings.model_name, limit=1_000_000) if r.event in CHAMPION_EVENTS]
    finally:
        log.close()


def write_timeline(rows: list[TimelineRow], summary: TimelineSummary, out: Path, model: str) -> TimelinePaths:
    out.mkdir(parents=True, exist_ok=True)
    paths = TimelinePaths(json_path=out / FILES[0], csv=out / FILES[1], markdown=out / FILES[2], plot=out / FILES[3])
    payload = {"model": model, "summary": summary.model_dump(mode="json"),
               "rows": [r.model_dump(mode="json") for r in rows]}
    paths.json_path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    with paths.csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(csv_records(rows))
    mean = "–" if summary.mean_champion_ndcg is None else f"{summary.mean_champion_ndcg:.4f}"
    head = (f"# {model}: the champion week by week\n\n{summary.weeks_gated} gated weeks "
            f"({summary.first_week}–{summary.last_week}), {summary.promotions} promotion(s), "
            f"{summary.reruns} rerun(s); mean champion NDCG@{K} {mean} over {summary.weeks_scored} scored week(s).\n\n")
    paths.markdown.write_text(head + markdown_table(rows), encoding="utf-8")
    plot_timeline(rows, paths.plot, f"{model}: champion NDCG@{K} over the replay, week by week")
    return paths


def _log_to_mlflow(settings: Settings, rows: list[TimelineRow], summary: TimelineSummary, paths: TimelinePaths,
                   reporter: Reporter) -> str:
    import time

    from mlflow.entities import Metric

    from recsys.registry.tracking import client_for, experiment_id, reporting_unreachable, with_retries

    uri = settings.mlflow_uri
    client = client_for(uri)
    now = int(time.time() * 1000)
    metrics = [Metric("champion_ndcg_at_10", r.champion_ndcg, now, r.week) for r in rows
               if r.champion_ndcg is not None]
    metrics += [Metric("champion_version", float(r.champion_after), now, r.week) for r in rows
                if r.champion_after is not None]
    if summary.mean_champion_ndcg is not None:
        metrics.append(Metric("mean_champion_ndcg_at_10", summary.mean_champion_ndcg, now, 0))
    metrics += [Metric("weeks_gated", float(summary.weeks_gated), now, 0),
                Metric("promotions", float(summary.promotions), now, 0)]
    tags = {"model": settings.model_name, "first_week": str(summary.first_week), "last_week": str(summary.last_week)}
    with reporting_unreachable(uri):
        exp_id = with_retries(lambda: experiment_id(client, EXPERIMENT, uri))
        run_id = str(with_retries(lambda: client.create_run(exp_id, tags=tags,
                                                            run_name=f"{settings.model_name} timeline")).info.run_id)
        for start in range(0, len(metrics), 500):  # log_batch takes at most 1000 entries
            batch = metrics[start:start + 500]
            with_retries(lambda batch=batch: client.log_batch(run_id, metrics=batch))  # type: ignore[misc]
        for path in (paths.json_path, paths.csv, paths.markdown, paths.plot):
            with_retries(lambda path=path: client.log_artifact(run_id, str(path), "timeline"))  # type: ignore[misc]
        with_retries(lambda: client.set_terminated(run_id))
    reporter.note(f"logged to MLflow: run {run_id} of experiment {EXPERIMENT!r} at {uri}")
    return run_id
