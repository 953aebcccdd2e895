"""``params.yaml``: every tunable of the pipeline in one file that DVC tracks (``dvc exp run -S ranker.lr=...``).

Sections: ``candidates``, ``ranker``, ``backtest`` (the :class:`~recsys.config.TrainConfig`), ``gate``
(:class:`~recsys.registry.gate.GateConfig`, read by ``recsys registry gate``), ``drift``
(:class:`~recsys.config.DriftConfig`, read by ``recsys train`` for the bundle's reference and by ``recsys drift``),
and ``train`` / ``evaluate`` (the week and cuts ``dvc.yaml`` passes to the commands). Unknown keys inside a section
are errors that name the file and the field; a missing section or key takes the code's default. ``recsys tune``
writes its best values back with :func:`update_params`, keeping the file's comments and order.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from recsys.config import DriftConfig, TrainConfig

TRAIN_SECTIONS = ("candidates", "ranker", "backtest")


class ParamsError(ValueError):
    """params.yaml cannot be read or holds an invalid value (the message names the file and the field)."""


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments and key order survive an update
    yaml.preserve_quotes = True
    return yaml


def load_params(path: Path) -> dict[str, Any]:
    """The file as plain data; ParamsError if it is unreadable, not YAML or not a mapping of sections."""
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(f"cannot read params file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ParamsError(f"params file {path}: not UTF-8 text") from exc
    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise ParamsError(f"params file {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path}: expected a mapping of sections, got {type(data).__name__}")
    return _plain(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def validate_section(model: type[BaseModel], data: dict[str, Any], path: Path, section: str | None = None) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in ((section,) if section else ()) + tuple(first["loc"]))
        given = f", got {first['input']!r}" if "input" in first and first["type"] != "missing" else ""
        raise ParamsError(f"params file {path}: field {loc}: {first['msg']}{given}") from exc


def train_config(path: Path, params: dict[str, Any] | None = None) -> TrainConfig:
    """The TrainConfig of the file's candidates, ranker and backtest sections."""
    params = load_params(path) if params is None else params
    config: TrainConfig = validate_section(TrainConfig, {k: params[k] for k in TRAIN_SECTIONS if k in params}, path)
    return config


def drift_config(path: Path, params: dict[str, Any] | None = None) -> DriftConfig:
    """The DriftConfig of the file's ``drift`` section (the code's defaults without one)."""
    params = load_params(path) if params is None else params
    section = params.get("drift") or {}
    if not isinstance(section, dict):
        raise ParamsError(f"params file {path}: field drift: expected a mapping, got {section!r}")
    config: DriftConfig = validate_section(DriftConfig, section, path, "drift")
    return config


def update_params(path: Path, updates: dict[str, dict[str, Any]]) -> Path:
    """Set ``updates[section][key]`` in the file, keeping everything else (comments included); atomic."""
    yaml = _yaml()
    data = yaml.load(path.read_text(encoding="utf-8")) if path.exists() else None
    if data is None:
        from ruamel.yaml.comments import CommentedMap

        data = CommentedMap()
    for name, values in updates.items():
        if name not in data or data[name] is None:
            data[name] = {}
        for key, value in values.items():
            data[name][key] = value
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return path
