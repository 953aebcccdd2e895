"""Database stages: bring every store of the project to the code's schema, or say where each one stands.

The stores are the registry's audit log, the notification outbox, the serving feedback store and the bandit's
posteriors (:mod:`recsys.db`); their URLs come from the settings (SQLite under ``var/`` by default, one
PostgreSQL database in the compose and Kubernetes deployments). ``recsys db migrate`` is what a deployment's
one-shot init runs before anything else starts; it is idempotent, so running it at every deploy is safe.
"""

from __future__ import annotations

from pydantic import Field

from recsys.db import Migration, SqlStore
from recsys.notify.store import NotificationStore
from recsys.registry.audit import AuditLog
from recsys.serving.bandit import BanditStore
from recsys.serving.feedback import FeedbackStore
from recsys.settings import ServingSettings, masked
from recsys.stages.base import StageResult


def stores(settings: ServingSettings) -> list[SqlStore]:
    """Every SQL store the settings point at, in the order a deployment migrates them."""
    return [AuditLog(settings.audit_db_url), NotificationStore(settings.notify_db_url),
            FeedbackStore(settings.feedback_db_url), BanditStore(settings.bandit_db_url)]


class MigrateResult(StageResult):
    stores: list[Migration]
    changed: bool = Field(description="some table was created or some upgrade step ran")


def migrate(settings: ServingSettings) -> MigrateResult:
    """Create the missing tables and run the pending upgrade steps of every store (idempotent)."""
    done = []
    for store in stores(settings):
        try:
            done.append(store.migrate())
        finally:
            store.close()
    return MigrateResult(stores=done, changed=any(m.created or m.applied for m in done))


class StoreStatus(StageResult):
    store: str
    url: str
    version: int | None = Field(description="the recorded schema version (None: not migrated yet)")
    code_version: int
    current: bool


class DbStatusResult(StageResult):
    stores: list[StoreStatus]
    current: bool = Field(description="every store is at the code's schema version")


def status(settings: ServingSettings) -> DbStatusResult:
    """The recorded schema version of every store beside the code's (reads only; nothing is created)."""
    rows = []
    for store in stores(settings):
        try:
            version = store.status()
        finally:
            store.close()
        rows.append(StoreStatus(store=store.schema_name, url=masked(str(store.url)), version=version,
                                code_version=store.schema_version, current=version == store.schema_version))
    return DbStatusResult(stores=rows, current=all(r.current for r in rows))
