"""What every stage shares: its result type, the error a user can act on, and the reporter it talks through.

A stage is a function ``stage(settings, params, *, reporter=...) -> Result``: the :class:`~recsys.settings.Settings`
say where things live, ``params`` (a pydantic model) say what to do, and the result is a pydantic model that
:meth:`StageResult.to_json` turns into the small JSON document a CLI ``--json``, a DVC stage or an Airflow task
passes on. A stage never prints: it reports progress and notes through a :class:`Reporter` (the CLI draws rich
progress bars with one; the default says nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")
Track = Callable[[Iterable[T]], Iterable[T]]
"""Wraps a loop so that its progress can be shown (``for w in track(weeks): ...``)."""


class StageError(ValueError):
    """An expected failure (bad input, missing data, nothing to do) whose message says what to change."""


class NothingToDoError(StageError):
    """Nothing to work on yet (no traffic logged, no champion to check): not a failure. The CLI exits with
    :data:`NOTHING_TO_DO_EXIT` so that a scheduler skips the task instead of failing it."""


NOTHING_TO_DO_EXIT = 3


class StageResult(BaseModel):
    """A stage's typed, JSON-serialisable result."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self, indent: int | None = None) -> str:
        return self.model_dump_json(indent=indent)


class Reporter(Protocol):
    """How a stage tells its caller what it is doing (never what it found: that is the result)."""

    def note(self, message: str) -> None:
        """A one-line fact worth showing (where the data comes from, what is about to run)."""

    def status(self, message: str) -> contextlib.AbstractContextManager[Any]:
        """A step of unknown length (a spinner)."""

    def progress(self, description: str, unit: str) -> contextlib.AbstractContextManager[Track[Any]]:
        """A loop of known length: the yielded function wraps the loop's iterable."""


def _passthrough(items: Iterable[T]) -> Iterable[T]:
    return items


class Silent:
    """The default reporter: says nothing (tests, DAG tasks, library callers)."""

    def note(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def progress(self, description: str, unit: str) -> Iterator[Track[Any]]:
        yield _passthrough


SILENT = Silent()
