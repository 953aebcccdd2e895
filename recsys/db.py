"""What the project's small SQL stores share (the registry's audit log, the serving feedback store, the
notification outbox, the bandit's posteriors).

:class:`SqlStore` takes any SQLAlchemy URL and does nothing at construction: the engine, the SQLite folder and the
tables are made on first use, so a store can be built at import time or in a process that never touches it.

**Migrations** are explicit and idempotent: every store has a name and a schema version, recorded per store in the
table ``recsys_schema_version`` of its database (stores may share one database, as in the compose stack).
:meth:`SqlStore.migrate` (``recsys db migrate``) creates what is missing, applies the store's upgrade steps from the
recorded version to the code's, one transaction per step, and refuses a database newer than the code. On
PostgreSQL concurrent migrators queue on an advisory lock; the first use of a store migrates it too, so the
embedded default needs no separate step.
On SQLite every connection gets a busy timeout and WAL mode (readers never block the writer), and, for stores
that promise durability, ``synchronous=FULL`` (the WAL is fsynced at every commit). :class:`UTCDateTime` keeps
timestamps timezone-aware on every backend.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another one's lock before failing (records take milliseconds)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores none of the offset, so UTC is implied there)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("stored timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


VERSION_TABLE = "recsys_schema_version"


class MigrationError(RuntimeError):
    """The database cannot be brought to the code's schema (it is newer than the code, or a step failed)."""


class Migration(BaseModel):
    """What :meth:`SqlStore.migrate` found and did on one store."""

    store: str
    url: str = Field(description="the database, password masked")
    from_version: int | None = Field(description="the recorded version before (None: a new database)")
    to_version: int
    applied: list[int] = Field(description="the upgrade steps run now (the versions they lead to)")
    created: list[str] = Field(description="tables created now")


_versions = MetaData()
_version_table = Table(
    VERSION_TABLE, _versions,
    Column("store", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("migrated_at", UTCDateTime(), nullable=False),
)


def sqlite_pragmas(durable: bool) -> Any:
    """A ``connect`` listener: busy timeout, WAL, and with ``durable`` ``synchronous=FULL``."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
            while True:
                try:
                    cur.execute("PRAGMA journal_mode = WAL")  # persists in the file
                    break
                except sqlite3.OperationalError as exc:
                    # switching a new file to WAL returns SQLITE_BUSY without calling the busy handler when
                    # several connections open it at once (seen with 8 threads on a fresh file): wait here instead
                    if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            if durable:
                # NORMAL (the WAL default) survives a process crash but may lose the last commits on power loss
                cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    return on_connect


class SqlStore:
    """A lazily connected store over any SQLAlchemy URL; subclasses set ``metadata`` (and ``durable``)."""

    metadata: ClassVar[MetaData]
    durable: ClassVar[bool] = False
    """SQLite only: fsync the WAL at every commit (an acknowledged write survives power loss)."""
    schema_name: ClassVar[str]
    """The store's key in ``recsys_schema_version``."""
    schema_version: ClassVar[int] = 1
    """The schema this code reads and writes; raise it with a step in :attr:`upgrades`."""
    upgrades: ClassVar[Mapping[int, Callable[[Connection], None]]] = {}
    """``{version: step}``: the DDL/DML that takes the schema from ``version - 1`` to ``version``."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)  # parses only; fails early on a malformed URL
        self._engine: Engine | None = None
        self._created = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url.render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._make_engine()
            return self._engine

    def _make_engine(self) -> Engine:
        if self.url.get_backend_name() != "sqlite":
            return create_engine(self.url, pool_pre_ping=True)
        db = self.url.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url)
        event.listen(engine, "connect", sqlite_pragmas(self.durable))
        return engine

    def close(self) -> None:
        """Release the connection pool; the store reopens on next use."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def create(self) -> None:
        """Bring the tables to the code's schema (:meth:`migrate`); what the first use of a store does."""
        self.migrate()

    def status(self) -> int | None:
        """The recorded schema version (None: never migrated). Reads only."""
        engine = self.engine
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            return conn.execute(select(_version_table.c.version)
                                .where(_version_table.c.store == self.schema_name)).scalar()

    def migrate(self) -> Migration:
        """Create what is missing and run the upgrade steps from the recorded version to :attr:`schema_version`.

        Idempotent (a second run changes nothing) and safe when several processes run it at once: on PostgreSQL
        they queue on an advisory lock, on SQLite on the database's write lock (``BEGIN IMMEDIATE``).
        A database recorded at a newer version than the code raises :class:`MigrationError`.
        """
        outcome = self._migrate()
        self._created = True
        return outcome

    def _migrate(self) -> Migration:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": zlib.crc32(VERSION_TABLE.encode())})
            elif conn.dialect.name == "sqlite":
                # the write lock now, not at the first write: the DDL below runs in this transaction, so
                # concurrent migrators take turns (each waits up to the busy timeout) instead of racing
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            existing = set(inspect(conn).get_table_names())
            _versions.create_all(conn)
            recorded = conn.execute(select(_version_table.c.version)
                                    .where(_version_table.c.store == self.schema_name)).scalar()
            ours = set(self.metadata.tables)
            if recorded is None and ours & existing:
                recorded = 1  # tables made before versions were recorded: the first schema
            if recorded is not None and recorded > self.schema_version:
                raise MigrationError(
                    f"the {self.schema_name} store at {self.url.render_as_string(hide_password=True)} is at "
                    f"schema version {recorded}, newer than this code's {self.schema_version}: upgrade recsys "
                    "(or restore the database backup taken before the upgrade)")
            applied = []
            if recorded is not None:
                for version in range(recorded + 1, self.schema_version + 1):
                    step = self.upgrades.get(version)
                    if step is None:
                        raise MigrationError(f"the {self.schema_name} store has no upgrade step to version {version}")
                    step(conn)
                    applied.append(version)
            self.metadata.create_all(conn)
            now = datetime.now(UTC)
            if conn.execute(select(_version_table.c.store)
                            .where(_version_table.c.store == self.schema_name)).first() is None:
                conn.execute(_version_table.insert().values(store=self.schema_name, version=self.schema_version,
                                                            migrated_at=now))
            elif applied:
                conn.execute(_version_table.update().where(_version_table.c.store == self.schema_name)
                             .values(version=self.schema_version, migrated_at=now))
            return Migration(store=self.schema_name, url=self.url.render_as_string(hide_password=True),
                             from_version=recorded, to_version=self.schema_version, applied=applied,
                             created=sorted(ours - existing))

    def _ready(self) -> Engine:
        if not self._created:
            self.create()
        return self.engine
