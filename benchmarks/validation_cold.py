"""The fresh processes of benchmarks.validation: a cold ``validate_week`` timing its own phases, or the import of
Great Expectations alone. Each prints one JSON line; nothing heavy is imported before its clock starts.

    python -m benchmarks.validation_cold validate SPAWNED ROOT WEEK NOW
    python -m benchmarks.validation_cold gx-import

``validate`` wraps our GxRunner methods and ``store.accept`` (GX itself is left alone, except that the file
context's ``build_data_docs`` is timed through an instance attribute, to split publishing into the Data Docs build
and the GX store writes) and reports seconds per phase; ``SPAWNED`` is the parent's ``time.time()`` just before
it started this process, so the interpreter's start is measured too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

SPENT = {"context_setup": 0.0, "validation": 0.0, "publish": 0.0, "docs_build": 0.0, "batch_store_write": 0.0}


def timed(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, adding the seconds of every call to ``SPENT[key]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[key] += time.perf_counter() - t

    return wrapper


def validate(spawned: float, root: Path, week: int, now: int) -> dict[str, Any]:
    t0, p0 = time.time(), time.perf_counter()
    from recsys.settings import Settings
    from recsys.validation import gx_runner, store
    from recsys.validation.runner import validate_week

    p1 = time.perf_counter()
    import great_expectations  # noqa: F401  (validate_week would import it; timed apart)

    p2 = time.perf_counter()
    runner = gx_runner.GxRunner
    runner.__init__ = timed("context_setup", runner.__init__)  # type: ignore[method-assign]
    runner.run = timed("validation", runner.run)  # type: ignore[method-assign]
    runner.publish = timed("publish", runner.publish)  # type: ignore[method-assign]
    file_context_of = cast(property, vars(runner)["file_context"]).fget
    assert file_context_of is not None

    def file_context(self: Any) -> Any:
        t = time.perf_counter()
        ctx = file_context_of(self)
        SPENT["context_setup"] += time.perf_counter() - t
        SPENT["publish"] -= time.perf_counter() - t
        if ctx is not None and "build_data_docs" not in vars(ctx):
            ctx.build_data_docs = timed("docs_build", ctx.build_data_docs)
        return ctx

    runner.file_context = property(file_context)  # type: ignore[method-assign,assignment]
    store.accept = timed("batch_store_write", store.accept)

    outcome = validate_week(Settings(data_dir=root / "data", var_dir=root / "var"), week, now=now, channels=[])
    SPENT["gx_store_write"] = SPENT.pop("publish") - SPENT["docs_build"]
    return {"success": outcome.success, "validate_week": outcome.seconds, "gx_import": p2 - p1,
            "interpreter_start": t0 - spawned, "our_imports": p1 - p0, **SPENT,
            "other": outcome.seconds - sum(SPENT.values()), "end": time.time()}


def gx_import() -> dict[str, float]:
    t = time.perf_counter()
    import great_expectations  # noqa: F401

    return {"import": time.perf_counter() - t}


def main(argv: list[str]) -> int:
    if argv[:1] == ["validate"] and len(argv) == 5:
        row: dict[str, Any] = validate(float(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4]))
    elif argv == ["gx-import"]:
        row = gx_import()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
