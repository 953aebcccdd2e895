"""A thin wrapper over Great Expectations 1.x: validate one suite on one data frame, publish Data Docs.

Every validation runs on one process-wide ephemeral (in-memory) context through ``Batch.validate``: nothing is
written per run. ``GxRunner(project_dir, docs_dir)`` adds a file-mode context under ``project_dir``, opened only
by :meth:`GxRunner.publish`, which saves the suites and validation results there (as JSON) and builds their
Data Docs pages in ``docs_dir`` (``index.html`` at its top); ``GxRunner()`` builds no docs (tests, quick checks).
Contexts are cached per process: creating one is cheap, importing GX is not (seconds), so one process validating
several weeks pays the import once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

DOCS_SITE = "recsys"
_DATASOURCE = "recsys_frames"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
_CONTEXTS: dict[str, Any] = {}
"""File-mode contexts (Data Docs) by project folder."""
_EPHEMERAL: list[Any] = []
"""The process-wide in-memory context every validation runs on (created on first use)."""
_BATCH_DEFINITIONS: dict[str, Any] = {}
"""Its whole-dataframe batch definition per asset name."""


def _quiet(ctx: Any) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # GX's tqdm bars otherwise hit stderr


def _ephemeral_context() -> Any:
    if not _EPHEMERAL:
        import great_expectations as gx

        ctx: Any = gx.get_context(mode="ephemeral")
        _quiet(ctx)
        ctx.data_sources.add_pandas(_DATASOURCE)
        _EPHEMERAL.append(ctx)
    return _EPHEMERAL[0]


@dataclass(frozen=True)
class SuiteRun:
    """One suite's verdict on one frame."""

    name: str
    success: bool
    results: list[dict[str, Any]]
    """One dict per expectation: check, expectation, column, success, unexpected_count, examples, observed."""
    run_id: str
    raw: dict[str, Any]
    """The GX validation result as JSON."""
    identifier: Any = None
    """GX's ValidationResultIdentifier (for building the Data Docs page)."""
    suite: Any = None
    """The GX ExpectationSuite that was run (saved by publish)."""
    result: Any = None
    """The GX ExpectationSuiteValidationResult (saved by publish)."""

    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r["success"]]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _summarise(result: Any, table: str) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or None
    res = dict(result.result or {})
    exception = (result.exception_info or {}).get("exception_message")
    examples = res.get("partial_unexpected_list")
    if examples is None and res.get("observed_value") is not None:
        examples = [res["observed_value"]]
    return {
        "table": table,
        "check": (config.meta or {}).get("check", config.type),
        "expectation": config.type,
        "column": column,
        "success": bool(result.success),
        "unexpected_count": res.get("unexpected_count"),
        "unexpected_percent": res.get("unexpected_percent"),
        "examples": _jsonable(list(examples or [])[:5]),
        "observed": _jsonable(res.get("observed_value")),
        "exception": exception,
    }


class GxRunner:
    """Run expectation lists on data frames; publish their results as Data Docs.

    Validation always runs on one process-wide ephemeral context: the suite, the batch definition and the result
    stay in memory, so a run writes no JSON (with a file context every run re-saved its suite, validation
    definition and checkpoint and re-read them for GX's freshness checks: ~0.1-0.4 s per weekly batch for
    files nobody reads). The file context under ``project_dir`` is only opened by :meth:`publish`, which saves
    the suites and validation results the Data Docs pages are rendered from, and builds those pages.
    """

    def __init__(self, project_dir: Path | None = None, docs_dir: Path | None = None) -> None:
        self.project_dir = project_dir
        self.docs_dir = docs_dir
        self.context = _ephemeral_context()

    # -- contexts ----------------------------------------------------------------------------------------------
    @property
    def file_context(self) -> Any:
        """The file-mode context under ``project_dir`` (created on first use, cached per folder); None without."""
        if self.project_dir is None:
            return None
        key = str(self.project_dir.resolve())
        if key not in _CONTEXTS:
            import great_expectations as gx

            self.project_dir.mkdir(parents=True, exist_ok=True)
            ctx: Any = gx.get_context(mode="file", project_root_dir=str(self.project_dir))
            _quiet(ctx)
            sites = dict(ctx.get_config().data_docs_sites or {})
            for name in [n for n in sites if n != DOCS_SITE]:
                ctx.delete_data_docs_site(name)  # the default site would build a second copy of the docs
            if self.docs_dir is not None:
                site: Any = {"class_name": "SiteBuilder",
                             "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                             "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                               "base_directory": str(self.docs_dir.resolve())}}
                if DOCS_SITE in sites:
                    ctx.update_data_docs_site(DOCS_SITE, site)
                else:
                    ctx.add_data_docs_site(DOCS_SITE, site)
            _CONTEXTS[key] = ctx
        return _CONTEXTS[key]

    def _batch_definition(self, asset_name: str) -> Any:
        definition = _BATCH_DEFINITIONS.get(asset_name)
        if definition is None:
            source = self.context.data_sources.get(_DATASOURCE)
            definition = source.add_dataframe_asset(asset_name).add_batch_definition_whole_dataframe("whole")
            _BATCH_DEFINITIONS[asset_name] = definition
        return definition

    # -- running -----------------------------------------------------------------------------------------------
    def run(self, name: str, asset: str, expectations: list[Any], frame: pd.DataFrame) -> SuiteRun:
        """Validate ``frame`` against ``expectations`` as suite ``name`` (nothing is persisted; see publish)."""
        import great_expectations as gx
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        suite = gx.ExpectationSuite(name=name, expectations=expectations)
        batch = self._batch_definition(asset).get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=RESULT_FORMAT)
        run_id = RunIdentifier(run_time=datetime.now(UTC))
        # what ValidationDefinition.run records; the Data Docs page shows it
        result.meta.update(run_id=run_id, validation_time=run_id.run_time,
                           batch_parameters={"dataframe": "<DATAFRAME>"})
        identifier = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
                                                run_id=run_id, batch_identifier=batch.id)
        return SuiteRun(name=name, success=bool(result.success),
                        results=[_summarise(r, asset) for r in result.results],
                        run_id=run_id.run_time.isoformat(), raw=_jsonable(result.to_json_dict()),
                        identifier=identifier, suite=suite, result=result)

    def publish(self, runs: list[SuiteRun]) -> Path | None:
        """Save ``runs`` in the file context and build their Data Docs pages (and the index).

        The index path, or None without a project or docs folder.
        """
        if self.docs_dir is None or self.project_dir is None:
            return None
        from great_expectations.exceptions import DataContextError

        ctx = self.file_context
        resources: list[Any] = []
        for run in runs:
            suite_key = run.identifier.expectation_suite_identifier
            with contextlib.suppress(DataContextError, KeyError, ValueError):  # not there yet
                ctx.suites.delete(run.name)
            ctx.suites.add(run.suite)
            ctx.validation_results_store.store_validation_results(run.result, run.identifier, suite_key)
            resources += [run.identifier, suite_key]
        ctx.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=resources)
        return self.docs_index

    @property
    def docs_index(self) -> Path | None:
        if self.docs_dir is None or not (self.docs_dir / "index.html").is_file():
            return None
        return self.docs_dir / "index.html"
