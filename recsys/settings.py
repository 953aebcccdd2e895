"""Every environment variable the system reads, as typed settings (pydantic-settings), read in this one place.

:class:`Settings` is what the offline stages need (where data and state live, the registry, notifications);
:class:`ServingSettings` adds the recommendation service's knobs. Variables carry the prefix ``RECSYS_``, except
the two that belong to other tools (``MLFLOW_TRACKING_URI``, ``BENTOML_HOME``) and the actor's ``USER`` fallback.
Booleans take pydantic's spellings (``1/0``, ``true/false``, ``on/off``, ``yes/no``); a bad value fails with
:class:`SettingsError` naming the variable. Constructing settings only computes paths: nothing is created,
nothing is imported, no process state changes (that is :mod:`recsys.runtime`'s job).

``recsys config show`` prints the effective values (secrets masked); ``docs/configuration.md`` is generated
from these classes by :func:`reference_markdown` (a test fails when it is stale).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from recsys.schema import DEFAULT_MODEL_NAME

PREFIX = "RECSYS_"
MIB = 1024 * 1024


class SettingsError(ValueError):
    """An environment variable holds a value its setting rejects (the message names the variable)."""


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Where the pipeline's data and state live, the registry it talks to, and who is told what happened."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", use_attribute_docstrings=True,
                                      validate_default=True, populate_by_name=True)

    data_dir: Path = Path("data")
    """Raw download, wheel cache, replayed weekly batches, the validated store and quarantine."""
    var_dir: Path = Path("var")
    """Runtime state: model bundles, reports, the local MLflow store, the audit log, serving logs."""
    params_file: Path = Path("params.yaml")
    """Every tunable of the pipeline (read when it exists; ``recsys tune`` writes to it)."""
    training_source: Literal["auto", "store", "raw"] = "auto"
    """Where training reads interactions: ``store`` (validated batches), ``raw`` (the whole download) or ``auto``
    (the store when it holds a week, else raw)."""
    model_name: str = Field(DEFAULT_MODEL_NAME, min_length=1)
    """Registered model name in the MLflow registry."""
    tracking_uri: str | None = Field(None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    """MLflow tracking and registry URI. Unset: the commands use ``sqlite:///<var_dir>/mlflow/mlflow.db``
    (``recsys serve`` passes that on); the service alone then has no registry and serves its bundle."""
    audit_url: str | None = None
    """SQLAlchemy URL of the registry's audit log; unset: ``sqlite:///<var_dir>/registry/audit.db``."""
    notify: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["outbox", "log"])
    """Notification channels, comma-separated: ``outbox`` (JSON lines in ``<var_dir>/notifications/outbox.jsonl``),
    ``log``, ``slack``, ``email``; empty turns notifications off. Every notification is stored first in the
    notification store (``RECSYS_NOTIFY_URL``) with its delivery state per channel."""
    notify_url: str | None = None
    """SQLAlchemy URL of the notification store (messages, per-channel delivery state, dedup); unset:
    ``sqlite:///<var_dir>/notifications/notifications.db``."""
    notify_timeout: float = Field(5.0, gt=0, le=30)
    """Seconds one delivery attempt (an HTTP request, an SMTP session) may take."""
    notify_retries: int = Field(3, ge=1, le=10)
    """Delivery attempts per channel and message before it is left pending for ``recsys notify replay``."""
    notify_backoff: float = Field(0.5, ge=0, le=5)
    """Seconds before the first retry; doubles per attempt, capped at 8 times this (0.5 s -> 1 s -> ... 4 s)."""
    notify_dedup_seconds: float = Field(3600.0, ge=0)
    """The same alert (event, model, version and subject) is sent once per this many seconds; repeats are
    stored as suppressed (0 sends every one)."""
    slack_webhook_url: SecretStr | None = None
    """Slack incoming-webhook URL (channel ``slack``; a secret: from the environment only)."""
    smtp_host: str | None = None
    """SMTP server of the ``email`` channel."""
    smtp_port: int | None = Field(None, ge=1, le=65535)
    """SMTP port; unset: 587 for ``starttls``, 465 for ``ssl``, 25 for ``none``."""
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    """``starttls`` (upgrade a plain connection), ``ssl`` (TLS from the start) or ``none`` (a local relay)."""
    smtp_user: str | None = None
    """SMTP login; unset: no authentication."""
    smtp_password: SecretStr | None = None
    """SMTP password (a secret: from the environment only)."""
    smtp_from: str | None = None
    """Sender address of the e-mails, e.g. ``recsys <alerts@example.org>``."""
    smtp_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Recipients of the e-mails, comma-separated."""
    smtp_ca_file: Path | None = None
    """A CA bundle (PEM) the SMTP server's certificate is verified with; unset: the system's CAs."""
    mlflow_ui_url: str | None = None
    """Base URL of the MLflow UI, for run and model-version links in notifications; unset: no such links."""
    data_docs_url: str | None = None
    """Base URL where the Great Expectations Data Docs are published; unset: the local path is shown."""
    runbook_base_url: str = "docs/runbooks/"
    """Where the runbooks live (``<base><name>.md``); the default is the repository's folder."""
    replay_start: date | None = None
    """The Monday (UTC) a schedule's logical dates count replay weeks from (:mod:`recsys.stages.schedule`); unset: the
    data's own week 0 (1997-09-15 for MovieLens-100K), so a backfill over the data's dates replays its history."""
    actor: str = Field("system", min_length=1, validation_alias=AliasChoices("RECSYS_ACTOR", "USER"))
    """Who registry actions are recorded as when a command names nobody (falls back to ``$USER``)."""
    git_sha: str | None = None
    """The source's commit where it has no ``.git`` (the images set it at build time); unset: ``git rev-parse
    HEAD`` of the source tree. Recorded with every training run."""

    _split_notify = field_validator("notify", "smtp_to", mode="before")(_csv)

    @field_validator("replay_start")
    @classmethod
    def _monday(cls, value: date | None) -> date | None:
        if value is not None and value.weekday() != 0:
            raise ValueError(f"{value.isoformat()} is a {value:%A}: a replay week starts on a Monday")
        return value

    @field_validator("notify_url", "slack_webhook_url", "smtp_host", "smtp_user", "smtp_password", "smtp_from",
                     "smtp_ca_file", "mlflow_ui_url", "data_docs_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    # -- derived paths (computed, never created here) ----------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw" / "ml-100k"

    @property
    def wheel_cache(self) -> Path:
        return self.data_dir / "cache"

    @property
    def batches_dir(self) -> Path:
        return self.data_dir / "batches"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def models_dir(self) -> Path:
        return self.var_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.var_dir / "reports"

    @property
    def registry_dir(self) -> Path:
        return self.var_dir / "registry"

    @property
    def serving_dir(self) -> Path:
        return self.var_dir / "serving"

    @property
    def outbox_path(self) -> Path:
        return self.var_dir / "notifications" / "outbox.jsonl"

    @property
    def notify_db_url(self) -> str:
        return self.notify_url or f"sqlite:///{(self.var_dir / 'notifications' / 'notifications.db').as_posix()}"

    @property
    def mlflow_uri(self) -> str:
        """The tracking URI in effect: the configured one, else the SQLite store under ``var_dir``."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.var_dir / 'mlflow' / 'mlflow.db').resolve().as_posix()}"

    @property
    def audit_db_url(self) -> str:
        return self.audit_url or f"sqlite:///{(self.registry_dir / 'audit.db').as_posix()}"


class ServingSettings(Settings):
    """The recommendation service (``bentos/service.py``): models, logs, limits and the admin token."""

    admin_token: SecretStr | None = None
    """Bearer token of the admin endpoints (``/admin/reload``); unset: they answer 503 ``admin disabled``."""
    service_url: str = "http://127.0.0.1:3000"
    """Where a client of the running service reaches it (``recsys service reload``, the DAGs' reload tasks)."""
    bundle_dir: str | None = None
    """A bundle directory served as the champion until the registry provides one; unset: the baked
    ``bentos/bundle`` when it exists; empty: no bundle at all."""
    watch_interval: float = Field(10.0, ge=0)
    """Seconds between checks of the registry aliases (0: never)."""
    feedback_url: str | None = None
    """SQLAlchemy URL of the feedback store; unset: ``sqlite:///<var_dir>/serving/feedback.db``."""
    experiment: str | None = None
    """The A/B experiment as inline JSON (see ``recsys.serving.router``); default 100 % champion."""
    experiment_file: Path | None = None
    """The A/B experiment as a JSON or YAML file (not together with ``RECSYS_EXPERIMENT``)."""
    traffic_rate: float = Field(0.01, ge=0, le=1)
    """Share of predictions logged with their feature rows and scores, for drift monitoring (0 disables; each
    sample re-ranks the request off the request path, ~4 ms of CPU)."""
    traffic_dir: Path | None = None
    """Where the sampled traffic log writes ``traffic-YYYYMMDD.jsonl`` (a row per served item); unset:
    ``<var_dir>/serving/traffic``."""
    assignment_dir: Path | None = None
    """Where every prediction's assignment goes (``assignments-YYYYMMDD.jsonl``: request id, user, variant,
    version); unset: ``<var_dir>/serving/assignments``."""
    bandit_url: str | None = None
    """SQLAlchemy URL of the bandit's posteriors (a ``thompson`` experiment); unset: the feedback store's."""
    bandit_interval: float = Field(60.0, gt=0)
    """Seconds between a worker's reads of the bandit posteriors (every worker computes the same shares)."""
    compile_trees: bool = True
    """After a model loads, compile its trees to machine code (lleaves) in the background and score with them
    once they match LightGBM (to 1e-9); false keeps LightGBM."""
    compiled_dir: Path | None = None
    """Cache of compiled trees, keyed by model text, lleaves/llvmlite versions and CPU (a hit loads in ~0.1 s
    instead of compiling for ~4 s); unset: ``<var_dir>/serving/compiled``."""
    answers_url: str | None = None
    """Redis URL of the online store of precomputed answers (``redis://host:6379/0``): known users' answers are
    read from it instead of each worker's memory (docs/scaling.md); unset: in memory."""
    answers_prefix: str = "recsys:answers"
    """Key prefix of the online store (one per deployment sharing a Redis)."""
    answers_timeout: float = Field(0.05, gt=0)
    """Seconds a store lookup may take before the answer is ranked in full instead."""
    max_concurrency: int = Field(128, ge=1)
    """In-flight requests per service before 429 (BentoML splits it across the workers; read at import)."""
    timeout: float = Field(10.0, gt=0)
    """Request timeout in seconds, then 504 (read at import)."""
    workers: int | Literal["cpu_count"] = 1
    """Worker processes of the service, or ``cpu_count`` (cgroup-aware: in a pod, its CPU limit); each has its
    own model copy and connection pool, so the stores must take concurrent writers (read at import)."""
    threads: int = Field(4, ge=1)
    """Threads per worker for the synchronous endpoints, and (separately) the cap on concurrent uncached
    rankings (read at import)."""
    access_log: bool = False
    """BentoML's per-request access log (it costs ~15 % of the throughput; the assignment log records every
    request anyway; read at import; BentoML's own configuration wins)."""
    max_body_bytes: int = Field(MIB, ge=1024)
    """Largest request body accepted; a bigger one gets 413 before it is read (read at import)."""
    bentoml_home: Path = Field(Path.home() / ".cache" / "recsys" / "bentoml",
                               validation_alias=AliasChoices("BENTOML_HOME"))
    """BentoML's home (built Bentos, models); kept outside the repository."""

    @field_validator("experiment", "feedback_url", "bandit_url", "answers_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("answers_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a Redis URL: redis://host:6379/0, rediss://... or unix:///path")
        return value

    @field_validator("experiment_file", "traffic_dir", "assignment_dir", "compiled_dir", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def feedback_db_url(self) -> str:
        return self.feedback_url or f"sqlite:///{(self.serving_dir / 'feedback.db').as_posix()}"

    @property
    def bandit_db_url(self) -> str:
        return self.bandit_url or self.feedback_db_url

    @property
    def traffic_path(self) -> Path:
        return self.traffic_dir or self.serving_dir / "traffic"

    @property
    def assignment_path(self) -> Path:
        return self.assignment_dir or self.serving_dir / "assignments"

    @property
    def compiled_path(self) -> Path:
        return self.compiled_dir or self.serving_dir / "compiled"

    def reload_marker(self) -> Path:
        """The file one worker's ``/admin/reload`` touches so that every worker's watcher refreshes."""
        return self.serving_dir / f"reload-{self.model_name}"


S = TypeVar("S", bound=Settings)


def env_name(cls: type[Settings], field: str) -> str:
    """The environment variable that sets ``field`` (its first alias, else the prefixed field name)."""
    info = cls.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{PREFIX}{field.upper()}"


def load(cls: type[S], **overrides: Any) -> S:
    """``cls()`` from the environment; :class:`SettingsError` naming the variable (or field) on a bad value."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = env_name(cls, field) if field in cls.model_fields and field not in overrides else field
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        given = f", got {first['input']!r}" if "input" in first and not isinstance(first["input"], dict) else ""
        raise SettingsError(f"{name}: {first['msg']}{given}{more}") from None


# -- the reference: `recsys config show` and docs/configuration.md -----------------------------------------------
def _default_text(info: FieldInfo) -> str:
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    if isinstance(value, Path) and value.is_absolute() and str(value).startswith(str(Path.home())):
        return "~/" + value.relative_to(Path.home()).as_posix()
    return str(value).lower() if isinstance(value, bool) else str(value)


_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?P<tail>@)", re.IGNORECASE)


def masked(text: str) -> str:
    """A URL's password replaced by ``***`` (``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``)."""
    return _CREDENTIALS.sub(lambda m: f"{m['head']}***{m['tail']}", text)


def effective(settings: Settings) -> list[dict[str, str]]:
    """One row per variable: name, effective value (secrets masked) and its description."""
    rows = []
    cls = type(settings)
    for field, info in cls.model_fields.items():
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            shown = "********" if value.get_secret_value() else ""
        elif isinstance(value, list):
            shown = ",".join(map(str, value))
        elif value is None:
            shown = "unset"
        else:
            shown = str(value).lower() if isinstance(value, bool) else masked(str(value))
        rows.append({"variable": env_name(cls, field), "value": shown, "default": _default_text(info),
                     "description": " ".join((info.description or "").split())})
    return rows


def reference_markdown() -> str:
    """docs/configuration.md: every variable of every settings class, with its default and meaning."""
    lines = ["# Configuration", "",
             "Generated from `recsys/settings.py` by `recsys config docs`; a test fails when this file is stale.",
             "Every variable is optional. `recsys config show` prints the values in effect (secrets masked).", ""]
    seen: set[str] = set()
    for cls in (Settings, ServingSettings):
        lines += [f"## {cls.__name__}", "", " ".join((cls.__doc__ or "").split()), ""]
        if cls is not Settings:
            lines += ["It reads every variable above, and:", ""]
        lines += ["| variable | default | meaning |", "|---|---|---|"]
        for field, info in cls.model_fields.items():
            name = env_name(cls, field)
            if name in seen:
                continue
            seen.add(name)
            meaning = " ".join((info.description or "").split()).replace("|", "\\|")
            lines.append(f"| `{name}` | `{_default_text(info)}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)
