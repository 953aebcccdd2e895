"""The BentoML service options the environment sets, shared by ``bentos/service.py`` and the benchmark's floor.

Read when the service module is imported (``@bentoml.service`` takes them then):

``RECSYS_MAX_CONCURRENCY``
    in-flight requests per service before 429 (default 128, split by BentoML across the workers; 32 turned
    closed-loop load into a storm of instant 429s, see benchmarks/serving.py).
``RECSYS_TIMEOUT``
    request timeout in seconds (default 10; then 504).
``RECSYS_THREADS``
    threads running the synchronous endpoints per worker (default 4; the service also caps its uncached
    predictions at this many threads).
``RECSYS_ACCESS_LOG``
    ``1``/``true``/``on``/``yes`` turns BentoML's per-request access log on. Off by default: it costs ~15 % of the
    throughput, and the service records every request off the request path in its assignment log. BentoML's own
    configuration (``BENTOML_CONFIG_OPTIONS``/``BENTOML_CONFIG``) wins over it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

TRUE = frozenset({"1", "true", "on", "yes"})


def threads(env: Mapping[str, str] = os.environ) -> int:
    return int(env.get("RECSYS_THREADS", "4"))


def bento_options(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Keyword arguments of ``@bentoml.service`` (besides the name) from the environment."""
    return {
        "traffic": {"timeout": float(env.get("RECSYS_TIMEOUT", "10")),
                    "max_concurrency": int(env.get("RECSYS_MAX_CONCURRENCY", "128"))},
        "threads": threads(env),
        "metrics": {"enabled": True},
        "logging": {"access": {"enabled": env.get("RECSYS_ACCESS_LOG", "").strip().lower() in TRUE}},
    }
