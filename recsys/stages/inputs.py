"""The inputs every training stage starts from: the data (raw or the validated store) and the layered configs.

Config layering, lowest first: the code's defaults, the settings' ``params.yaml`` (when it exists), then a file the
caller names (a JSON file of fields, or another params YAML), then explicit overrides. Unknown keys and bad values
are errors that name the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from recsys.config import DriftConfig, TrainConfig
from recsys.params import ParamsError, drift_config, load_params, train_config
from recsys.settings import Settings
from recsys.stages.base import StageError

if TYPE_CHECKING:
    from recsys.data.load import MovieLens
    from recsys.data.replay import ReplayClock
    from recsys.registry.gate import GateConfig


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field a.b: message, got 'x'`` (and how many more)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    given = f", got {first['input']!r}" if loc and "input" in first else ""
    return f"{f'field {loc}: ' if loc else ''}{first['msg']}{given}{more}"


@dataclass(frozen=True)
class TrainingData:
    """What training reads: users and items from the raw download, interactions from the validated store (or the
    raw download), the replay clock, and a one-line account of where the interactions came from."""

    ml: MovieLens
    clock: ReplayClock
    source: str
    store_weeks: dict[int, Path] = field(default_factory=dict)
    """The store's file of each week the interactions came from (empty: the raw download); the Dask engine's
    workers read their label windows' weeks from them."""


def load_raw(settings: Settings) -> tuple[MovieLens, ReplayClock]:
    """The whole raw download and its replay clock (the source the weekly batches are cut from)."""
    from recsys.data.load import load_movielens
    from recsys.data.replay import ReplayClock

    ml = load_movielens(settings.raw_dir)
    return ml, ReplayClock.from_interactions(ml.interactions)


def load_training_data(settings: Settings, through_week: int | None = None) -> TrainingData:
    """Interactions from the validated store (see ``Settings.training_source``), users and items from the raw data.

    The replay clock keeps the raw data's week 0, so week numbers mean the same whatever the store holds; it ends
    after the last accepted week, which makes that week + 1 the pipeline's "now". ``through_week`` keeps only the
    accepted weeks up to it: what the pipeline knew then (a scheduled run for an earlier week trains, and hashes,
    the same data whatever was validated since).
    """
    from recsys.data.load import MovieLens
    from recsys.data.replay import ReplayClock
    from recsys.validation.store import accepted_weeks, load_store, week_file

    ml, clock = load_raw(settings)
    before = None if through_week is None else through_week + 1
    weeks = [] if settings.training_source == "raw" else accepted_weeks(settings, before=before)
    if not weeks:
        if settings.training_source == "store":
            raise StageError(f"no validated weeks in {settings.store_dir}: run `recsys validate --all` "
                             "(or set RECSYS_TRAINING_SOURCE=raw)")
        return TrainingData(ml, clock, f"interactions: the raw download, weeks 0..{clock.n_weeks - 1} "
                                       "(no validated store)")
    interactions, weeks, digest = load_store(settings, weeks)
    missing = sorted(set(range(weeks[-1] + 1)) - set(weeks))
    gaps = f"; missing (not validated): {missing}" if missing else ""
    source = f"interactions: validated store, weeks {weeks[0]}..{weeks[-1]} ({len(interactions):,} rows){gaps}"
    return TrainingData(MovieLens(ml.users, ml.items, interactions, digest),
                        ReplayClock(origin=clock.origin, n_weeks=weeks[-1] + 1), source,
                        {w: week_file(settings, w) for w in weeks})


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise StageError(f"cannot read {what} {path}: {reason}") from exc


def load_train_config(settings: Settings, path: Path | None = None) -> TrainConfig:
    """The training config: ``path`` (a JSON file of TrainConfig fields, or a params YAML), else the settings'
    params file when it exists, else the code's defaults."""
    if path is None:
        if not settings.params_file.exists():
            return TrainConfig()
        path = settings.params_file
    try:
        if path.suffix in (".yaml", ".yml"):
            return train_config(path)
        return TrainConfig.model_validate_json(_read_text(path, "config file"))
    except ParamsError as exc:
        raise StageError(str(exc)) from exc
    except ValidationError as exc:
        raise StageError(f"config file {path}: {describe_validation(exc)}") from exc


def load_gate_config(settings: Settings, path: Path | None = None, **overrides: Any) -> GateConfig:
    """GateConfig: the params file's ``gate`` section, then a JSON file's fields, then the non-None ``overrides``."""
    from recsys.registry.gate import GateConfig

    base: dict[str, Any] = {}
    if settings.params_file.exists():
        try:
            base = dict(load_params(settings.params_file).get("gate") or {})
        except ParamsError as exc:
            raise StageError(str(exc)) from exc
    if path is not None:
        if not path.exists():
            raise StageError(f"{path}: gate config file not found")
        try:
            base.update(json.loads(_read_text(path, "gate config file")))
        except json.JSONDecodeError as exc:
            raise StageError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    try:
        return GateConfig.model_validate({**base, **{k: v for k, v in overrides.items() if v is not None}})
    except ValidationError as exc:
        raise StageError(f"gate config: {describe_validation(exc)}") from exc


M = TypeVar("M", bound=BaseModel)


def load_section(settings: Settings, section: str, model: type[M], **overrides: Any) -> M:
    """A params-file section as ``model`` (missing file or section: the defaults), then the non-None overrides;
    StageError naming the file and field on a bad value."""
    from recsys.params import validate_section

    data: dict[str, Any] = {}
    if settings.params_file.exists():
        try:
            data = dict(load_params(settings.params_file).get(section) or {})
        except ParamsError as exc:
            raise StageError(str(exc)) from exc
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        result: M = validate_section(model, data, settings.params_file, section)
    except ParamsError as exc:
        raise StageError(str(exc)) from exc
    return result


def load_drift_config(settings: Settings, path: Path | None = None) -> DriftConfig:
    """DriftConfig: the ``drift`` section of ``path`` (a params YAML), else of the settings' params file when it
    exists, else the code's defaults."""
    path = path or settings.params_file
    if path == settings.params_file and not path.exists():
        return DriftConfig()
    try:
        return drift_config(path)
    except ParamsError as exc:
        raise StageError(str(exc)) from exc
