"""Registered versions as the gate and the service use them: download and load a version's bundle, and the checks
the gate runs on it (schema smoke test, recommend() latency, which weeks it may be scored on).

The gate itself (evaluate both models, decide, act, refit) is the :mod:`recsys.stages.gate` stage; the pure verdict
is :func:`recsys.registry.gate.decide`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
from pydantic import BaseModel

from recsys.data.load import MovieLens
from recsys.data.replay import ReplayClock
from recsys.data.split import LabelWindow, temporal_window
from recsys.ranking.recommender import BundleError, Recommender
from recsys.registry.service import get_version
from recsys.registry.tracking import client_for, scoped_tracking_uri, with_retries
from recsys.schema import K

EVALUATED_VERSION_TAG, ROLE_TAG = "evaluated_version", "role"
LATENCY_USERS = 200
"""Users whose single-user recommend() is timed for the latency check."""


@dataclass
class LoadedVersion:
    version: int
    recommender: Recommender
    run_id: str | None
    as_of_week: int
    tags: dict[str, str] = field(default_factory=dict)
    registered_at: float | None = None
    """When the registry created the version (Unix seconds): when its training finished."""


def load_version(name: str, version: int, tracking_uri: str, dst: Path) -> LoadedVersion:
    """Download version ``version``'s bundle from the registry and load it, checking every sha256."""
    mv = get_version(client_for(tracking_uri), name, version)
    with scoped_tracking_uri(tracking_uri):  # models:/ URIs resolve through the global registry URI
        local = Path(with_retries(lambda: mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(dst / f"v{version}"))))
    bundle = bundle_path(local)
    try:
        rec = Recommender.load(bundle)
    except BundleError as exc:
        raise BundleError(f"{name} v{version}: {exc}") from exc
    as_of = rec.manifest.get("as_of_week")
    if not isinstance(as_of, int):
        raise BundleError(f"{name} v{version}: the bundle's manifest has no as_of_week")
    created = mv.creation_timestamp / 1000 if mv.creation_timestamp else None
    return LoadedVersion(version, rec, mv.run_id, as_of, dict(mv.tags or {}), created)


def bundle_path(model_dir: Path) -> Path:
    """Where the pyfunc model in ``model_dir`` keeps its ``bundle`` artifact (from its MLmodel file)."""
    from mlflow.models import Model

    try:
        flavor = Model.load(str(model_dir / "MLmodel")).flavors["python_function"]
        return model_dir / flavor["artifacts"]["bundle"]["path"]
    except (OSError, KeyError) as exc:
        raise BundleError(f"{model_dir}: not a recsys pyfunc model (no 'bundle' artifact in its MLmodel)") from exc


def schema_problems(rec: Recommender, known_users: np.ndarray, n: int = K) -> list[str]:
    """Smoke-test a bundle the way serving will use it; an empty list means it passed.

    Known and unknown users must each get ``n`` distinct catalog items with finite, descending scores, and the
    feature builder must produce exactly the booster's features (score_pairs checks that).
    """
    problems: list[str] = []
    catalog = set(next(iter(rec.stage1.generators.values())).item_ids_.tolist())
    unknown = np.array([-1, 10**9], dtype=np.int64)
    try:
        lists = rec.recommend_batch(np.concatenate([known_users[:8], unknown]), n)
    except Exception as exc:  # a broken bundle can fail in any way: report it, do not crash the gate
        return [f"recommend() failed: {type(exc).__name__}: {exc}"]
    for user, recs in zip(np.concatenate([known_users[:8], unknown]), lists, strict=True):
        items = [r.item_id for r in recs]
        scores = np.array([r.score for r in recs])
        if len(items) != n or len(set(items)) != n:
            problems.append(f"user {user}: {len(set(items))} distinct items instead of {n}")
        if not np.isfinite(scores).all() or (np.diff(scores) > 1e-9).any():
            problems.append(f"user {user}: scores are not finite and descending")
        if not set(items) <= catalog:
            problems.append(f"user {user}: items outside the catalog")
    return problems


class LatencyStats(BaseModel):
    """Milliseconds of single-user recommend() calls."""

    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float


def recommend_latency(rec: Recommender, users: np.ndarray, n: int = K) -> LatencyStats:
    """Wall time of single-user recommend() calls, one per user, after a short warm-up (milliseconds)."""
    for user in users[:5]:
        rec.recommend(int(user), n)
    times = np.empty(len(users))
    for i, user in enumerate(users):
        t0 = time.perf_counter()
        rec.recommend(int(user), n)
        times[i] = time.perf_counter() - t0
    ms = times * 1000
    return LatencyStats(n=len(users), p50_ms=float(np.percentile(ms, 50)), p95_ms=float(np.percentile(ms, 95)),
                        p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()))


def latency_users(window: LabelWindow, seed: int) -> np.ndarray:
    """The users whose single-user recommend() the gate times (a seeded sample of the window's users)."""
    users = window.users
    rng = np.random.default_rng(seed)
    return rng.choice(users, size=min(LATENCY_USERS, len(users)), replace=False)


def compared_version(name: str, champion: int, tracking_uri: str) -> int:
    """The version whose evaluation stands for the champion: its ``evaluated_version`` tag, else itself."""
    mv = get_version(client_for(tracking_uri), name, champion)
    tag = (mv.tags or {}).get(EVALUATED_VERSION_TAG)
    return int(tag) if tag else champion


def evaluation_window(ml: MovieLens, clock: ReplayClock, week: int, horizon: int) -> LabelWindow:
    """The held-out window ``[week - horizon, week)``; ValueError when the data cannot give it."""
    if not 1 <= week <= clock.n_weeks:
        raise ValueError(f"week {week} is out of range: the data has weeks 0..{clock.n_weeks - 1}, so 'now' is "
                         f"1..{clock.n_weeks}")
    if week - horizon < 1:
        raise ValueError(f"week {week} leaves no {horizon}-week evaluation window with history before it")
    return temporal_window(ml.interactions, clock, week - horizon, horizon)


def require_held_out(label: str, loaded: LoadedVersion, start: int, week: int) -> None:
    if loaded.as_of_week > start:
        raise ValueError(f"{label} v{loaded.version} was trained on weeks < {loaded.as_of_week}, which overlaps the "
                         f"evaluation window [{start}, {week}); gate a model trained as of week {start} or "
                         f"earlier (recsys train --as-of-week {start})")
