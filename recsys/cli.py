"""The ``recsys`` command line: one command per offline stage, over the library functions the DAGs also call.

Heavy modules (pandas, LightGBM) are imported inside the commands so that ``recsys --help`` stays fast.
Expected failures (missing data, a week out of range, a bad config file) end with one red line on stderr and
exit code 1, never a traceback. Tables go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from recsys.runtime import quiet_threads

if TYPE_CHECKING:
    from pydantic import ValidationError

    from recsys.config import Settings, TrainConfig
    from recsys.data.load import MovieLens
    from recsys.data.replay import ReplayClock
    from recsys.evaluation.protocols import EvalResult
    from recsys.ranking.train import TrainResult
    from recsys.registry.audit import AuditLog

K = 10
METRICS = [f"{m}@{K}" for m in ("ndcg", "recall", "map", "mrr", "hit_rate")]
app = typer.Typer(help="Two-stage content recommender on MovieLens-100K, replayed week by week.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
data_app = typer.Typer(help="Fetch MovieLens-100K and replay it as weekly batches.", no_args_is_help=True)
app.add_typer(data_app, name="data")
registry_app = typer.Typer(help="The model registry: versions, promotion, approval, rollback and its audit log.",
                            no_args_is_help=True)
app.add_typer(registry_app, name="registry")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class CliError(Exception):
    """An expected failure whose message is all the user needs."""


class Protocol(StrEnum):
    backtest = "backtest"
    recbole = "recbole"
    both = "both"


# -- error boundary ------------------------------------------------------------------------------------------
def _describe_validation(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    given = f", got {first['input']!r}" if loc and "input" in first else ""
    return f"{f'field {loc}: ' if loc else ''}{first['msg']}{given}{more}"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's expected exceptions into a one-line message and exit code 1."""
    from pydantic import ValidationError

    from recsys.data.fetch import DataUnavailableError

    try:
        yield
    except ValidationError as exc:  # before ValueError: pydantic's error is one
        _fail(_describe_validation(exc))
    except (CliError, DataUnavailableError, ValueError) as exc:  # DataFileError, BundleError are ValueErrors
        if logging.getLogger().isEnabledFor(logging.INFO) and not isinstance(exc, CliError):
            err.print_exception()  # --verbose: where a library ValueError came from
        _fail(str(exc))


def _fail(message: str) -> None:
    err.print(Text(f"error: {message}", style="bold red"), soft_wrap=True)
    raise typer.Exit(1)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the library's progress.")] = False,
) -> None:
    quiet_threads()
    # MLflow's INFO chatter and artifact progress bars would drown the command's own output
    # (read when mlflow is imported, which the commands do later)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    if verbose:
        from rich.logging import RichHandler

        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=err)])


# -- shared helpers ------------------------------------------------------------------------------------------
@contextmanager
def progress_bar(description: str, loop_label: str) -> Iterator[Callable[[Iterable[int]], Iterator[int]]]:
    """A spinner for a long step; the yielded wrapper draws a bar over the loop the library reports."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        progress.add_task(description, total=None)

        def track(items: Iterable[int]) -> Iterator[int]:
            items = list(items)
            task = progress.add_task(loop_label, total=len(items))
            for item in items:
                yield item
                progress.advance(task)

        yield track


def _settings() -> Settings:
    from recsys.config import Settings

    return Settings()


def _load_raw(settings: Settings) -> tuple[MovieLens, ReplayClock]:
    """The whole raw download and its replay clock (the source the weekly batches are cut from)."""
    from recsys.data.load import load_movielens
    from recsys.data.replay import ReplayClock

    ml = load_movielens(settings.raw_dir)
    return ml, ReplayClock.from_interactions(ml.interactions)


def _load_data(settings: Settings) -> tuple[MovieLens, ReplayClock, str]:
    """Users and items from the raw download; interactions from the validated store (see Settings.training_source).

    The replay clock keeps the raw data's week 0, so week numbers mean the same whatever the store holds; it ends
    after the last accepted week, which makes that week + 1 the pipeline's "now". The third value says where the
    interactions came from (printed once the command's arguments are known to be valid).
    """
    from recsys.data.load import MovieLens
    from recsys.data.replay import ReplayClock
    from recsys.validation.store import accepted_weeks, load_store

    ml, clock = _load_raw(settings)
    weeks = [] if settings.training_source == "raw" else accepted_weeks(settings)
    if not weeks:
        if settings.training_source == "store":
            raise CliError(f"no validated weeks in {settings.data_dir / 'store'}: run `recsys validate --all` "
                           "(or set RECSYS_TRAINING_SOURCE=raw)")
        return ml, clock, f"interactions: the raw download, weeks 0..{clock.n_weeks - 1} (no validated store)"
    interactions, weeks, digest = load_store(settings, weeks)
    missing = sorted(set(range(weeks[-1] + 1)) - set(weeks))
    gaps = f"; missing (not validated): {missing}" if missing else ""
    source = f"interactions: validated store, weeks {weeks[0]}..{weeks[-1]} ({len(interactions):,} rows){gaps}"
    return (MovieLens(ml.users, ml.items, interactions, digest),
            ReplayClock(origin=clock.origin, n_weeks=weeks[-1] + 1), source)


def load_config(path: Path | None, settings: Settings | None = None) -> TrainConfig:
    """The training config: a JSON file of TrainConfig fields or a params.yaml; by default the settings'
    params file when it exists, else the code's defaults. Unknown keys are errors that name the file."""
    from pydantic import ValidationError

    from recsys.config import TrainConfig
    from recsys.params import ParamsError, train_config

    if path is None:
        params = (settings or _settings()).params_file
        if not params.exists():
            return TrainConfig()
        path = params
    if path.suffix in (".yaml", ".yml"):
        try:
            return train_config(path)
        except ParamsError as exc:
            raise CliError(str(exc)) from exc
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CliError(f"cannot read config file {path}: {reason}") from exc
    try:
        return TrainConfig.model_validate_json(text)
    except ValidationError as exc:
        raise CliError(f"config file {path}: {_describe_validation(exc)}") from exc


def parse_cuts(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        cuts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"--cuts must be comma-separated week numbers such as 12,16,20, got {text!r}"
                       ) from None
    if not cuts:
        raise CliError("--cuts is empty")
    return sorted(set(cuts))


def check_cuts(cuts: list[int], clock: ReplayClock, cfg: TrainConfig) -> None:
    """Fail before any training if a cut has no room for its label windows or its test window."""
    from recsys.ranking.train import training_starts

    h = cfg.backtest.horizon
    valid = [w for w in range(1, clock.n_weeks + 1) if training_starts(w, cfg) and w + h <= clock.n_weeks]
    bad = [w for w in cuts if w not in valid]
    if bad:
        span = f"{valid[0]}..{valid[-1]}" if valid else "none"
        raise CliError(f"cut week(s) {bad} out of range: with horizon {h} the backtest can cut at "
                       f"weeks {span}")


def _print_md(text: str) -> None:
    out.print(text, markup=False, soft_wrap=True)



# -- data ----------------------------------------------------------------------------------------------------
@data_app.command("fetch")
def data_fetch() -> None:
    """Download MovieLens-100K from the recbole==1.2.1 wheel (cached), verify its checksums and load it."""
    settings = _settings()
    with _user_errors():
        from recsys.data.fetch import fetch_movielens

        with err.status("fetching MovieLens-100K (recbole==1.2.1 wheel)…"):
            raw_dir = fetch_movielens(settings.raw_dir, settings.wheel_cache)
        ml, clock = _load_raw(settings)
    first, last = clock.bounds(0)[0], clock.bounds(clock.n_weeks - 1)[1]
    table = Table(title="MovieLens-100K", show_header=False)
    for key, value in [("raw dir", str(raw_dir)), ("data hash", ml.data_hash),
                       ("users", f"{len(ml.users):,}"), ("items", f"{len(ml.items):,}"),
                       ("interactions", f"{len(ml.interactions):,}"),
                       ("replay weeks", f"{clock.n_weeks} (0..{clock.n_weeks - 1}), "
                                        f"{first:%Y-%m-%d} → {last:%Y-%m-%d}")]:
        table.add_row(key, value)
    out.print(table)


@data_app.command("replay")
def data_replay(
    week: Annotated[int | None, typer.Option(
        help="Replay week to write (week 0 holds the first rating).")] = None,
    all_weeks: Annotated[bool, typer.Option("--all", help="Write every week of the timeline.")] = False,
) -> None:
    """Write the weekly batch partition(s) data/batches/week=WW (idempotent: a rerun overwrites them)."""
    settings = _settings()
    with _user_errors():
        if (week is None) == (not all_weeks):
            raise CliError("give either --week W or --all")
        from recsys.data.replay import interactions_of_week, write_week

        ml, clock = _load_raw(settings)
        weeks = list(range(clock.n_weeks)) if week is None else [week]
        for w in weeks:
            clock.check_week(w)
        table = Table("week", "from (UTC)", "to (UTC)", "rows", title=f"batches in {settings.batches_dir}")
        with progress_bar("writing weekly batches", "weeks") as track:
            for w in track(weeks):
                write_week(ml.interactions, clock, w, settings.batches_dir)
                start, end = clock.bounds(w)
                rows = len(interactions_of_week(ml.interactions, clock, w))
                table.add_row(str(w), f"{start:%Y-%m-%d %H:%M}", f"{end:%Y-%m-%d %H:%M}", f"{rows:,}")
    out.print(table)


@data_app.command("inject")
def data_inject(
    week: Annotated[int, typer.Option(help="Replay week whose incoming batch is corrupted.")],
    fault: Annotated[str, typer.Option(help="A value fault (GX must catch it) or a file fault (the reader must).")],
    seed: Annotated[int, typer.Option(help="Seed of the fault's random choices.")] = 0,
) -> None:
    """Replace a week's incoming batch with a corrupted copy (a failure drill: `recsys validate` must reject it).

    `recsys data replay --week W` restores the good batch.
    """
    settings = _settings()
    with _user_errors():
        from recsys.data.faults import FAULTS, FILE_FAULTS, inject, write_corrupt_file
        from recsys.validation.reader import BATCH_FILES, find_batch_file, read_batch

        if fault not in FAULTS + FILE_FAULTS:
            raise CliError(f"unknown fault {fault!r}; value faults: {', '.join(FAULTS)}; "
                           f"file faults: {', '.join(FILE_FAULTS)}")
        part = settings.batches_dir / f"week={week:02d}"
        batch = read_batch(find_batch_file(part), week)
        for name in BATCH_FILES:
            (part / name).unlink(missing_ok=True)
        if fault in FAULTS:
            path = part / "interactions.parquet"
            inject(batch, fault, seed=seed).to_parquet(path, index=False)
        else:
            path = write_corrupt_file(batch, part, fault)
    out.print(f"week {week:02d}: wrote a batch with fault {fault!r} to {path}; restore it with "
              f"`recsys data replay --week {week}`", soft_wrap=True)


# -- validate ------------------------------------------------------------------------------------------------
@app.command()
def validate(
    week: Annotated[int | None, typer.Option(help="Replay week whose incoming batch to validate.")] = None,
    all_weeks: Annotated[bool, typer.Option(
        "--all", help="Validate every incoming batch in week order (later weeks learn from earlier ones).")
    ] = False,
) -> None:
    """Validate incoming weekly batches with Great Expectations: accept into the training store or quarantine.

    Exits 1 if any batch was rejected (its folder under data/quarantine holds the file, the GX result and a
    summary; a notification goes out through RECSYS_NOTIFY's channels).
    """
    settings = _settings()
    with _user_errors():
        if (week is None) == (not all_weeks):
            raise CliError("give either --week W or --all")
        weeks = [week] if week is not None else sorted(
            int(p.name.split("=", 1)[1]) for p in settings.batches_dir.glob("week=*") if p.is_dir())
        if not weeks:
            raise CliError(f"no incoming batches in {settings.batches_dir}: run `recsys data replay --all`")
        with err.status("loading Great Expectations …"):
            from recsys.validation.runner import load_reference, validate_week

            reference = load_reference(settings.raw_dir)
        outcomes = []
        with progress_bar("validating weekly batches", "weeks") as track:
            for w in track(weeks):
                outcomes.append(validate_week(settings, w, reference=reference))
    table = Table("week", "rows", "new users", "new items", "verdict", "failed checks", "s",
                  title=f"validation of {settings.batches_dir}", box=box.SIMPLE_HEAD)
    for o in outcomes:
        verdict = "accepted" if o.success else "QUARANTINED"
        failed = ", ".join(o.failed_checks) or ("unreadable file" if o.error else "–")
        table.add_row(f"{o.week:02d}", f"{o.rows:,}", str(o.new_users), str(o.new_items), verdict, failed,
                      f"{o.seconds:.1f}", style=None if o.success else "bold red")
    out.print(table)
    for o in outcomes:
        if not o.success:
            out.print(f"week {o.week:02d} quarantined: {o.quarantine_path}/summary.md", soft_wrap=True)
            if o.error:
                out.print(f"  {o.error}", soft_wrap=True, markup=False)
            for f in o.failed[:5]:
                examples = ", ".join(repr(v) for v in f.examples[:3])
                out.print(f"  {f.check}: {f.expectation} on {f.column or 'the table'}"
                          f"{f' ({f.unexpected_count} rows)' if f.unexpected_count else ''}"
                          f"{f', e.g. {examples}' if examples else ''}", soft_wrap=True, markup=False)
    docs = next((o.data_docs for o in reversed(outcomes) if o.data_docs), None)
    if docs is not None:
        out.print(f"Data Docs: {docs}", soft_wrap=True)
    accepted = sum(o.success for o in outcomes)
    out.print(f"{accepted} of {len(outcomes)} batch(es) accepted into {settings.data_dir / 'store'}")
    if accepted < len(outcomes):
        raise typer.Exit(1)


# -- registry ------------------------------------------------------------------------------------------------
ModelOption = Annotated[str, typer.Option("--model", help="Registered model name.")]
VersionOption = Annotated[int, typer.Option("--version", min=1, help="Registry version.")]


@contextmanager
def _registry(settings: Settings) -> Iterator[tuple[str, AuditLog]]:
    """(tracking URI, audit log) of the registry; MLflow failures become one-line errors."""
    from mlflow.exceptions import MlflowException

    from recsys.registry.audit import AuditLog, default_audit_url
    from recsys.registry.tracking import default_tracking_uri

    audit = AuditLog(os.environ.get("RECSYS_AUDIT_URL") or default_audit_url(settings))
    try:
        yield default_tracking_uri(settings), audit
    except MlflowException as exc:
        raise CliError(f"MLflow: {exc.message}") from exc
    finally:
        audit.close()


def _notifier(settings: Settings) -> Callable[[dict[str, Any]], None]:
    """The registry's notification hook: the channels of ``$RECSYS_NOTIFY`` (default: outbox file + log)."""
    from recsys.notify import channels_from_env, registry_hook

    return registry_hook(channels_from_env(settings))


def _versions_label(from_version: int | None, to_version: int | None) -> str:
    def show(v: int | None) -> str:
        return "–" if v is None else f"v{v}"

    return f"{show(from_version)} → {show(to_version)}"


@registry_app.command("list")
def registry_list(model: ModelOption = "content-ranker") -> None:
    """List the versions of the registered model with their status and aliases."""
    settings = _settings()
    with _user_errors(), _registry(settings) as (uri, _):
        from recsys.registry.service import list_versions

        rows = list_versions(model, uri)
    if not rows:
        out.print(f"no versions of {model!r} in {uri}")
        return
    table = Table("version", "status", "aliases", "run id", "run key", "created (UTC)", title=f"{model} in {uri}")
    for row in rows:
        created = f"{row['created']:%Y-%m-%d %H:%M:%S}" if row["created"] else "–"
        table.add_row(str(row["version"]), row["status"], ", ".join(row["aliases"]) or "–", row["run_id"] or "–",
                      row["run_key"] or "–", created, style="bold" if "champion" in row["aliases"] else None)
    out.print(table)


@registry_app.command("show")
def registry_show(version: VersionOption, model: ModelOption = "content-ranker") -> None:
    """Show one version: status, aliases, run id, lineage tags and its run's metrics."""
    settings = _settings()
    with _user_errors(), _registry(settings) as (uri, _):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        mv = client.get_model_version(model, str(version))
        run = client.get_run(mv.run_id) if mv.run_id else None
    tags = {**(run.data.tags if run else {}), **(mv.tags or {})}
    table = Table(title=f"{model} v{version} in {uri}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in [("status", str(mv.status)), ("aliases", ", ".join(mv.aliases or []) or "–"),
                       ("run id", mv.run_id or "–")]:
        table.add_row(key, value)
    for tag in ("run_key", "data_hash", "git_sha", "gate_verdict"):
        table.add_row(tag, tags.get(tag) or "–")
    out.print(table)
    metrics = run.data.metrics if run else {}
    if not metrics:
        out.print("no metrics logged for this version's run")
        return
    mtable = Table("metric", "value", title="run metrics", box=box.SIMPLE_HEAD)
    for name in sorted(metrics):
        mtable.add_row(name, f"{metrics[name]:.6g}")
    out.print(mtable)


@registry_app.command("promote")
def registry_promote(
    version: VersionOption,
    model: ModelOption = "content-ranker",
    by: Annotated[str | None, typer.Option("--by", help="Who promotes (default: $USER).")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
) -> None:
    """Make a READY version the champion (moves the alias and records it in the audit log)."""
    settings = _settings()
    with _user_errors(), _registry(settings) as (uri, audit):
        from recsys.registry.service import promote

        rec = promote(model, version, actor=by, reason=reason, audit=audit, tracking_uri=uri,
                      notify=_notifier(settings))
    out.print(f"{model}: champion {_versions_label(rec['from_version'], rec['to_version'])}")


@registry_app.command("approve")
def registry_approve(
    version: VersionOption,
    by: Annotated[str, typer.Option("--by", help="Who approves.")],
    reason: Annotated[str, typer.Option("--reason", help="Why.")],
    model: ModelOption = "content-ranker",
) -> None:
    """Approve a version waiting for approval (manual policy) and promote it to champion."""
    settings = _settings()
    with _user_errors(), _registry(settings) as (uri, audit):
        from recsys.registry.service import approve

        rec = approve(model, version, by=by, reason=reason, audit=audit, tracking_uri=uri,
                      notify=_notifier(settings))
    out.print(f"{model}: approved by {by}; champion {_versions_label(rec['from_version'], rec['to_version'])}")


@registry_app.command("reject")
def registry_reject(
    version: VersionOption,
    by: Annotated[str, typer.Option("--by", help="Who rejects.")],
    reason: Annotated[str, typer.Option("--reason", help="Why.")],
    model: ModelOption = "content-ranker",
) -> None:
    """Reject a version (clears its pending approval); no alias moves."""
    settings = _settings()
    with _user_errors(), _registry(settings) as (_, audit):
        from recsys.registry.service import reject

        reject(model, version, by=by, reason=reason, audit=audit)
    out.print(f"{model}: v{version} rejected by {by}")


@registry_app.command("rollback")
def registry_rollback(
    to: Annotated[int | None, typer.Option(
        "--to", min=1, help="Version to roll back to (it must have been champion); default: the previous one.")
    ] = None,
    model: ModelOption = "content-ranker",
    by: Annotated[str | None, typer.Option("--by", help="Who rolls back (default: $USER).")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
) -> None:
    """Move the champion alias back to the previous champion of the audit history, in one command."""
    settings = _settings()
    with _user_errors(), _registry(settings) as (uri, audit):
        from recsys.registry.service import rollback

        rec = rollback(model, to_version=to, actor=by, reason=reason, audit=audit, tracking_uri=uri,
                       notify=_notifier(settings))
    out.print(f"{model}: rolled back, champion {_versions_label(rec['from_version'], rec['to_version'])}")


class GatePolicy(StrEnum):
    auto = "auto"
    manual = "manual"


@registry_app.command("gate")
def registry_gate(
    version: Annotated[int | None, typer.Option(
        "--version", min=1, help="Registry version to gate (default: the one holding the alias challenger).")
    ] = None,
    week: Annotated[int | None, typer.Option(
        "--week", help="'Now': the first week not yet seen; the gate scores weeks [W-H, W). Default: after the "
                       "last week of the data.")] = None,
    policy: Annotated[GatePolicy, typer.Option(
        help="auto: a pass promotes; manual: a pass waits for `recsys registry approve`.")] = GatePolicy.auto,
    refit: Annotated[bool, typer.Option(
        "--refit/--no-refit", help="On a pass, retrain the config on every week before W and promote (or submit "
                                   "for approval) that refit; both versions are recorded.")] = False,
    model: ModelOption = "content-ranker",
    margin: Annotated[float | None, typer.Option(help="Min CI lower bound of the NDCG@10 gain over the champion.")
                      ] = None,
    latency_budget_ms: Annotated[float | None, typer.Option(
        "--latency-budget-ms", help="Max p95 of recommend(), ms.")] = None,
    gate_config: Annotated[Path | None, typer.Option(
        "--gate-config", help="JSON file with GateConfig fields (margins, tolerances, bootstrap).")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file with TrainConfig fields (the horizon H).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who runs the gate (default: $USER).")] = None,
) -> None:
    """Score a version against the champion (or, with none, the best single generator) on held-out weeks."""
    settings = _settings()
    with _user_errors():
        cfg = load_config(config, settings)
        gcfg = _gate_config(settings, gate_config, margin, latency_budget_ms)
        ml, clock, source = _load_data(settings)
        with _registry(settings) as (uri, audit):
            from recsys.registry.release import run_gate
            from recsys.registry.service import alias_version

            if version is None:
                version = alias_version(model, "challenger", uri)
                if version is None:
                    out.print(f"{model}: no version holds the alias challenger; nothing to gate")
                    return
            now = clock.n_weeks if week is None else week
            err.print(source)
            err.print(f"gating {model} v{version} on weeks {now - cfg.backtest.horizon}..{now - 1} "
                      f"(policy {policy.value}{', refit' if refit else ''}) …")
            with progress_bar("gate", "label windows") as track:
                run = run_gate(model, version, ml=ml, clock=clock, week=now, horizon=cfg.backtest.horizon,
                               gate_cfg=gcfg, policy=policy.value, audit=audit, tracking_uri=uri,
                               settings=settings, actor=by, notify=_notifier(settings), refit=refit,
                               progress=track)
    out.print(_gate_table(run.report))
    colour = "green" if run.decision.passed else "red"
    out.print(Text(f"verdict: {run.decision.verdict}", style=f"bold {colour}"))
    for reason in run.decision.reasons:
        out.print(f"  - {reason}", soft_wrap=True, markup=False)
    if run.refit is not None:
        out.print(f"refit: v{run.refit.version} trained on weeks < {now} (evaluated version v{version})")
    target = run.refit.version if run.refit is not None else version
    out.print({"promoted": f"{model}: champion is now v{target}",
               "pending": f"{model}: v{target} waits for approval: recsys registry approve --version {target} "
                          "--by NAME --reason TEXT",
               "rejected by gate": f"{model}: no alias moved"}[run.outcome], soft_wrap=True)
    out.print(f"decision: {run.report_path}", soft_wrap=True)


def _gate_config(settings: Settings, path: Path | None, margin: float | None, latency_budget_ms: float | None
                 ) -> Any:
    """GateConfig: the params file's gate section, then a JSON file's fields, then the command's options."""
    from recsys.params import ParamsError, load_params
    from recsys.registry.gate import GateConfig

    base: dict[str, Any] = {}
    if settings.params_file.exists():
        try:
            base = dict(load_params(settings.params_file).get("gate") or {})
        except ParamsError as exc:
            raise CliError(str(exc)) from exc
    if path is not None:
        if not path.exists():
            raise CliError(f"{path}: gate config file not found")
        try:
            base.update(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    overrides = {k: v for k, v in (("margin", margin), ("latency_budget_ms", latency_budget_ms)) if v is not None}
    return GateConfig.model_validate({**base, **overrides})


def _gate_table(report: dict[str, Any]) -> Table:
    window = report["window"]
    table = Table(title=f"gate on {window['name']} ({window['users']} users, {window['cold_users']} cold)",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for header in ("check", "passed", "value", "threshold", "detail"):
        table.add_column(header, justify="left" if header in ("check", "detail") else "right")
    for name, check in report["decision"]["checks"].items():
        if check.get("skipped"):
            table.add_row(name, "skip", "–", "–", check.get("reason", ""), style="dim")
            continue
        value, threshold = check.get("value"), check.get("threshold")
        detail = ""
        if "ci_low" in check:
            detail = f"diff {check['diff']:+.4f}, CI [{check['ci_low']:+.4f}, {check['ci_high']:+.4f}], n={check['n']}"
        elif "mean_challenger" in check:
            detail = f"{check['mean_reference']:.4f} -> {check['mean_challenger']:.4f}, n={check['n']}"
        if name == "latency" and value is not None:
            value, threshold = f"{value:.1f} ms", f"{threshold:.0f} ms"
        table.add_row(name, "yes" if check["passed"] else "NO", _num(value), _num(threshold), detail,
                      style=None if check["passed"] else "red")
    return table


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    return f"{value:+.4f}" if isinstance(value, float) else str(value)


@registry_app.command("history")
def registry_history(
    model: ModelOption = "content-ranker",
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many events, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full records as JSON lines.")] = False,
) -> None:
    """Print the audit log: registrations, gate decisions, approvals, promotions and rollbacks."""
    settings = _settings()
    with _user_errors(), _registry(settings) as (_, audit):
        records = audit.history(model, limit=limit)
    if as_json:
        for rec in records:
            out.print_json(json.dumps(rec.to_dict(), default=str), indent=None)
        return
    if not records:
        out.print(f"no registry events for {model!r}")
        return
    table = Table("when (UTC)", "event", "from → to", "actor", "reason", title=f"{model}: registry history",
                  caption="reasons cut at 90 characters; the full records: --json")
    for rec in records:
        reason = rec.reason or "–"
        table.add_row(f"{rec.ts:%Y-%m-%d %H:%M:%S}", rec.event.value, _versions_label(rec.from_version, rec.to_version),
                      rec.actor, reason if len(reason) <= 90 else reason[:89] + "…")
    out.print(table)


# -- train ---------------------------------------------------------------------------------------------------
def _holdout_result(ml: MovieLens, clock: ReplayClock, train_result: TrainResult, week: int,
                    horizon: int) -> EvalResult:
    """Evaluate a freshly trained model on its own test window [week, week + horizon)."""
    from recsys.data.split import temporal_window
    from recsys.evaluation.protocols import EvalResult, evaluate_window, list_metrics

    window = temporal_window(ml.interactions, clock, week, horizon)
    per_user, lists = evaluate_window(train_result.recommender, window, ml.users, cut=week)
    return EvalResult("holdout", per_user, list_metrics([lists], len(ml.items)),
                      {"ranker": float(train_result.info["fit_seconds"])}, {"test_window": window.name})


def _train_table(result: EvalResult) -> Table:
    all_, warm, cold = result.table("all"), result.table("warm"), result.table("cold")
    n_warm = int(warm["users"].max()) if len(warm) else 0
    n_cold = int(cold["users"].max()) if len(cold) else 0
    table = Table(title=f"@{K} on the held-out {result.info['test_window']} "
                        f"({n_warm} warm + {n_cold} cold users)",
                  caption="HR = HitRate; warm, cold = NDCG of each user slice",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("model", no_wrap=True)
    for header in ("NDCG", "Recall", "MAP", "MRR", "HR", "warm", "cold"):
        table.add_column(header, justify="right", no_wrap=True)
    for model, row in all_.iterrows():
        cells = [f"{row[m]:.3f}" for m in METRICS]
        for part in (warm, cold):
            cells.append(f"{part.loc[model, f'ndcg@{K}']:.3f}" if model in part.index else "–")
        table.add_row(str(model), *cells, style="bold" if model == "ranker" else None)
    return table


@app.command()
def train(
    as_of_week: Annotated[int, typer.Option(
        "--as-of-week", help="Train on weeks < W (W = the replay week).")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Bundle directory (default: var/models/week=WW).")] = None,
    config: Annotated[Path | None, typer.Option(
        help="JSON file with TrainConfig fields (candidates, ranker, backtest); defaults fill the rest.")
    ] = None,
    register: Annotated[bool, typer.Option(
        "--register/--no-register", help="Register the logged model as a new version (alias challenger).")
    ] = True,
    model: ModelOption = "content-ranker",
) -> None:
    """Train as of a week, score it on the next H weeks, log the run to MLflow and register the model."""
    settings = _settings()
    with _user_errors():
        cfg = load_config(config, settings)
        ml, clock, source = _load_data(settings)
        from recsys.evaluation.report import format_gain, json_safe, summarize_result
        from recsys.ranking.train import check_as_of_week, train_recommender

        check_as_of_week(as_of_week, clock, cfg)
        err.print(source)
        err.print(f"training as of week {as_of_week} on weeks < {as_of_week} …")
        with progress_bar(f"training as of week {as_of_week}", "label windows") as track:
            result = train_recommender(ml, clock, as_of_week, cfg, progress=track)
        h = cfg.backtest.horizon
        report: dict[str, Any] = {"as_of_week": as_of_week, "data_hash": ml.data_hash, "train": result.info}
        holdout = None
        if as_of_week + h <= clock.n_weeks:
            with err.status(f"evaluating on weeks {as_of_week}..{as_of_week + h - 1} …"):
                holdout = _holdout_result(ml, clock, result, as_of_week, h)
                report["holdout"] = summarize_result(holdout)
            out.print(_train_table(holdout))
            out.print(format_gain(report["holdout"]["gains"]["all"]), soft_wrap=True, markup=False)
        else:
            err.print(f"[yellow]no held-out evaluation: weeks {as_of_week}..{as_of_week + h - 1} run "
                      f"past the last week {clock.n_weeks - 1}[/yellow]")
        bundle = out_dir or settings.models_dir / f"week={as_of_week:02d}"
        metrics = report.get("holdout", {}).get("metrics", {}).get("all", {}).get("ranker", {})
        result.recommender.save(bundle, extra={"metrics": metrics, "train_info": json_safe(result.info)})
        # the report sits beside the checksummed model files; it is not part of the model
        (bundle / "metrics.json").write_text(json.dumps(json_safe(report), indent=2, default=str))
        out.print(f"fit {result.info['fit_seconds']:.1f} s (ranker {result.info['fit_ranker_seconds']:.1f} s), "
                  f"best iteration {result.info['best_iteration']}")
        out.print(f"bundle: {bundle}   metrics: {bundle / 'metrics.json'}")
        with _registry(settings) as (uri, audit), err.status("logging the run to MLflow …"):
            from recsys.registry.tracking import log_training
            from recsys.registry.tracking import register as register_version

            logged = log_training(result, bundle, tracking_uri=uri, evaluation=holdout,
                                  summary=report.get("holdout"))
            out.print(f"MLflow run {logged.run_id} (run key {logged.run_key}) in {uri}", soft_wrap=True)
            if register:
                version = register_version(logged, model, tracking_uri=uri, audit=audit)
                if version.created:
                    out.print(f"registered as {model} v{version.version} (alias challenger); "
                              f"gate it: recsys registry gate --version {version.version}", soft_wrap=True)
                else:
                    out.print(f"already registered (same week, config and data) as {model} v{version.version}; "
                              "no new version", soft_wrap=True)


# -- tune ----------------------------------------------------------------------------------------------------
_TUNE_HEADERS = {"num_leaves": "leaves", "learning_rate": "lr", "min_child_samples": "min_child",
                 "feature_fraction": "ff", "lambda_l2": "l2", "label_windows": "windows",
                 "candidates.per_generator": "per_gen"}


@app.command()
def tune(
    as_of_week: Annotated[int, typer.Option(
        "--as-of-week", help="Tune for a model trained as of week W (the objective reads weeks < W only).")],
    trials: Annotated[int, typer.Option("--trials", help="Number of Optuna trials.")] = 20,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the best config: a params .yaml (its candidates and ranker sections) or a "
                      "JSON config file. Default: params.yaml, which training reads.")] = None,
    config: Annotated[Path | None, typer.Option(help="Base JSON file with TrainConfig fields.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
) -> None:
    """Optuna search over the ranker's parameters on the validation window; each trial a nested MLflow run."""
    settings = _settings()
    with _user_errors():
        if trials < 1:
            raise CliError(f"--trials must be >= 1, got {trials}")
        cfg = load_config(config, settings)
        ml, clock, source = _load_data(settings)
        from mlflow.exceptions import MlflowException

        from recsys.ranking.train import check_as_of_week
        from recsys.ranking.tune import default_config_path, write_config
        from recsys.ranking.tune import tune as run_tune

        check_as_of_week(as_of_week, clock, cfg)
        err.print(source)
        err.print(f"tuning as of week {as_of_week}: {trials} trial(s) on weeks < {as_of_week} …")
        try:
            with progress_bar(f"tuning as of week {as_of_week}", "trials") as track:
                result = run_tune(ml, clock, as_of_week, cfg, trials, seed=seed, progress=track)
        except MlflowException as exc:
            raise CliError(f"MLflow: {exc.message}") from exc
        path = write_config(result.config, out_path or default_config_path(settings))
    names = list(result.trials[0]["params"]) if result.trials else []
    table = Table(title=f"tuning as of week {as_of_week}: validation NDCG@10 per trial",
                  caption="per_gen = candidates.per_generator; trees = best iteration; bold = best",
                  box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
    for header in ["#", "NDCG", *(_TUNE_HEADERS.get(n, n) for n in names), "trees", "s"]:
        table.add_column(header, justify="right", no_wrap=True)
    for rec in result.trials:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in rec["params"].values()]
        table.add_row(str(rec["number"]), f"{rec['value']:.4f}", *cells, str(rec["best_iteration"]),
                      f"{rec['seconds']:.0f}", style="bold" if rec["value"] == result.best_value else None)
    out.print(table)
    best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
    out.print(f"best val NDCG@10 {result.best_value:.4f}: {best}", soft_wrap=True)
    how = "" if path == settings.params_file else f" --config {path}"
    out.print(f"config: {path}   (train with: recsys train --as-of-week {as_of_week}{how})", soft_wrap=True)


# -- serve ---------------------------------------------------------------------------------------------------
SERVICE_DIR = Path(__file__).resolve().parents[1] / "bentos"


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 to listen on every one).")] = "127.0.0.1",
    bundle: Annotated[Path | None, typer.Option(
        help="A bundle directory to serve as the champion until (or unless) the registry provides one.")] = None,
    watch_interval: Annotated[float, typer.Option(
        "--watch-interval", min=0, help="Seconds between checks of the registry aliases (0: never).")] = 10.0,
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log",
        help="BentoML's per-request access log (off: it costs ~15 % of the throughput; the assignment log "
             "records every request).")] = False,
) -> None:
    """Run the recommendation service (BentoML) locally on the registry's champion; Ctrl-C stops it."""
    import secrets
    import subprocess
    import sys

    settings = _settings()
    with _user_errors():
        from recsys.registry.tracking import default_tracking_uri
        from recsys.settings import ServingSettings

        if bundle is not None and not (bundle / "manifest.json").exists():
            raise CliError(f"{bundle}: not a model bundle (no manifest.json)")
        if not (SERVICE_DIR / "service.py").exists():
            raise CliError(f"{SERVICE_DIR / 'service.py'} not found: run from a checkout of the repository")
        token = os.environ.get("RECSYS_ADMIN_TOKEN") or secrets.token_urlsafe(24)
        env = {**os.environ, "MLFLOW_TRACKING_URI": default_tracking_uri(settings),
               "RECSYS_FEEDBACK_URL": ServingSettings(var_dir=settings.var_dir).feedback_db_url,
               "RECSYS_VAR_DIR": str(settings.var_dir.resolve()), "RECSYS_WATCH_INTERVAL": str(watch_interval),
               "RECSYS_ADMIN_TOKEN": token, "RECSYS_ACCESS_LOG": "1" if access_log else "0",
               "BENTOML_HOME": os.environ.get("BENTOML_HOME") or str(Path.home() / ".cache" / "recsys" / "bentoml"),
               "BENTOML_DO_NOT_TRACK": "True"}
        if bundle is not None:
            env["RECSYS_BUNDLE_DIR"] = str(bundle.resolve())
        url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
        err.print(f"serving on {url} (docs {url}/docs, metrics {url}/metrics); admin token: {token}")
        err.print(f"try: curl -s -X POST {url}/predict -H 'Content-Type: application/json' "
                  "-d '{\"user_id\": 1, \"n\": 5}'", soft_wrap=True, markup=False)
        cmd = [sys.executable, "-m", "bentoml", "serve", "service:RecommenderService", "--host", host,
               "--port", str(port)]
        try:
            code = subprocess.call(cmd, cwd=SERVICE_DIR, env=env)
        except KeyboardInterrupt:
            code = 0
    raise typer.Exit(code)


@app.command()
def bake(
    alias: Annotated[str, typer.Option(help="Registry alias whose bundle to bake.")] = "champion",
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Where the bundle goes (bentos/bundle is what `bentoml build bentos` includes).")
    ] = SERVICE_DIR / "bundle",
    model: ModelOption = "content-ranker",
) -> None:
    """Copy the registry's bundle for an alias into the Bento's build context, so a replica starts without MLflow."""
    import shutil
    import tempfile

    settings = _settings()
    with _user_errors(), _registry(settings) as (uri, _):
        from recsys.registry.release import bundle_path, load_version
        from recsys.registry.service import alias_version

        version = alias_version(model, alias, uri)
        if version is None:
            raise CliError(f"no version of {model!r} holds the alias {alias!r} in {uri}")
        with tempfile.TemporaryDirectory(prefix="recsys-bake-") as tmp:
            loaded = load_version(model, version, uri, Path(tmp))  # checks every sha256
            source = bundle_path(Path(tmp) / f"v{version}")
            staged = out_dir.with_name(f".{out_dir.name}.tmp")
            shutil.rmtree(staged, ignore_errors=True)
            shutil.copytree(source, staged)
            (staged / "BAKED.json").write_text(json.dumps(
                {"model": model, "alias": alias, "version": version, "run_id": loaded.run_id,
                 "data_hash": loaded.recommender.manifest.get("data_hash"), "tracking_uri": uri}, indent=2))
            if out_dir.exists():
                shutil.rmtree(out_dir)
            staged.rename(out_dir)
    out.print(f"{model} v{version} ({alias}) baked into {out_dir}; build the Bento with `make bento`", soft_wrap=True)


# -- evaluate ------------------------------------------------------------------------------------------------
@app.command()
def evaluate(
    protocol: Annotated[Protocol, typer.Option(
        help="Which offline protocol(s) to run (see docs/protocols.md).")] = Protocol.backtest,
    cuts: Annotated[str | None, typer.Option(
        help="Backtest cut weeks, comma-separated (e.g. 12,16,20); default: every cut of the config.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the results as JSON here.")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file with TrainConfig fields.")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report-dir", help="Also write metrics.json (flat, per protocol) and per protocol the tables, "
                             "report.md and plots here.")] = None,
) -> None:
    """Run the rolling temporal backtest and/or RecBole's 80/10/10 protocol; print tables and the gain."""
    settings = _settings()
    summaries: dict[str, Any] = {}
    results: dict[str, EvalResult] = {}
    with _user_errors():
        cfg = load_config(config, settings)
        cut_list = parse_cuts(cuts)
        ml, clock, source = _load_data(settings)
        from recsys.evaluation.protocols import run_backtest, run_recbole
        from recsys.evaluation.report import recbole_reference_row, render_result, summarize_result

        backtest_cuts = cut_list or cfg.backtest.cuts()
        if protocol in (Protocol.backtest, Protocol.both):
            check_cuts(backtest_cuts, clock, cfg)
        err.print(source)
        if protocol in (Protocol.backtest, Protocol.both):
            cut_list = backtest_cuts
            err.print(f"backtest: {len(cut_list)} cut(s) {cut_list}, horizon {cfg.backtest.horizon} …")
            with progress_bar("temporal backtest", "cuts") as track:
                backtest = run_backtest(ml, cfg, cut_list, progress=track, clock=clock)
            results["temporal_backtest"] = backtest
            summaries["temporal_backtest"] = summarize_result(backtest)
            _print_md(render_result(backtest, summaries["temporal_backtest"],
                                    f"Temporal backtest (cuts {cut_list}, horizon {cfg.backtest.horizon})"))
        if protocol in (Protocol.recbole, Protocol.both):
            with err.status("RecBole protocol: fitting on the 80 % split …"):
                recbole = run_recbole(ml, cfg)
            results["recbole"] = recbole
            summaries["recbole"] = summarize_result(recbole)
            title = "RecBole protocol (random 80/10/10 per user)"
            _print_md(render_result(recbole, summaries["recbole"], title, recbole_reference_row()))
        if report_dir is not None:
            from recsys.evaluation.report import flat_metrics, write_report

            for name, result in results.items():
                write_report(result, summaries[name], report_dir / name)
            (report_dir / "metrics.json").write_text(json.dumps(
                {name: flat_metrics(summary) for name, summary in summaries.items()}, indent=2, sort_keys=True))
            out.print(f"reports: {report_dir}")
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({"data_hash": ml.data_hash, "config": cfg.model_dump(mode="json"),
                                             "protocols": summaries}, indent=2))
            out.print(f"results: {json_path}")


if __name__ == "__main__":  # pragma: no cover
    app()
