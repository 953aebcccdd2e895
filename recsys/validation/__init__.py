"""Data validation with Great Expectations: suites, a batch-file reader and the accept/quarantine runner.

Importing this package is cheap; Great Expectations (a multi-second import) loads on first use of the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recsys.validation.reader import BatchFileError, find_batch_file, read_batch

if TYPE_CHECKING:
    from recsys.validation.runner import (
        FailedExpectation,
        Reference,
        ValidationOutcome,
        check_batch,
        load_reference,
        validate_week,
    )

_LAZY = {"FailedExpectation", "Reference", "ValidationOutcome", "check_batch", "load_reference", "validate_week"}

__all__ = ["BatchFileError", "FailedExpectation", "Reference", "ValidationOutcome", "check_batch",
           "find_batch_file", "load_reference", "read_batch", "validate_week"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from recsys.validation import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'recsys.validation' has no attribute {name!r}")
