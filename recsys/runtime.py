"""Process-level set-up that entry points (the CLI, the service, benchmarks, tests, DAG tasks) apply.

Nothing here runs at import: an entry point calls :func:`prepare_process` before numpy, LightGBM, MLflow or
Great Expectations are imported. Explicit settings in the environment always win over these defaults. This is
also the one module (besides :mod:`recsys.settings`) that touches ``os.environ``: for process defaults, for the
environment of a child process, and to put back what MLflow's fluent API writes there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

PROCESS_DEFAULTS: dict[str, str] = {
    # numpy and scipy each bundle an OpenBLAS, and LightGBM brings an OpenMP runtime; their busy-waiting threads
    # starve each other on small machines. Measured on 2 cores: EASE's inverse took 8 s instead of 0.2 s and
    # `recsys train --as-of-week 28` 307 s instead of 43 s.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    # third-party telemetry stays off (read when those packages are imported)
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "True",
    "DO_NOT_TRACK": "1",
    # MLflow's INFO chatter and artifact progress bars would drown a command's own output
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def quiet_threads() -> None:
    """Only the thread-pool defaults (for entry points that need nothing else, e.g. a benchmark's workers)."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY"):
        os.environ.setdefault(name, PROCESS_DEFAULTS[name])


def prepare_process(verbose: bool = False) -> None:
    """Every process default (thread pools, telemetry off, quiet MLflow); call before the heavy imports."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "ERROR")


def child_env(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment with ``overrides`` applied (a None value removes the variable)."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@contextlib.contextmanager
def preserved_env(name: str) -> Iterator[None]:
    """Put ``name`` back as it was after the block (MLflow's ``set_tracking_uri`` writes its variable)."""
    saved = os.environ.get(name)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
