"""``recsys ab report`` / ``recsys ab decide``: the configured A/B experiment's analysis, and its decision acted on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import REPORTER, JsonOption, emit, run, serving_settings
from recsys.schema import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from rich.console import RenderableType

    from recsys.settings import ServingSettings
    from recsys.stages.ab import AbParams, AbResult

app = typer.Typer(help="A/B analysis of the configured experiment (RECSYS_EXPERIMENT / _FILE).", no_args_is_help=True)

Since = Annotated[datetime | None, typer.Option(help="Window start (UTC); default: the first logged impression.")]
Until = Annotated[datetime | None, typer.Option(help="Window end (UTC); default: after the newest impression.")]
Control = Annotated[str, typer.Option(help="The control variant (registry alias).")]
Treatment = Annotated[str, typer.Option(help="The treatment variant (registry alias).")]
Sequential = Annotated[bool | None, typer.Option(
    "--sequential/--fixed", help="Always-valid mSPRT (safe to look every day) or the fixed-horizon test at the "
                                 "planned size (default: params.yaml ab.sequential).")]


def _params(since: datetime | None, until: datetime | None, control: str, treatment: str, sequential: bool | None,
            apply: bool = False, by: str | None = None) -> tuple[ServingSettings, AbParams]:
    from recsys.experiments.ab import AbConfig
    from recsys.monitoring.ctr import CtrConfig
    from recsys.stages.ab import AbParams
    from recsys.stages.inputs import load_section

    cfg = serving_settings(None)
    config = run(lambda: load_section(cfg, "ab", AbConfig, sequential=sequential))
    window = run(lambda: load_section(cfg, "ctr", CtrConfig)).attribution_minutes
    return cfg, AbParams(since=since, until=until, control=control, treatment=treatment, config=config,
                         attribution_minutes=window, apply=apply, by=by)


def _render(result: AbResult) -> Iterator[RenderableType]:
    from rich.table import Table

    rep = result.report
    table = Table("variant", "versions", "impressions", "CTR / impression", "trials", "clicked",
                  "converted", "CTR", "conversion")
    for v in rep.variants:
        rates, imp = rep.rates[v.variant], result.impressions.get(v.variant)
        table.add_row(v.variant, ",".join(str(x) for x in result.versions.get(v.variant, [])) or "-",
                      f"{imp.impressions if imp else 0:,}", _pct(imp.ctr if imp else None), f"{v.impressions:,}",
                      f"{v.clicks:,}", f"{v.conversions:,}", _pct(rates["ctr"]), _pct(rates["conversion"]))
    yield table
    if rep.ctr is not None and rep.ctr.relative_lift is not None and rep.ctr.relative_lift_ci is not None:
        lo, hi = rep.ctr.relative_lift_ci
        seq = rep.sequential_ctr
        yield (f"CTR lift {rep.ctr.relative_lift:+.1%} [{lo:+.1%}, {hi:+.1%}], p = {rep.ctr.p_value:.3g} (fixed)"
               + ("" if seq is None else f", always-valid p = {seq.p_value:.3g}"))
    if rep.srm is not None:
        yield f"sample ratio: {'ok' if rep.srm.ok else 'MISMATCH'} (p = {rep.srm.p_value:.3g})"
    yield (f"planned: {rep.plan.control:,} / {rep.plan.treatment:,} impressions to detect "
           f"{rep.plan.mde_relative:+.0%} at power {rep.plan.power:.0%}")
    yield f"decision: {result.decision} ({'; '.join(rep.decision.reasons)})"
    yield f"report: {result.html}  plot: {result.plot}"
    if result.promoted is not None:
        yield f"promoted v{result.promoted.to_version} to champion (was v{result.promoted.from_version})"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@app.command()
def report(since: Since = None, until: Until = None, control: Control = CHAMPION, treatment: Treatment = CHALLENGER,
           sequential: Sequential = None, as_json: JsonOption = False) -> None:
    """Impressions, clicks, CTR and conversion per variant, the tests, the SRM check and the decision (not acted on)."""
    from recsys.stages.ab import ab_report

    cfg, params = _params(since, until, control, treatment, sequential)
    result = run(lambda: ab_report(cfg, params, reporter=REPORTER))
    emit(result, as_json, lambda: _render(result))


@app.command()
def decide(since: Since = None, until: Until = None, control: Control = CHAMPION, treatment: Treatment = CHALLENGER,
           sequential: Sequential = None,
           apply: Annotated[bool, typer.Option("--apply", help="Promote the treatment's version when the decision "
                                                               "is promote (the registry's promote path).")] = False,
           by: Annotated[str | None, typer.Option(help="Who decides (default: RECSYS_ACTOR / $USER).")] = None,
           as_json: JsonOption = False) -> None:
    """The report, its decision written to the audit log, and with --apply the promotion it calls for."""
    from recsys.stages.ab import ab_decide

    cfg, params = _params(since, until, control, treatment, sequential, apply, by)
    result = run(lambda: ab_decide(cfg, params, reporter=REPORTER))
    emit(result, as_json, lambda: _render(result))


@app.command("bandit-update")
def bandit_update(since: Since = None, until: Until = None, as_json: JsonOption = False) -> None:
    """Store each variant's attributed impressions and clicks as its Beta posterior (a thompson experiment); the
    service's workers pick the new shares up within RECSYS_BANDIT_INTERVAL."""
    from recsys.stages.ab import bandit_update as update_stage

    cfg, params = _params(since, until, CHAMPION, CHALLENGER, None)
    result = run(lambda: update_stage(cfg, params, reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        for variant, (n, clicked) in result.counts.items():
            yield f"{variant}: {clicked:,} clicked of {n:,} impressions -> share {result.shares[variant]:.1%}"

    emit(result, as_json, render)
