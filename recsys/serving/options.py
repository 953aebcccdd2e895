"""The ``@bentoml.service`` options the settings give, shared by ``bentos/service.py`` and the benchmark's floor.

Read when the service module is imported (``@bentoml.service`` takes them then): ``RECSYS_MAX_CONCURRENCY``,
``RECSYS_TIMEOUT``, ``RECSYS_WORKERS``, ``RECSYS_THREADS`` and ``RECSYS_ACCESS_LOG`` (see
:class:`~recsys.settings.ServingSettings`).
BentoML's own configuration (``BENTOML_CONFIG_OPTIONS``/``BENTOML_CONFIG``) wins over them.
"""

from __future__ import annotations

from typing import Any

from recsys.settings import ServingSettings


def bento_options(settings: ServingSettings) -> dict[str, Any]:
    """Keyword arguments of ``@bentoml.service`` (besides the name)."""
    return {
        "traffic": {"timeout": settings.timeout, "max_concurrency": settings.max_concurrency},
        "workers": settings.workers,
        "threads": settings.threads,
        "metrics": {"enabled": True},
        "logging": {"access": {"enabled": settings.access_log}},
    }
