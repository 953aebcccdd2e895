"""The gate stage: score a registered version against the champion on fresh held-out weeks, decide, act, refit.

The evaluation window is the most recent one the data allows, ``[week - H, week)``, where ``week`` is the first
week not yet seen (the replay's "now"). Neither model may have been trained on it: the challenger must be trained
as of ``week - H`` or earlier, and so must the champion's *evaluated* model. A champion that is a refit (trained
on everything up to its promotion, so on part of the window) carries the tag ``evaluated_version``: the version
that passed the gate for it, which is compared instead. Both bundles are pulled from the registry, verified
(sha256s, schema, a smoke test) and scored on the same users by the one held-out evaluation
(:func:`~recsys.evaluation.protocols.evaluate_holdout`); the challenger's recommend() is timed over a batch of
users. :func:`~recsys.registry.gate.decide` gives the verdict, which is written as JSON (locally and on the
challenger's MLflow run) and to the audit log; under the ``auto`` policy a pass promotes, under ``manual`` it waits
for ``recsys registry approve``.

With ``refit``, a passing config is retrained on every week before ``week`` by the training stage
(:func:`~recsys.stages.train.train_model`) and registered as a new version tagged ``evaluated_version=<challenger>``
and ``role=refit``; the promotion or approval request then concerns the refit, while the decision stays recorded
on the evaluated version: both models are in the registry and the audit log.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from recsys.config import TrainConfig
from recsys.registry.audit import AuditLog
from recsys.registry.gate import GateConfig, GateDecision
from recsys.registry.release import EVALUATED_VERSION_TAG, ROLE_TAG, LatencyStats
from recsys.registry.service import GateOutcome, Policy
from recsys.schema import CHALLENGER
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageResult
from recsys.stages.inputs import TrainingData, load_training_data

if TYPE_CHECKING:
    from recsys.notify import Notifier


class GateParams(BaseModel):
    version: int | None = Field(None, ge=1, description="the version to gate; default: the challenger alias")
    week: int | None = Field(None, description="'now': the gate scores weeks [W-H, W); default: after the data")
    horizon: int = Field(TrainConfig().backtest.horizon, ge=1, description="H, the held-out weeks")
    gate: GateConfig = Field(default_factory=GateConfig)
    policy: Policy = "auto"
    refit: bool = False
    actor: str | None = Field(None, description="who runs the gate (default: the settings' actor)")
    once: bool = Field(False, description="a version already gated is not gated again: the result repeats the "
                                          "earlier outcome (a rerun of a scheduled retrain moves no alias twice)")


class VersionInfo(BaseModel):
    version: int
    run_id: str | None
    as_of_week: int


class ChampionInfo(VersionInfo):
    compared_version: int = Field(description="the version whose evaluation stands for the champion")


class WindowInfo(BaseModel):
    name: str
    start_week: int
    end_week: int
    users: int
    cold_users: int


class RefitInfo(BaseModel):
    version: int
    as_of_week: int
    run_key: str


class GateReport(BaseModel):
    """The decision record: everything the verdict was made from, and what was done."""

    model: str
    challenger: VersionInfo
    champion: ChampionInfo | None
    best_generator: str
    window: WindowInfo
    means: dict[str, dict[str, float | None]]
    latency: LatencyStats
    schema_problems: list[str]
    gate_config: GateConfig
    policy: Policy
    decision: GateDecision
    seconds: float
    decided_at: datetime
    refit: RefitInfo | None = None
    outcome: GateOutcome


class GateResult(StageResult):
    outcome: Literal["promoted", "pending", "rejected by gate", "nothing to gate", "already gated"]
    model: str
    version: int | None = Field(description="the gated version")
    target: int | None = Field(description="the version promoted or waiting for approval (the refit if any)")
    report: GateReport | None = None
    report_path: Path | None = None
    previous_outcome: str | None = Field(None, description="with once: what the earlier gate of this version did")


def gate(settings: Settings, params: GateParams, *, reporter: Reporter = SILENT,
         data: TrainingData | None = None) -> GateResult:
    """Gate ``params.version`` (see the module docstring) and act on the verdict under ``params.policy``.

    The outcome is notified with the decision's numbers: ``promoted``, ``approval_requested`` or
    ``gate_rejected`` (the notifier is built first, so a misconfigured channel fails before any work).
    """
    from recsys import notify
    from recsys.registry.service import alias_version, gate_outcome

    name, uri = settings.model_name, settings.mlflow_uri
    version = params.version or alias_version(name, CHALLENGER, uri)
    if version is None:
        return GateResult(outcome="nothing to gate", model=name, version=None, target=None)
    earlier = gate_outcome(name, version, uri) if params.once else None
    if earlier is not None:
        reporter.note(f"{name} v{version} was gated before ({earlier[0]}): not gating it again")
        return GateResult(outcome="already gated", model=name, version=version, target=earlier[1],
                          previous_outcome=earlier[0])
    data = data or load_training_data(settings)
    week = data.clock.n_weeks if params.week is None else params.week
    reporter.note(data.source)
    reporter.note(f"gating {name} v{version} on weeks {week - params.horizon}..{week - 1} "
                  f"(policy {params.policy}{', refit' if params.refit else ''}) …")
    sender = notify.notifier(settings)
    audit = AuditLog(settings.audit_db_url)
    try:
        report, config = _evaluate(settings, data, version, week, params)
        refit = None
        if report.decision.passed and params.refit:
            refit = _refit(settings, data, version, week, config, reporter)
            report.refit = refit
        report.outcome = _apply(settings, audit, version, report, params, refit, sender)
        path = _record(settings, report)
        target = None if report.outcome == "rejected by gate" else (refit.version if refit else version)
        _notify_outcome(sender, report, target)
    finally:
        audit.close()
        sender.close()
    return GateResult(outcome=report.outcome, model=name, version=version, target=target, report=report,
                      report_path=path)


def _evaluate(settings: Settings, data: TrainingData, version: int, week: int,
              params: GateParams) -> tuple[GateReport, TrainConfig]:
    """Score the challenger and the champion's evaluated model on the window: the verdict (nothing acted on) and
    the challenger's training config (what a refit retrains)."""
    from recsys.evaluation.protocols import RANKER, evaluate_holdout
    from recsys.registry.gate import ModelEvaluation, decide
    from recsys.registry.release import (
        compared_version,
        evaluation_window,
        latency_users,
        load_version,
        recommend_latency,
        require_held_out,
        schema_problems,
    )
    from recsys.registry.service import current_champion

    name, uri, ml = settings.model_name, settings.mlflow_uri, data.ml
    window = evaluation_window(ml, data.clock, week, params.horizon)
    start = week - params.horizon
    champion = current_champion(name, uri)
    if champion == version:
        raise ValueError(f"version {version} of {name!r} is already the champion")
    compared = None if champion is None else compared_version(name, champion, uri)
    if compared == version:
        raise ValueError(f"version {version} of {name!r} is the evaluated model of the champion v{champion}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recsys-gate-") as tmp:
        challenger = load_version(name, version, uri, Path(tmp))
        require_held_out("challenger", challenger, start, week)
        reference = None
        if compared is not None:
            reference = load_version(name, compared, uri, Path(tmp))
            require_held_out(f"the champion v{champion}'s evaluated model", reference, start, week)
        result = evaluate_holdout(challenger.recommender, window, ml, cut=start, protocol="gate")
        known = window.users[~window.cold_mask(window.users)]
        problems = schema_problems(challenger.recommender, known)
        latency = recommend_latency(challenger.recommender, latency_users(window, params.gate.seed))
        ch_eval = ModelEvaluation.from_eval(result, RANKER, latency.p95_ms, schema_ok=not problems,
                                            name=f"v{version}")
        best = result.best_baseline()
        best_eval = ModelEvaluation.from_eval(result, best)
        ref_eval = None
        if reference is not None:
            ref_result = evaluate_holdout(reference.recommender, window, ml, cut=start, protocol="gate")
            ref_eval = ModelEvaluation.from_eval(ref_result, RANKER, name=f"v{reference.version}")
        decision = decide(ch_eval, ref_eval, params.gate, best_generator=best_eval)
        config = TrainConfig.model_validate(challenger.recommender.manifest["params"])
    report = GateReport(
        model=name,
        challenger=VersionInfo(version=version, run_id=challenger.run_id, as_of_week=challenger.as_of_week),
        champion=None if reference is None or champion is None else ChampionInfo(
            version=champion, compared_version=reference.version, run_id=reference.run_id,
            as_of_week=reference.as_of_week),
        best_generator=best,
        window=WindowInfo(name=window.name, start_week=start, end_week=week, users=len(window.users),
                          cold_users=int(window.cold_mask(window.users).sum())),
        means={ev.name: ev.means() for ev in (ch_eval, ref_eval, best_eval) if ev is not None},
        latency=latency, schema_problems=problems, gate_config=params.gate, policy=params.policy, decision=decision,
        seconds=round(time.perf_counter() - t0, 2), decided_at=datetime.now(UTC), outcome="rejected by gate")
    return report, config


def _refit(settings: Settings, data: TrainingData, version: int, week: int, config: TrainConfig,
           reporter: Reporter) -> RefitInfo:
    """Retrain the evaluated version's config on every week before ``week`` and register it (the training stage)."""
    from recsys.stages.train import train_model

    tags = {ROLE_TAG: "refit", EVALUATED_VERSION_TAG: str(version)}
    trained = train_model(settings, data, week, config, tags=tags, reporter=reporter)
    assert trained.version is not None  # train_model registers by default
    return RefitInfo(version=trained.version, as_of_week=week, run_key=trained.run_key)


def _gate_facts(report: GateReport) -> dict[str, Any]:
    """What a notification about this decision carries: the verdict with every check's numbers, the policy,
    the evaluated version's run and the window."""
    return {"decision": report.decision.to_dict(), "policy": report.policy, "run_id": report.challenger.run_id,
            "evaluated_version": report.challenger.version, "window": report.window.model_dump(mode="json"),
            "champion": None if report.champion is None else report.champion.version}


def _apply(settings: Settings, audit: AuditLog, version: int, report: GateReport, params: GateParams,
           refit: RefitInfo | None, sender: Notifier) -> GateOutcome:
    from recsys import notify
    from recsys.registry.service import apply_gate_decision

    # a promotion is notified by the registry's hook (with its audit record), carrying the gate's numbers
    return apply_gate_decision(settings.model_name, version, report.decision, policy=params.policy, audit=audit,
                               tracking_uri=settings.mlflow_uri, actor=params.actor or settings.actor,
                               notify=notify.registry_hook(sender, extra={"gate": _gate_facts(report)}),
                               act_on=None if refit is None else refit.version)


def _notify_outcome(sender: Notifier, report: GateReport, target: int | None) -> None:
    """An approval request or a rejection (a promotion was notified when the alias moved)."""
    if report.outcome == "pending":
        sender.event("approval_requested", _gate_facts(report), model_name=report.model, version=target)
    elif report.outcome == "rejected by gate":
        sender.event("gate_rejected", _gate_facts(report), model_name=report.model,
                     version=report.challenger.version)


def _record(settings: Settings, report: GateReport) -> Path:
    """Write the decision record to ``<var_dir>/registry/decisions/`` and to the challenger's MLflow run."""
    from recsys.registry.tracking import client_for, with_retries

    stamp = report.decided_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = settings.registry_dir / "decisions" / f"{report.model}-v{report.challenger.version}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = report.model_dump(mode="json")
    path.write_text(report.model_dump_json(indent=2))
    run_id = report.challenger.run_id
    if run_id:
        client = client_for(settings.mlflow_uri)
        with_retries(lambda: client.log_dict(run_id, payload, f"gate/{path.name}"))
    return path
