"""A/B stages: the analysis of the configured experiment (``ab_report``) and the decision acted on (``ab_decide``).

Counts come from the service's own records: impressions from the assignment log, attributed clicks and watches
from the feedback store (:mod:`recsys.experiments.attribution`; one impression = one trial, clicked or not). The
window is on the logs' clock and defaults to everything logged, so that successive looks see cumulative counts
(what the sequential test needs; the previous look's report is read back from ``latest.json``).

Each report is written as JSON, HTML and a PNG of CTR per variant and day under
``<var_dir>/reports/ab/<experiment>/<end>/`` (plus ``latest.json``) and logged to MLflow as a run of the
``<model>-ab`` experiment, tagged with the versions concerned; the versions get an ``ab.<experiment>`` tag with the
decision. ``ab_decide`` also appends the decision to the registry's audit log and, with ``apply``, promotes the
treatment's version through the registry's promote path when the decision is ``promote``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.experiments.ab import AbConfig, ABReport, VariantCounts
from recsys.experiments.attribution import VariantRates
from recsys.registry.audit import AuditRecord
from recsys.schema import CHALLENGER, CHAMPION
from recsys.settings import ServingSettings
from recsys.stages.base import SILENT, NothingToDoError, Reporter, StageError, StageResult
from recsys.stages.registry import RegistryMove

logger = logging.getLogger(__name__)


class AbParams(BaseModel):
    since: datetime | None = Field(None, description="window start (UTC); default: the first logged impression")
    until: datetime | None = Field(None, description="window end (UTC); default: just after the newest one")
    control: str = CHAMPION
    treatment: str = CHALLENGER
    attribution_minutes: float = Field(60.0, gt=0, description="a click counts within this long of its impression")
    config: AbConfig = Field(default_factory=AbConfig)
    apply: bool = Field(False, description="ab_decide: promote the treatment's version when the decision says so")
    by: str | None = Field(None, description="who decides (default: the settings' actor)")


class AbResult(StageResult):
    experiment: str
    start: datetime
    end: datetime
    versions: dict[str, list[int | None]] = Field(description="the model versions each variant served")
    impressions: dict[str, VariantRates] = Field(description="impression-level attribution per variant (CTR per "
                                                             "impression and per position), whatever the unit")
    unattributed: dict[str, int]
    report: ABReport
    decision: str
    report_dir: Path
    html: Path
    plot: Path
    mlflow_run_id: str | None
    audit: AuditRecord | None = None
    promoted: RegistryMove | None = None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ab_report(settings: ServingSettings, params: AbParams, *, reporter: Reporter = SILENT) -> AbResult:
    """Count, analyse, render and log the configured experiment over the window."""
    from recsys.experiments.ab import analyse
    from recsys.experiments.attribution import attribute, read_impressions
    from recsys.experiments.report import daily_rates, plot_daily, render_html
    from recsys.serving.feedback import FeedbackStore
    from recsys.serving.router import Experiment, ExperimentError

    try:
        experiment = Experiment.configured(settings.experiment, settings.experiment_file)
    except ExperimentError as exc:
        raise StageError(str(exc)) from exc
    if len(experiment.variants) < 2:  # the default: all traffic on the champion (a daily check must not fail)
        raise NothingToDoError(f"experiment {experiment.name!r} routes all traffic to {sorted(experiment.variants)}: "
                               "no A/B test to analyse; set RECSYS_EXPERIMENT or RECSYS_EXPERIMENT_FILE")
    for name in (params.control, params.treatment):
        if name not in experiment.variants:
            raise StageError(f"variant {name!r} is not in experiment {experiment.name!r} (variants: "
                             f"{sorted(experiment.variants)}); set RECSYS_EXPERIMENT or RECSYS_EXPERIMENT_FILE")
    window = timedelta(minutes=params.attribution_minutes)
    until = _utc(params.until)
    impressions = read_impressions(settings.assignment_path, None, until)
    if not impressions:
        raise NothingToDoError(f"no impressions logged in {settings.assignment_path}")
    end = until or impressions[-1].ts + window + timedelta(microseconds=1)  # the newest ones mature
    start = _utc(params.since) or impressions[0].ts
    impressions = [imp for imp in impressions if imp.ts >= start - window]
    store = FeedbackStore(settings.feedback_db_url)
    try:
        events = store.between(start, end)
    finally:
        store.close()
    reporter.note(f"experiment {experiment.name!r}: {len(impressions):,} impressions, {len(events):,} feedback "
                  f"events, {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC")
    attribution = attribute(impressions, events, window, start, end)
    per_variant = attribution.by_variant()
    versions: dict[str, list[int | None]] = {}
    for row in attribution.rates:
        versions.setdefault(row.variant, []).append(row.version)
    counts = [_counts(v, per_variant.get(v), params.config.unit) for v in experiment.variants]
    assigned = {v: per_variant[v].users if v in per_variant else 0 for v in experiment.variants}
    root = settings.reports_dir / "ab" / experiment.name
    latest = root / "latest.json"
    previous = None
    if params.config.sequential and latest.exists():
        try:
            prior = ABReport.model_validate_json(latest.read_text())
        except ValueError:
            prior = None
        if prior is not None and (prior.control, prior.treatment, prior.config) == (
                params.control, params.treatment, params.config):
            previous = prior
        else:  # other variants or another config: the earlier looks do not belong to this test
            reporter.note(f"{latest}: an earlier look with another configuration; the sequential test starts over")
    try:
        report = analyse(counts, experiment.variants, params.config, params.control, params.treatment, previous,
                         assigned=assigned)
    except ValueError as exc:
        raise StageError(str(exc)) from exc
    out = root / f"{end:%Y%m%dT%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    title = f"A/B {experiment.name}: {params.treatment} vs {params.control}"
    plot = plot_daily(daily_rates([i for i in impressions if i.ts >= start], events, window), out / "ctr.png", title)
    html = out / "report.html"
    html.write_text(render_html(report, plot, title), encoding="utf-8")
    (out / "report.json").write_text(report.model_dump_json(indent=2))
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(latest)
    run_id = _log_to_mlflow(settings, experiment.name, report, versions, out, reporter)
    return AbResult(experiment=experiment.name, start=start, end=end, versions=versions, impressions=per_variant,
                    unattributed=attribution.unattributed, report=report, decision=report.decision.decision,
                    report_dir=out, html=html, plot=plot, mlflow_run_id=run_id)


def _counts(variant: str, rates: VariantRates | None, unit: str) -> VariantCounts:
    """The A/B trials of one variant: its impressions, as many independent ones as they are worth (``clustered``:
    divided by the design effect of the user clusters) or taken as independent (``impression``)."""
    if rates is None:
        return VariantCounts(variant=variant, impressions=0)
    deff = rates.design_effect if unit == "clustered" else 1.0
    return VariantCounts(variant=variant, impressions=round(rates.impressions / deff),
                         clicks=round(rates.clicked / deff), conversions=round(rates.converted / deff))


def _log_to_mlflow(settings: ServingSettings, experiment: str, report: ABReport,
                   versions: dict[str, list[int | None]], out: Path, reporter: Reporter) -> str | None:
    """The report as an MLflow run, and a tag on each registered version concerned; None when MLflow is down."""
    try:
        from recsys.registry.tracking import client_for

        client = client_for(settings.mlflow_uri)
        name = f"{settings.model_name}-ab"
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
        tags = {"ab.experiment": experiment, "ab.decision": report.decision.decision}
        tags |= {f"ab.version.{v}": ",".join(str(x) for x in vs) for v, vs in versions.items()}
        run = client.create_run(exp_id, tags=tags, run_name=f"{experiment} {out.name}")
        for variant, rates in report.rates.items():
            for metric, value in rates.items():
                if value is not None:
                    client.log_metric(run.info.run_id, f"{variant}.{metric}", value)
        if report.ctr is not None:
            client.log_metric(run.info.run_id, "ctr.p_value", report.ctr.p_value)
            if report.ctr.relative_lift is not None:
                client.log_metric(run.info.run_id, "ctr.relative_lift", report.ctr.relative_lift)
        client.log_artifacts(run.info.run_id, str(out))
        client.set_terminated(run.info.run_id)
    except Exception as exc:  # the report stands without MLflow: say so, do not fail
        reporter.note(f"not logged to MLflow ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        logger.info("A/B report not logged to MLflow", exc_info=True)
        return None
    for vs in versions.values():
        for version in vs:
            if version is None:
                continue
            try:
                client.set_model_version_tag(settings.model_name, str(version), f"ab.{experiment}",
                                             f"{report.decision.decision} (run {run.info.run_id})")
            except Exception as exc:
                reporter.note(f"version {version} of {settings.model_name} not tagged ({type(exc).__name__})")
    return str(run.info.run_id)


def ab_decide(settings: ServingSettings, params: AbParams, *, reporter: Reporter = SILENT) -> AbResult:
    """:func:`ab_report`, then the decision in the audit log, and with ``apply`` the promotion it calls for."""
    from recsys.registry.audit import AuditEvent, AuditLog
    from recsys.stages.registry import ReleaseParams, release

    result = ab_report(settings, params, reporter=reporter)
    decision = result.report.decision
    served = [v for v in result.versions.get(params.treatment, []) if v is not None]
    version = served[0] if len(served) == 1 else None
    cmp = result.report.ctr
    details = {"experiment": result.experiment, "decision": decision.decision, "reasons": decision.reasons,
               "mode": decision.mode, "versions": result.versions, "window": [result.start.isoformat(),
                                                                                 result.end.isoformat()],
               "ctr_lift": None if cmp is None else cmp.relative_lift, "ctr_p": None if cmp is None else cmp.p_value,
               "report": str(result.html), "mlflow_run_id": result.mlflow_run_id}
    actor = params.by or settings.actor
    audit = AuditLog(settings.audit_db_url)
    try:
        record = audit.record(AuditEvent.AB_DECISION, settings.model_name, to_version=version, actor=actor,
                              reason=f"A/B {result.experiment}: {decision.decision}; " + "; ".join(decision.reasons),
                              details=details)
    finally:
        audit.close()
    promoted = None
    if params.apply and decision.decision == "promote":
        if version is None:
            raise StageError(f"cannot apply: variant {params.treatment!r} served versions {served or 'none'} in the "
                             "window, not exactly one registered version")
        promoted = release(settings, ReleaseParams(action="promote", version=version, by=actor,
                                                   reason=f"A/B {result.experiment}: {'; '.join(decision.reasons)}"))
    return result.model_copy(update={"audit": record, "promoted": promoted})


class BanditUpdateResult(StageResult):
    experiment: str
    counts: dict[str, tuple[int, int]] = Field(description="per variant: (mature impressions, clicked ones)")
    shares: dict[str, float] = Field(description="the Thompson shares every worker computes from these counts")
    store: str


def bandit_update(settings: ServingSettings, params: AbParams, *, reporter: Reporter = SILENT) -> BanditUpdateResult:
    """Count every variant's mature impressions and clicked ones since the experiment's first impression and store
    them as its posterior's totals (the one writer; the service's workers read them)."""
    from recsys.experiments.attribution import attribute_logs
    from recsys.serving.bandit import BanditStore, thompson_shares
    from recsys.serving.feedback import FeedbackStore
    from recsys.serving.router import Experiment, ExperimentError

    try:
        experiment = Experiment.configured(settings.experiment, settings.experiment_file)
    except ExperimentError as exc:
        raise StageError(str(exc)) from exc
    if experiment.allocation != "thompson":
        raise StageError(f"experiment {experiment.name!r} splits by hash (allocation: hash); the bandit needs "
                         "allocation: thompson")
    feedback = FeedbackStore(settings.feedback_db_url)
    try:
        attribution = attribute_logs(settings.assignment_path, feedback, timedelta(minutes=params.attribution_minutes),
                                     _utc(params.since), _utc(params.until))
    finally:
        feedback.close()
    rates = attribution.by_variant()
    counts = {v: (rates[v].impressions, rates[v].clicked) if v in rates else (0, 0) for v in experiment.variants}
    store = BanditStore(settings.bandit_db_url)
    try:
        store.write(experiment.name, counts)
        shares = thompson_shares(store.read(experiment.name), experiment.floor)
    finally:
        store.close()
    reporter.note(f"stored the posteriors of {experiment.name!r}: {counts}")
    return BanditUpdateResult(experiment=experiment.name, counts=counts, shares=shares, store=repr(store))
