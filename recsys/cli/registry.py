"""``recsys registry``: versions, the promotion gate, promote/approve/reject, rollback and the audit history."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from recsys.cli import timeline as timeline_command
from recsys.cli.common import REPORTER, JsonOption, ModelOption, emit, run, settings, versions_label
from recsys.schema import CHAMPION

if TYPE_CHECKING:
    from rich.console import RenderableType

    from recsys.stages.gate import GateReport, GateResult
    from recsys.stages.registry import RegistryMove

app = typer.Typer(help="The model registry: versions, promotion, approval, rollback and its audit log.",
                  no_args_is_help=True)

VersionOption = Annotated[int, typer.Option("--version", min=1, help="Registry version.")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who acts (default: RECSYS_ACTOR, else $USER).")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why.")]


class Policy(StrEnum):
    auto = "auto"
    manual = "manual"


@app.command("list")
def list_(model: ModelOption = None, as_json: JsonOption = False) -> None:
    """List the versions of the registered model with their status and aliases."""
    from recsys.stages.registry import versions

    result = run(lambda: versions(settings(model=model)))

    def render() -> Iterator[RenderableType]:
        if not result.versions:
            yield f"no versions of {result.model!r} in {result.tracking_uri}"
            return
        table = Table("version", "status", "aliases", "run id", "run key", "created (UTC)",
                      title=f"{result.model} in {result.tracking_uri}")
        for row in result.versions:
            created = f"{row.created:%Y-%m-%d %H:%M:%S}" if row.created else "–"
            table.add_row(str(row.version), row.status, ", ".join(row.aliases) or "–", row.run_id or "–",
                          row.run_key or "–", created, style="bold" if CHAMPION in row.aliases else None)
        yield table

    emit(result, as_json, render)


@app.command("show")
def show(version: VersionOption, model: ModelOption = None, as_json: JsonOption = False) -> None:
    """Show one version: status, aliases, run id, lineage tags and its run's metrics."""
    from recsys.stages.registry import show as show_stage

    result = run(lambda: show_stage(settings(model=model), version))

    def render() -> Iterator[RenderableType]:
        table = Table(title=f"{result.model} v{version} in {result.tracking_uri}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in [("status", result.status), ("aliases", ", ".join(result.aliases) or "–"),
                           ("run id", result.run_id or "–")]:
            table.add_row(key, value)
        for tag in ("run_key", "data_hash", "git_sha", "gate_verdict"):
            table.add_row(tag, result.tags.get(tag) or "–")
        yield table
        if not result.metrics:
            yield "no metrics logged for this version's run"
            return
        metrics = Table("metric", "value", title="run metrics", box=box.SIMPLE_HEAD)
        for name in sorted(result.metrics):
            metrics.add_row(name, f"{result.metrics[name]:.6g}")
        yield metrics

    emit(result, as_json, render)


OnceOption = Annotated[bool, typer.Option(
    "--once", help="If this version's approval was already decided (on the CLI or in Airflow), report that "
                   "decision and move nothing; the opposite decision exits 3 (nothing to do).")]


def _release(action: str, version: int, by: str | None, reason: str | None, model: str | None,
             as_json: bool, once: bool = False) -> None:
    """promote, approve and reject: one stage, one output."""
    from recsys.stages.registry import ReleaseParams, release

    result = run(lambda: release(settings(model=model), ReleaseParams(action=action, version=version, by=by,
                                                                       reason=reason, once=once)))
    emit(result, as_json, lambda: [_move_line(result)])


def _move_line(result: RegistryMove) -> str:
    already = " (decided before; nothing moved)" if result.already else ""
    if result.event in ("rejected", "approved"):
        return f"{result.model}: v{result.to_version} {result.event.value} by {result.actor}{already}"
    what = {"rolled_back": "rolled back, champion", "promoted": "champion"}[result.event]
    approved = f"approved by {result.actor}; " if result.record.details.get("approved_by") else ""
    return f"{result.model}: {approved}{what} {versions_label(result.from_version, result.to_version)}{already}"


@app.command("promote")
def promote(version: VersionOption, model: ModelOption = None, by: ByOption = None, reason: ReasonOption = None,
            as_json: JsonOption = False) -> None:
    """Make a READY version the champion (moves the alias and records it in the audit log)."""
    _release("promote", version, by, reason, model, as_json)


@app.command("approve")
def approve(version: VersionOption, by: Annotated[str, typer.Option("--by", help="Who approves.")],
            reason: Annotated[str, typer.Option("--reason", help="Why.")], model: ModelOption = None,
            once: OnceOption = False, as_json: JsonOption = False) -> None:
    """Approve a version waiting for approval (manual policy) and promote it to champion."""
    _release("approve", version, by, reason, model, as_json, once)


@app.command("reject")
def reject(version: VersionOption, by: Annotated[str, typer.Option("--by", help="Who rejects.")],
           reason: Annotated[str, typer.Option("--reason", help="Why.")], model: ModelOption = None,
           once: OnceOption = False, as_json: JsonOption = False) -> None:
    """Reject a version (clears its pending approval); no alias moves."""
    _release("reject", version, by, reason, model, as_json, once)


@app.command("rollback")
def rollback(
    to: Annotated[int | None, typer.Option(
        "--to", min=1, help="Version to roll back to (it must have been champion); default: the previous one.")
    ] = None,
    model: ModelOption = None, by: ByOption = None, reason: ReasonOption = None, as_json: JsonOption = False,
) -> None:
    """Move the champion alias back to the previous champion of the audit history, in one command."""
    from recsys.stages.registry import RollbackParams
    from recsys.stages.registry import rollback as rollback_stage

    result = run(lambda: rollback_stage(settings(model=model), RollbackParams(to=to, by=by, reason=reason)))
    emit(result, as_json, lambda: [_move_line(result)])


@app.command("gate")
def gate(
    version: Annotated[int | None, typer.Option(
        "--version", min=1, help="Registry version to gate (default: the one holding the alias challenger).")
    ] = None,
    week: Annotated[int | None, typer.Option(
        "--week", help="'Now': the first week not yet seen; the gate scores weeks [W-H, W). Default: after the "
                       "last week of the data.")] = None,
    policy: Annotated[Policy, typer.Option(
        help="auto: a pass promotes; manual: a pass waits for `recsys registry approve`.")] = Policy.auto,
    refit: Annotated[bool, typer.Option(
        "--refit/--no-refit", help="On a pass, retrain the config on every week before W and promote (or submit "
                                   "for approval) that refit; both versions are recorded.")] = False,
    model: ModelOption = None,
    margin: Annotated[float | None, typer.Option(help="Min CI lower bound of the NDCG@10 gain over the champion.")
                      ] = None,
    latency_budget_ms: Annotated[float | None, typer.Option(
        "--latency-budget-ms", help="Max p95 of recommend(), ms.")] = None,
    gate_config: Annotated[Path | None, typer.Option(
        "--gate-config", help="JSON file with GateConfig fields (margins, tolerances, bootstrap).")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file with TrainConfig fields (the horizon H).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who runs the gate (default: RECSYS_ACTOR, else $USER).")
                  ] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Do not gate a version gated before: repeat its outcome (what a rerun of a scheduled "
                       "retrain does).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Score a version against the champion (or, with none, the best single generator) on held-out weeks."""
    from recsys.stages.gate import GateParams
    from recsys.stages.gate import gate as gate_stage
    from recsys.stages.inputs import load_gate_config, load_train_config

    cfg = settings(model=model)

    def call() -> GateResult:
        params = GateParams(version=version, week=week, policy=policy.value, refit=refit, actor=by, once=once,
                            horizon=load_train_config(cfg, config).backtest.horizon,
                            gate=load_gate_config(cfg, gate_config, margin=margin,
                                                  latency_budget_ms=latency_budget_ms))
        return gate_stage(cfg, params, reporter=REPORTER)

    result = run(call)

    def render() -> Iterator[RenderableType]:
        report = result.report
        if result.outcome == "already gated":
            yield (f"{result.model}: v{result.version} was gated before ({result.previous_outcome}"
                   f"{'' if result.target is None else f', v{result.target}'}); nothing done")
            return
        if report is None:
            yield f"{result.model}: no version holds the alias challenger; nothing to gate"
            return
        yield gate_table(report)
        colour = "green" if report.decision.passed else "red"
        yield Text(f"verdict: {report.decision.verdict}", style=f"bold {colour}")
        for reason in report.decision.reasons:
            yield f"  - {reason}"
        if report.refit is not None:
            yield (f"refit: v{report.refit.version} trained on weeks < {report.window.end_week} "
                   f"(evaluated version v{result.version})")
        target = result.target
        yield {"promoted": f"{result.model}: champion is now v{target}",
               "pending": f"{result.model}: v{target} waits for approval: recsys registry approve --version "
                          f"{target} --by NAME --reason TEXT",
               "rejected by gate": f"{result.model}: no alias moved"}[report.outcome]
        yield f"decision: {result.report_path}"

    emit(result, as_json, render)


def gate_table(report: GateReport) -> Table:
    """One row per check: passed, value against threshold, and the numbers behind it."""
    window = report.window
    table = Table(title=f"gate on {window.name} ({window.users} users, {window.cold_users} cold)",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for header in ("check", "passed", "value", "threshold", "detail"):
        table.add_column(header, justify="left" if header in ("check", "detail") else "right")
    for name, check in report.decision.checks.items():
        if check.skipped:
            table.add_row(name, "skip", "–", "–", check.reason or "", style="dim")
            continue
        detail = ""
        if check.ci_low is not None:
            detail = (f"diff {check.diff:+.4f}, CI [{check.ci_low:+.4f}, {check.ci_high:+.4f}], n={check.n}")
        elif check.mean_challenger is not None:
            detail = f"{check.mean_reference:.4f} -> {check.mean_challenger:.4f}, n={check.n}"
        if name == "latency" and check.value is not None:
            value, threshold = f"{check.value:.1f} ms", f"{check.threshold:.0f} ms"
        else:
            value, threshold = _cell(check.value), _cell(check.threshold)
        table.add_row(name, "yes" if check.passed else "NO", value, threshold, detail,
                      style=None if check.passed else "red")
    return table


def _cell(value: float | bool | None) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    return f"{value:+.4f}"


@app.command("history")
def history(
    model: ModelOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many events, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Print the audit log: registrations, gate decisions, approvals, promotions and rollbacks."""
    from recsys.stages.registry import history as history_stage

    result = run(lambda: history_stage(settings(model=model), limit))

    def render() -> Iterator[RenderableType]:
        if not result.events:
            yield f"no registry events for {result.model!r}"
            return
        table = Table("when (UTC)", "event", "from → to", "actor", "reason",
                      title=f"{result.model}: registry history", caption="reasons cut at 90 characters; the "
                                                                          "full records: --json")
        for rec in result.events:
            reason = rec.reason or "–"
            table.add_row(f"{rec.ts:%Y-%m-%d %H:%M:%S}", rec.event.value,
                          versions_label(rec.from_version, rec.to_version), rec.actor,
                          reason if len(reason) <= 90 else reason[:89] + "…")
        yield table

    emit(result, as_json, render)


app.command("timeline")(timeline_command.timeline)
