"""A thin wrapper over a Great Expectations 1.x context: run one suite on one data frame through a checkpoint.

``GxRunner(project_dir, docs_dir)`` uses a file-mode context under ``project_dir`` (suites, validation results
and checkpoints are kept as JSON there) and publishes Data Docs to ``docs_dir`` (``index.html`` at its top);
``GxRunner()`` uses an ephemeral, in-memory context and builds no docs (used by tests and quick checks).
Contexts are cached per project folder: creating one is cheap, importing GX is not (several seconds), so one
process validating several weeks pays the import once.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

DOCS_SITE = "recsys"
_DATASOURCE = "recsys_frames"
_CONTEXTS: dict[str, Any] = {}


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
    """Run expectation lists on data frames with one (cached) GX context."""

    def __init__(self, project_dir: Path | None = None, docs_dir: Path | None = None) -> None:
        self.project_dir = project_dir
        self.docs_dir = docs_dir
        self.context = self._context()

    # -- context -----------------------------------------------------------------------------------------------
    def _context(self) -> Any:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        key = str(self.project_dir.resolve()) if self.project_dir else None
        if key is not None and key in _CONTEXTS:
            return _CONTEXTS[key]
        ctx: Any
        if self.project_dir is None:
            ctx = gx.get_context(mode="ephemeral")
        else:
            self.project_dir.mkdir(parents=True, exist_ok=True)
            ctx = gx.get_context(mode="file", project_root_dir=str(self.project_dir))
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # GX's tqdm bars otherwise hit stderr
        sites = dict(ctx.get_config().data_docs_sites or {})
        for name in [n for n in sites if n != DOCS_SITE]:
            ctx.delete_data_docs_site(name)  # the default site would build a second copy of the docs
        if self.docs_dir is not None:
            site: Any = {"class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                      "base_directory": str(self.docs_dir.resolve())}}
            if DOCS_SITE in sites:
                ctx.update_data_docs_site(DOCS_SITE, site)
            else:
                ctx.add_data_docs_site(DOCS_SITE, site)
        if key is not None:
            _CONTEXTS[key] = ctx
        return ctx

    def _replace(self, store: Any, obj: Any) -> Any:
        from great_expectations.exceptions import DataContextError

        with contextlib.suppress(DataContextError, KeyError, ValueError):  # not there yet
            store.delete(obj.name)
        return store.add(obj)

    def _batch_definition(self, asset_name: str) -> Any:
        ctx = self.context
        try:
            source = ctx.data_sources.get(_DATASOURCE)
        except (KeyError, ValueError, LookupError):
            source = ctx.data_sources.add_pandas(_DATASOURCE)
        try:
            asset = source.get_asset(asset_name)
        except LookupError:
            asset = source.add_dataframe_asset(asset_name)
        try:
            return asset.get_batch_definition("whole")
        except (KeyError, ValueError, LookupError):
            return asset.add_batch_definition_whole_dataframe("whole")

    # -- running -----------------------------------------------------------------------------------------------
    def run(self, name: str, asset: str, expectations: list[Any], frame: pd.DataFrame) -> SuiteRun:
        """Validate ``frame`` against ``expectations`` as suite ``name`` (replacing an earlier suite of that name)."""
        import great_expectations as gx

        ctx = self.context
        suite = self._replace(ctx.suites, gx.ExpectationSuite(name=name, expectations=expectations))
        definition = self._replace(ctx.validation_definitions,
                                   gx.ValidationDefinition(name=name, data=self._batch_definition(asset), suite=suite))
        # Data Docs are built once for all suites of a run (publish), not by an UpdateDataDocsAction per
        # checkpoint: each action rebuilds the whole index, which costs more than the validation itself.
        checkpoint = self._replace(ctx.checkpoints, gx.Checkpoint(
            name=name, validation_definitions=[definition], actions=[],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10}))
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        identifier, result = next(iter(outcome.run_results.items()))
        return SuiteRun(name=name, success=bool(outcome.success),
                        results=[_summarise(r, asset) for r in result.results],
                        run_id=outcome.run_id.run_time.isoformat(), raw=_jsonable(result.to_json_dict()),
                        identifier=identifier)

    def publish(self, runs: list[SuiteRun]) -> Path | None:
        """Build the Data Docs pages of ``runs`` (and the index); the index path, or None without a docs folder."""
        if self.docs_dir is None or self.project_dir is None:
            return None
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        resources: list[Any] = []
        for run in runs:
            resources += [run.identifier, ExpectationSuiteIdentifier(name=run.name)]
        self.context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=resources)
        return self.docs_index

    @property
    def docs_index(self) -> Path | None:
        if self.docs_dir is None or not (self.docs_dir / "index.html").is_file():
            return None
        return self.docs_dir / "index.html"
