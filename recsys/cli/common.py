"""What every command module shares: the consoles, the error boundary, the rich reporter and result output.

Expected failures (missing data, a week out of range, a bad config file or setting, an unreachable MLflow) end with
one red line on stderr and exit code 1, never a traceback; "nothing to do yet" (no traffic logged, no champion to
check) ends with one ``nothing to do:`` line and exit code 3, which the Airflow runner turns into a skipped task.
Tables go to stdout, progress and notes to stderr; with ``--json`` stdout carries only the stage's result as JSON.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from recsys.settings import ServingSettings, Settings, SettingsError, load

if TYPE_CHECKING:
    from rich.console import RenderableType

    from recsys.stages.base import StageResult, Track

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
S = TypeVar("S", bound=Settings)
R = TypeVar("R")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON (what a DAG task passes on).")]
ModelOption = Annotated[str | None, typer.Option("--model", help="Registered model name (default: "
                                                                  "RECSYS_MODEL_NAME, else content-ranker).")]


def fail(message: str) -> None:
    err.print(Text(f"error: {message}", style="bold red"), soft_wrap=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's expected exceptions into a one-line message and exit code 1."""
    from pydantic import ValidationError

    from recsys.data.fetch import DataUnavailableError
    from recsys.stages.base import NOTHING_TO_DO_EXIT, NothingToDoError, StageError
    from recsys.stages.inputs import describe_validation

    try:
        yield
    except NothingToDoError as exc:  # not a failure: a scheduler skips on this exit code
        err.print(Text(f"nothing to do: {exc}", style="yellow"), soft_wrap=True)
        raise typer.Exit(NOTHING_TO_DO_EXIT) from exc
    except ValidationError as exc:  # before ValueError: pydantic's error is one
        fail(describe_validation(exc))
    except (StageError, SettingsError, DataUnavailableError, ValueError) as exc:  # DataFileError, BundleError too
        if logging.getLogger().isEnabledFor(logging.INFO) and not isinstance(exc, StageError | SettingsError):
            err.print_exception()  # --verbose: where a library ValueError came from
        fail(str(exc))
    except Exception as exc:
        # an MlflowException or a subclass (the registry's MlflowUnreachableError): the message is the news
        if any(cls.__module__.startswith("mlflow") for cls in type(exc).__mro__):
            message = " ".join(str(getattr(exc, "message", exc)).split())
            fail(message if message.startswith("MLflow") else f"MLflow: {message}")
        raise


def _load(cls: type[S], model: str | None) -> S:
    with user_errors():
        loaded = load(cls)
    return loaded if model is None else loaded.model_copy(update={"model_name": model})


def settings(model: str | None = None) -> Settings:
    """The settings from the environment (a bad variable is a one-line error), with ``--model`` applied."""
    return _load(Settings, model)


def serving_settings(model: str | None = None) -> ServingSettings:
    return _load(ServingSettings, model)


class RichReporter:
    """A :class:`~recsys.stages.base.Reporter` drawing on stderr (bars only on a terminal)."""

    def note(self, message: str) -> None:
        err.print(message, soft_wrap=True, markup=False)

    def status(self, message: str) -> contextlib.AbstractContextManager[Any]:
        return err.status(message)

    @contextlib.contextmanager
    def progress(self, description: str, unit: str) -> Iterator[Track[Any]]:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
            bar.add_task(description, total=None)

            def track(items: Iterable[Any]) -> Iterator[Any]:
                items = list(items)
                task = bar.add_task(unit, total=len(items))
                for item in items:
                    yield item
                    bar.advance(task)

            yield track


REPORTER = RichReporter()


def run(stage: Callable[[], R]) -> R:
    """Call a stage inside the error boundary."""
    with user_errors():
        return stage()


def emit(result: StageResult, as_json: bool, render: Callable[[], Iterable[RenderableType]]) -> None:
    """Print the result: as JSON, or as what ``render`` yields (tables, lines)."""
    if as_json:
        typer.echo(result.to_json(indent=2))
        return
    for item in render():
        out.print(item, soft_wrap=True, markup=False)


def num(value: float | None, spec: str = ".3f") -> str:
    """A table cell: the number in ``spec``, or an en dash when it is missing."""
    return "–" if value is None else format(value, spec)


def versions_label(from_version: int | None, to_version: int | None) -> str:
    def show(v: int | None) -> str:
        return "–" if v is None else f"v{v}"

    return f"{show(from_version)} → {show(to_version)}"
