"""The drift stage: a window of the served-feature log against the serving champion's training reference.

The champion's bundle (the registry's ``champion`` alias, downloaded once into ``<var_dir>/monitoring/bundles``,
or a bundle directory) carries its reference (``reference.parquet``), so a check needs no training data. The
window (``[since, until)``; by default the last 24 h of *log* time, i.e. up to the newest row, since a replay logs
its simulated time) is read from the traffic log, capped per user and sampled like the reference
(:mod:`recsys.monitoring.window`), and compared column by column in an Evidently report
(:mod:`recsys.monitoring.drift`). A window with fewer than ``min_rows`` rows or ``min_users`` users gets the verdict
``insufficient_data``, not drift. The report (HTML + JSON) and the result go to
``<var_dir>/monitoring/drift/<checked-at>/``, and the result also to ``latest.json`` beside them, which the service's
metrics loop reads (:func:`recsys.monitoring.metrics.export_latest`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from recsys.config import DriftConfig
from recsys.monitoring.metrics import DRIFT_DIR, LATEST
from recsys.schema import CHAMPION
from recsys.settings import Settings
from recsys.stages.base import SILENT, NothingToDoError, Reporter, StageError, StageResult

Status = Literal["ok", "drift", "insufficient_data"]


class DriftParams(BaseModel):
    config: DriftConfig = Field(default_factory=DriftConfig)
    bundle: Path | None = Field(None, description="a bundle directory; default: the registry's champion")
    version: int | None = Field(None, ge=1, description="with `bundle`: compare only the rows this version served")
    traffic_dir: Path | None = Field(None, description="the traffic log; default <var_dir>/serving/traffic")
    since: datetime | None = Field(None, description="window start (inclusive)")
    until: datetime | None = Field(None, description="window end (exclusive); default: just after the newest row")
    last: timedelta = Field(timedelta(days=1), gt=timedelta(0), description="window length when `since` is unset")
    since_last_verdict: bool = Field(False, description="start where the previous verdict's window ended (after an "
                                     "insufficient_data check: where that window started), as a monitor that "
                                     "checks often does; without a previous check, `last` applies")
    out_dir: Path | None = Field(None, description="reports and latest.json; default <var_dir>/monitoring/drift")


class ColumnDrift(BaseModel):
    """One compared column: its distance to the reference, the method and threshold, and the column's verdict."""

    column: str
    role: Literal["feature", "history", "context", "prediction"]
    method: str
    threshold: float
    score: float
    drifted: bool


class DriftResult(StageResult):
    status: Status = Field(description="drift, ok, or insufficient_data (too few rows or users: no verdict)")
    drift_detected: bool
    reason: str = Field(description="why the verdict is what it is, in one line")
    share: float | None = Field(description="share of the feature and context columns that drifted")
    share_threshold: float
    drifted: list[ColumnDrift] = Field(description="the drifted feature and context columns, worst first (the "
                                                   "share's numerator)")
    score_drift: ColumnDrift | None = Field(description="the prediction (score) column")
    columns: list[ColumnDrift] = Field(description="every compared column")
    skipped: dict[str, str] = Field(description="columns that could not be compared, and why")
    window_start: datetime
    window_end: datetime
    logged_rows: int = Field(description="rows of the checked model in the window")
    capped_rows: int = Field(description="after the per-user cap")
    rows: int = Field(description="compared (after the bounded sample)")
    requests: int
    users: int
    other_rows: int = Field(description="rows in the window served by another model (not compared)")
    bad_lines: int = Field(description="log lines that did not parse (skipped)")
    reference_rows: int
    reference_users: int
    model_name: str
    model_version: int | None
    model_alias: str | None
    bundle: Path
    traffic_dir: Path
    report_html: Path | None
    report_json: Path | None
    result_path: Path
    checked_at: datetime
    seconds: float
    timings: dict[str, float] = Field(description="seconds per phase: registry (look-up and download), reference, "
                                                  "window, compare, save")


def drift(settings: Settings, params: DriftParams, *, reporter: Reporter = SILENT) -> DriftResult:
    """Check the window against the champion's reference; write the report and ``latest.json``; on drift, send
    a ``drift_detected`` notification (deduplicated per model version, see :mod:`recsys.notify`)."""
    from recsys import notify
    from recsys.monitoring import drift as report
    from recsys.monitoring.drift import VOTING
    from recsys.monitoring.reference import ReferenceFileError, load_reference
    from recsys.monitoring.window import load_window

    t0 = lap = time.perf_counter()
    timings: dict[str, float] = {}

    def phase(name: str) -> None:
        nonlocal lap
        now = time.perf_counter()
        timings[name] = round(now - lap, 3)
        lap = now

    cfg = params.config
    sender = notify.notifier(settings)  # first: a misconfigured channel fails before any work
    version, alias = params.version, None
    if params.bundle is not None:
        bundle = params.bundle
    else:
        version, bundle = _champion_bundle(settings, reporter)
        alias = CHAMPION
        phase("registry")
    try:
        reference, manifest = load_reference(bundle)
    except ReferenceFileError as exc:
        raise StageError(str(exc)) from exc
    if reference is None:
        raise StageError(f"{bundle}: the bundle has no drift reference (reference.parquet); retrain it with this "
                         "version of recsys")
    features = list(manifest["feature_names"])
    report.preload()  # Evidently's import overlaps the reading of the log
    phase("reference")
    traffic = params.traffic_dir or settings.serving_dir / "traffic"
    out_dir = params.out_dir or settings.var_dir / DRIFT_DIR
    start, end = _window(params, traffic, out_dir)
    window = load_window(traffic, start, end, features, version=version,
                         alias=None if version is not None else CHAMPION, per_user=cfg.per_user,
                         max_rows=cfg.max_rows, seed=cfg.seed)
    phase("window")
    checked = datetime.now(UTC)
    common: dict[str, Any] = dict(
        share_threshold=cfg.share_threshold, window_start=start, window_end=end, logged_rows=window.logged_rows,
        capped_rows=window.capped_rows, rows=window.rows, requests=window.requests, users=window.users,
        other_rows=window.other_rows, bad_lines=window.bad_lines, reference_rows=len(reference),
        reference_users=int(reference["user_id"].nunique()) if "user_id" in reference else 0,
        model_name=settings.model_name, model_version=version, model_alias=alias, bundle=bundle,
        traffic_dir=traffic, checked_at=checked)
    short = [f"{window.capped_rows} rows < min_rows {cfg.min_rows}"] if window.capped_rows < cfg.min_rows else []
    short += [f"{window.users} users < min_users {cfg.min_users}"] if window.users < cfg.min_users else []
    if short:
        result = DriftResult(status="insufficient_data", drift_detected=False, reason="; ".join(short), share=None,
                             drifted=[], score_drift=None, columns=[], skipped={}, report_html=None,
                             report_json=None, result_path=out_dir / LATEST,
                             seconds=round(time.perf_counter() - t0, 3), timings=timings, **common)
        _write(result, None)
        return result
    with reporter.status(f"comparing {window.rows:,} rows with {len(reference):,} reference rows (Evidently) …"):
        found = report.compare(reference, window.frame, report.drift_columns(features, cfg), cfg.share_threshold)
    phase("compare")
    folder = _run_folder(out_dir, checked)
    html, js = report.save_report(found.snapshot, folder)
    phase("save")
    columns = [ColumnDrift(column=c.name, role=c.role, method=c.method, threshold=c.threshold, score=c.score,
                           drifted=c.drifted) for c in found.columns]
    drifted = sorted((c for c in columns if c.drifted and c.role in VOTING),
                     key=lambda c: c.score / c.threshold, reverse=True)
    score = next((c for c in columns if c.role == "prediction"), None)
    by_share = found.share >= cfg.share_threshold
    by_score = bool(cfg.score_alone and score is not None and score.drifted)
    detected = by_share or by_score
    reason = (f"{found.drifted_count} of {found.compared} columns drifted (share {found.share:.2f}, threshold "
              f"{cfg.share_threshold:.2f})" + ("; the score drifted" if score is not None and score.drifted else ""))
    result = DriftResult(status="drift" if detected else "ok", drift_detected=detected, reason=reason,
                         share=round(found.share, 6), drifted=drifted, score_drift=score, columns=columns,
                         skipped=found.skipped, report_html=html, report_json=js, result_path=out_dir / LATEST,
                         seconds=round(time.perf_counter() - t0, 3), timings=timings, **common)
    _write(result, folder)
    if detected:
        sender.event("drift_detected", result.model_dump(mode="json", include=_NOTIFIED),
                     model_name=result.model_name, version=result.model_version)
    sender.close()
    return result


_NOTIFIED = {"share", "share_threshold", "drifted", "reason", "window_start", "window_end", "rows", "users",
             "report_html", "model_alias"}
"""The result's fields a drift notification carries."""


def _window(params: DriftParams, traffic: Path, out_dir: Path) -> tuple[datetime, datetime]:
    """``[since, until)``: as given; a missing end is just after the newest logged row (or now, without a log); a
    missing start is ``last`` before the end, or with ``since_last_verdict`` where the previous verdict ended."""
    from recsys.monitoring.window import latest_time

    def utc(t: datetime) -> datetime:
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)

    until = params.until
    if until is None:
        newest = latest_time(traffic)
        until = (newest + timedelta(microseconds=1)) if newest is not None else datetime.now(UTC)
    until = utc(until)
    since = utc(params.since) if params.since is not None else until - params.last
    previous = read_latest(out_dir) if params.since_last_verdict and params.since is None else None
    if previous is not None:
        since = previous.window_start if previous.status == "insufficient_data" else previous.window_end
        until = max(until, since + timedelta(microseconds=1))  # nothing new yet: an empty window, not an error
    if not since < until:
        raise StageError(f"the window must start before it ends: since {since.isoformat()} >= until "
                         f"{until.isoformat()}")
    return since, until


def _champion_bundle(settings: Settings, reporter: Reporter) -> tuple[int, Path]:
    """The champion's version and its bundle, downloaded once per version into ``<var_dir>/monitoring/bundles``."""
    import mlflow

    from recsys.registry.release import bundle_path
    from recsys.registry.service import current_champion
    from recsys.registry.tracking import scoped_tracking_uri, with_retries

    name, uri = settings.model_name, settings.mlflow_uri
    version = current_champion(name, uri)
    if version is None:
        raise NothingToDoError(f"no version of {name!r} holds the champion alias in {uri}; promote one, or pass "
                               "--bundle")
    local = settings.var_dir / "monitoring" / "bundles" / name / f"v{version}"
    if not (local / "MLmodel").exists():
        with reporter.status(f"downloading {name} v{version} …"), scoped_tracking_uri(uri):
            local.parent.mkdir(parents=True, exist_ok=True)
            with_retries(lambda: mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                                     dst_path=str(local)))
    return version, bundle_path(local)


def _run_folder(out_dir: Path, checked: datetime) -> Path:
    base = out_dir / checked.strftime("%Y%m%dT%H%M%S%fZ")
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True)
    return folder


def _write(result: DriftResult, folder: Path | None) -> None:
    """The result beside its report, and as ``latest.json`` (replaced atomically: a reader never sees half)."""
    text = result.to_json(indent=2)
    if folder is not None:
        (folder / "result.json").write_text(text)
    result.result_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = result.result_path.with_name(f".{result.result_path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(result.result_path)


def read_latest(out_dir: Path) -> DriftResult | None:
    """The last check's result (``latest.json``), or None when there is none."""
    path = out_dir / LATEST
    return DriftResult.model_validate(json.loads(path.read_text())) if path.exists() else None
