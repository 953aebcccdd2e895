"""``recsys drift``: the served-feature log of a window against the champion's training reference (Evidently)."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from recsys.cli.common import REPORTER, JsonOption, ModelOption, emit, fail, run, serving_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

    from recsys.stages.drift import DriftResult

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``"1d"``, ``"6h"``, ``"30m"``, ``"90s"``, ``"2w"`` -> a timedelta; a one-line error for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match or float(match[1]) <= 0:
        fail(f"--last must be a positive length such as 30m, 6h, 1d or 2w, got {text!r}")
    assert match is not None
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO time (``1998-04-01``, ``1998-04-01T12:00``, with or without an offset; without one: UTC)."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} must be an ISO time such as 1998-04-01T12:00 (UTC unless an offset is given), got {text!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def drift_table(result: DriftResult, top: int) -> Table:
    """The columns with the largest distance relative to their threshold (drifted ones first)."""
    ranked = sorted(result.columns, key=lambda c: (not c.drifted, -c.score / c.threshold))
    table = Table(title=f"drift by column (worst {min(top, len(ranked))} of {len(ranked)})", box=box.SIMPLE_HEAD,
                  padding=(0, 1), pad_edge=False)
    for header, justify in (("column", "left"), ("role", "left"), ("method", "left"), ("score", "right"),
                            ("threshold", "right"), ("drift", "left")):
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for col in ranked[:top]:
        table.add_row(col.column, col.role, col.method, f"{col.score:.3f}", f"{col.threshold:.3f}",
                      "DRIFT" if col.drifted else "", style="bold red" if col.drifted else None)
    return table


def drift(
    bundle: Annotated[Path | None, typer.Option(
        help="A bundle directory to check (default: the registry's champion).")] = None,
    version: Annotated[int | None, typer.Option(
        help="With --bundle: compare only the rows this registry version served (default: the champion's rows).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Window start, an ISO time (UTC unless an offset is given).")
                     ] = None,
    until: Annotated[str | None, typer.Option(
        help="Window end (exclusive); default: just after the newest logged row (a replay logs simulated time).")
    ] = None,
    last: Annotated[str, typer.Option(help="Window length when --since is not given: 30m, 6h, 1d, 2w.")] = "1d",
    since_last_verdict: Annotated[bool, typer.Option(
        "--since-last-verdict", help="Start where the previous verdict's window ended (a monitor checking every "
                                     "few minutes; after insufficient data the rows accumulate).")] = False,
    traffic_dir: Annotated[Path | None, typer.Option(
        help="The traffic log (default: RECSYS_TRAFFIC_DIR, else <var_dir>/serving/traffic).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        help="Reports and latest.json (default: <var_dir>/monitoring/drift).")] = None,
    params_file: Annotated[Path | None, typer.Option(
        "--params", help="A params YAML whose drift section to use (default: RECSYS_PARAMS_FILE).")] = None,
    top: Annotated[int, typer.Option(help="Columns shown in the table.", min=1)] = 12,
    fail_on_drift: Annotated[bool, typer.Option(
        "--fail-on-drift", help="Exit with code 2 when drift is detected.")] = False,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare a window of the served-feature log with the champion's training reference (Evidently report)."""
    from recsys.stages.drift import DriftParams
    from recsys.stages.drift import drift as drift_stage
    from recsys.stages.inputs import load_drift_config

    cfg = serving_settings(model=model)
    window = {"since": parse_time(since, "--since"), "until": parse_time(until, "--until"),
              "last": parse_duration(last), "since_last_verdict": since_last_verdict}
    result = run(lambda: drift_stage(cfg, DriftParams(
        config=load_drift_config(cfg, params_file), bundle=bundle, version=version,
        traffic_dir=traffic_dir or cfg.traffic_path, out_dir=out_dir, **window), reporter=REPORTER))

    def render() -> Iterator[RenderableType]:
        model_text = (f"{result.model_name} v{result.model_version}" if result.model_version is not None
                      else str(result.bundle))
        yield (f"window [{result.window_start:%Y-%m-%d %H:%M}, {result.window_end:%Y-%m-%d %H:%M}) UTC: "
               f"{result.logged_rows:,} rows logged, {result.capped_rows:,} after the cap of requests per user, "
               f"{result.rows:,} compared ({result.requests:,} requests, {result.users:,} users); reference "
               f"{result.reference_rows:,} rows of {result.reference_users:,} users ({model_text})")
        if result.columns:
            yield drift_table(result, top)
        verdict = {"drift": "DRIFT", "ok": "no drift", "insufficient_data": "insufficient data"}[result.status]
        yield f"{verdict}: {result.reason}"
        if result.report_html is not None:
            yield f"report: {result.report_html}"
        yield f"result: {result.result_path}"

    emit(result, as_json, render)
    # The interpreter's last collection would walk every object Evidently's import made (~300k): 1.4 s of a
    # 9 s command. Frozen objects are skipped; reference counting still frees and closes everything.
    gc.freeze()
    if fail_on_drift and result.drift_detected:
        raise typer.Exit(2)
