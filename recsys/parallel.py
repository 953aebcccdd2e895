"""Offline passes over many users or item blocks, one batch per thread.

The heavy steps of a batch (numpy's partitions and sorts, scipy's sparse products, LightGBM's prediction) release
the GIL, so a pass over batches on the process's CPUs runs about 1.4-1.7 times faster on 2 cores than one batch
at a time (``benchmarks/scale.py``), with the same results in the same order. Memory grows by one batch per
thread. Past one machine the same batches go to Dask workers instead (:mod:`recsys.ranking.distributed`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def cpus() -> int:
    """The CPUs this process may run on (its affinity; a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``threads`` threads (default: :func:`cpus`), results in order."""
    todo = list(items)
    n = min(threads or cpus(), len(todo))
    if n <= 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(n, thread_name_prefix="recsys-batch") as pool:
        return list(pool.map(fn, todo))
