"""What the project's small SQL stores share (the registry's audit log, the serving feedback store).

:class:`SqlStore` takes any SQLAlchemy URL and does nothing at construction: the engine, the SQLite folder and the
tables are made on first use, so a store can be built at import time or in a process that never touches it.
On SQLite every connection gets a busy timeout and WAL mode (readers never block the writer), and, for stores
that promise durability, ``synchronous=FULL`` (the WAL is fsynced at every commit). :class:`UTCDateTime` keeps
timestamps timezone-aware on every backend.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import DateTime, Dialect, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
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
        """Create the tables if missing. Idempotent, and safe when several processes race to do it."""
        try:
            self.metadata.create_all(self.engine)
        except DBAPIError:
            # another writer created them between our existence check and our CREATE; check again
            self.metadata.create_all(self.engine)
        self._created = True

    def _ready(self) -> Engine:
        if not self._created:
            self.create()
        return self.engine
