"""Which bundle serves each alias, and how it is replaced without dropping a request.

:class:`ModelManager` holds one immutable mapping alias -> :class:`LoadedModel`. A request reads the mapping once
and keeps using the model it got, so an in-flight request finishes on the old bundle while a swap happens. A
refresh resolves the aliases in the MLflow registry; a version not yet loaded is downloaded, loaded beside the
old one (sha256s checked by :meth:`Recommender.load`), smoke-tested (:func:`schema_problems`) and only then
swapped in by replacing the mapping in one assignment. A bundle that fails is rejected (counted and logged) and
the old one keeps serving; so does everything when MLflow cannot be reached. Before the swap, every known user's
answer is precomputed (:class:`~recsys.serving.cache.RankedCache`), so the request path of a known user is a
lookup. After a swap the heap is frozen (:func:`gc.freeze`): the collector's full passes then skip the loaded
state (walking it took ~120 ms, a pause that landed on some request). With ``compile_trees``, a background thread
then compiles the new model's trees (:meth:`Recommender.compile_trees`) and switches its scoring to them once they
match LightGBM; the swap never waits for it. A bundle directory (baked into the Bento at
build time) can be loaded without MLflow, so a fresh replica starts even when the registry is down.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recsys.ranking.recommender import BundleError, Recommender
from recsys.schema import CHALLENGER, CHAMPION
from recsys.serving.cache import Answer, RankedCache
from recsys.serving.online_store import RedisAnswers

logger = logging.getLogger(__name__)

UNREACHABLE: Literal["unreachable"] = "unreachable"
"""What :meth:`ModelManager.refresh` saw for an alias whose registry look-up failed."""
Wanted = int | None | Literal["unreachable"]
"""What the registry says an alias holds: a version, nothing (the alias is not set), or unknown (unreachable)."""


@dataclass(frozen=True)
class Step:
    """What one refresh does for one alias: ``load`` a version, ``keep`` what serves, ``drop`` it, or nothing."""

    alias: str
    action: Literal["load", "keep", "drop", "none"]
    version: int | None
    """The version loaded (``load``) or kept/dropped; None when there is none."""
    reason: str


def plan_refresh(loaded: Mapping[str, int | None], wanted: Mapping[str, Wanted]) -> list[Step]:
    """The swap decision as a pure function of states (one step per alias of ``wanted``, in its order).

    ``loaded`` maps the aliases that have a model to its version. Availability first: an unreachable registry
    or a champion alias that disappeared never unloads what serves (a service without a champion answers 503);
    another alias that disappeared is dropped; a new version is loaded (and swapped in only if it loads and
    passes its smoke test, which the caller checks); the same version is kept.
    """
    steps = []
    for alias, target in wanted.items():
        current = loaded.get(alias)
        has_model = alias in loaded
        if isinstance(target, str):  # UNREACHABLE
            steps.append(Step(alias, "keep" if has_model else "none", current,
                              "registry unreachable: kept the current model"))
        elif target is None:
            if has_model and alias != CHAMPION:
                steps.append(Step(alias, "drop", current, f"alias gone: unloaded v{current}"))
            else:
                steps.append(Step(alias, "keep" if has_model else "none", current, "no version"))
        elif has_model and current == target:
            steps.append(Step(alias, "keep", current, f"v{target} already loaded"))
        else:
            was = f"v{current}" if has_model else "nothing"
            steps.append(Step(alias, "load", target, f"load v{target} (was {was})"))
    return steps


@dataclass(frozen=True)
class LoadedModel:
    alias: str
    name: str
    version: int | None
    recommender: Recommender
    run_id: str | None = None
    data_hash: str | None = None
    source: str = "registry"
    loaded_at: float = field(default_factory=time.time)
    cache: RankedCache | None = None
    """Precomputed answers (built before the model is swapped in); None serves everything in full."""
    registered_at: float | None = None
    """When the registry created this version (Unix seconds); None for a bundle without one."""

    def recommend(self, user_id: int, n: int, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None, use_store: bool = True) -> Answer:
        """The top ``n``, whether the user is known and the candidates scored: through the cache when there is one."""
        if self.cache is not None:
            return self.cache.recommend(user_id, n, exclude, profile, use_store)
        rec = self.recommender
        items, candidates = rec.rank(user_id, n, exclude=exclude, profile=profile)
        return Answer(items, rec.is_known(user_id), candidates)

    def is_cached(self, user_id: int, n: int, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None) -> bool:
        """Whether :meth:`recommend` is a lookup (no ranking) for this request."""
        return self.cache is not None and self.cache.is_cached(user_id, n, exclude, profile)

    def info(self) -> dict[str, Any]:
        manifest = self.recommender.manifest
        return {"alias": self.alias, "name": self.name, "version": self.version, "run_id": self.run_id,
                "data_hash": self.data_hash or manifest.get("data_hash"), "as_of_week": manifest.get("as_of_week"),
                "source": self.source, "loaded_at": self.loaded_at, "registered_at": self.registered_at,
                "age_seconds": round(time.time() - self.loaded_at, 1), "features": len(self.recommender.feature_names),
                "engine": self.recommender.engine,
                "cached_users": None if self.cache is None else self.cache.users,
                "answers": None if self.cache is None else self.cache.source}


@dataclass
class SwapStats:
    succeeded: int = 0
    failed: int = 0
    last_error: str | None = None
    registry_errors: int = 0
    compiled: int = 0
    compile_failed: int = 0
    last_failed: tuple[str, int | None] | None = None
    """The alias and version of the latest load that failed (``last_error`` says why)."""
    registry_up: bool | None = None
    """Whether the latest registry look-up succeeded (None: none made yet, or no registry)."""


def validate(rec: Recommender) -> list[str]:
    """Smoke predictions on a few known users and unknown ones; an empty list means the bundle may serve."""
    from recsys.registry.release import schema_problems  # imported here: it pulls in mlflow

    known = np.asarray(rec.profiles.index[:8], dtype=np.int64)
    return schema_problems(rec, known)


class ModelManager:
    """The models behind each alias, refreshed from the registry (see the module docstring)."""

    def __init__(self, name: str, tracking_uri: str | None, aliases: tuple[str, ...] = (CHAMPION, CHALLENGER),
                 cache_dir: Path | None = None, precompute: bool = True, freeze_heap: bool = True,
                 compile_trees: bool = False, compiled_dir: Path | None = None,
                 answers: RedisAnswers | None = None) -> None:
        self.name = name
        self.answers = answers
        """The online store of precomputed answers (None: each model's answers in memory)."""
        self.precompute = precompute
        self.freeze_heap = freeze_heap
        self.compile_trees = compile_trees
        self.compiled_dir = compiled_dir
        self._compilers: list[threading.Thread] = []
        self.tracking_uri = tracking_uri
        self.aliases = aliases
        self.cache_dir = cache_dir
        self._models: Mapping[str, LoadedModel] = {}
        self._lock = threading.Lock()  # one refresh at a time; readers never take it
        self.stats = SwapStats()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.reload_marker: Path | None = None
        self.watch_checks = 0
        """How many times the watcher has looked at the reload marker and its interval (tests wait on it)."""

    # -- reading (request path) ------------------------------------------------------------------------------
    @property
    def models(self) -> Mapping[str, LoadedModel]:
        """The current mapping: read it once per request and use what it held."""
        return self._models

    def get(self, alias: str) -> LoadedModel | None:
        return self._models.get(alias)

    @property
    def ready(self) -> bool:
        return CHAMPION in self._models

    # -- loading ---------------------------------------------------------------------------------------------
    def _install(self, model: LoadedModel) -> None:
        self._models = {**self._models, model.alias: model}  # one assignment: readers see old or new, never half
        if self.freeze_heap:
            # A full (generation 2) collection walks every object of the process: with MLflow, pandas and a
            # loaded bundle that is ~250k objects and ~120 ms here, a pause that lands on whichever request
            # triggers it (the p99 tail). The loaded state lives until the next swap, so move it out of the
            # collector's reach; a replaced bundle is still freed by reference counting.
            gc.freeze()
        if self.compile_trees:
            thread = threading.Thread(target=self._compile, args=(model,), name=f"compile-{model.alias}",
                                      daemon=True)
            self._compilers = [*(t for t in self._compilers if t.is_alive()), thread]
            thread.start()

    def _compile(self, model: LoadedModel) -> None:
        """Swap the installed model's scoring to compiled trees (a few seconds, off the request path; the model
        serves with LightGBM meanwhile, and keeps doing so if compiling fails)."""
        t0 = time.perf_counter()
        try:
            model.recommender.compile_trees(self.compiled_dir)
        except Exception as exc:
            self.stats.compile_failed += 1
            logger.warning("%s v%s: compiled trees unavailable, LightGBM keeps scoring: %s", model.alias,
                           model.version, exc)
            return
        self.stats.compiled += 1
        logger.info("%s v%s: scoring with compiled trees (%.1f s)", model.alias, model.version,
                    time.perf_counter() - t0)

    def wait_compiled(self, timeout_s: float = 60.0) -> bool:
        """Wait for the background compilations started so far; False if one is still running after the timeout."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._compilers):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._compilers)

    def _prepare(self, rec: Recommender) -> RankedCache | None:
        """Smoke-test a loaded bundle and build its answer cache; BundleError if it may not serve."""
        problems = validate(rec)
        if problems:
            raise BundleError(f"the bundle failed its smoke test: {'; '.join(problems[:3])}")
        return RankedCache(rec, store=self.answers) if self.precompute else None

    def load_bundle(self, path: Path, alias: str = CHAMPION, version: int | None = None) -> LoadedModel:
        """Load a bundle directory (e.g. baked into the Bento) for ``alias``; raises BundleError if it fails."""
        with self._lock:
            try:
                rec = Recommender.load(path)
                cache = self._prepare(rec)
            except BundleError as exc:
                self.stats.failed += 1
                self.stats.last_error = f"{path}: {exc}"
                self.stats.last_failed = (alias, version)
                raise
            baked = path / "BAKED.json"  # written by `recsys bake`: which registry version this bundle is
            origin = json.loads(baked.read_text()) if baked.exists() else {}
            if version is None:
                version = origin.get("version")
            model = LoadedModel(alias, self.name, version, rec, run_id=origin.get("run_id"),
                                data_hash=rec.manifest.get("data_hash"), source=f"bundle {path}", cache=cache)
            self._install(model)
            self.stats.succeeded += 1
            return model

    def refresh(self) -> dict[str, str]:
        """Bring every alias in line with the registry (:func:`plan_refresh`); returns alias -> what happened."""
        if self.tracking_uri is None:
            return {}
        with self._lock:
            models = self._models
            loaded = {alias: model.version for alias, model in models.items()}
            steps = plan_refresh(loaded, {alias: self._lookup(alias) for alias in self.aliases})
            outcome: dict[str, str] = {}
            for step in steps:
                if step.action == "drop":
                    self._models = {k: v for k, v in self._models.items() if k != step.alias}
                if step.action == "load" and step.version is not None:
                    outcome[step.alias] = self._load_version(step.alias, step.version)
                else:
                    outcome[step.alias] = step.reason
        return outcome

    def _lookup(self, alias: str) -> Wanted:
        """The version the registry gives ``alias``; ``"unreachable"`` (counted) when the look-up fails."""
        from mlflow.exceptions import MlflowException

        from recsys.registry.service import alias_version

        assert self.tracking_uri is not None
        try:
            wanted = alias_version(self.name, alias, self.tracking_uri)
        except (MlflowException, OSError) as exc:
            self.stats.registry_errors += 1
            self.stats.registry_up = False
            logger.warning("registry unreachable (%s); %s keeps its current model", exc, alias)
            return UNREACHABLE
        self.stats.registry_up = True
        return wanted

    def _load_version(self, alias: str, version: int) -> str:
        assert self.tracking_uri is not None
        from recsys.registry.release import load_version

        dst = Path(tempfile.mkdtemp(prefix="recsys-serving-", dir=self.cache_dir))
        t0 = time.perf_counter()
        try:
            loaded = load_version(self.name, version, self.tracking_uri, dst)
            cache = self._prepare(loaded.recommender)
        except Exception as exc:  # any failure keeps the old model serving
            self.stats.failed += 1
            self.stats.last_error = f"{alias} v{version}: {exc}"
            self.stats.last_failed = (alias, version)
            logger.error("rejected %s v%d for %s: %s", self.name, version, alias, exc)
            return f"rejected v{version}: {exc}"
        finally:
            shutil.rmtree(dst, ignore_errors=True)  # the bundle is in memory now
        previous = self._models.get(alias)
        self._install(LoadedModel(alias, self.name, version, loaded.recommender, loaded.run_id,
                                  loaded.tags.get("data_hash") or loaded.recommender.manifest.get("data_hash"),
                                  cache=cache, registered_at=loaded.registered_at))
        self.stats.succeeded += 1
        was = f"v{previous.version}" if previous is not None else "nothing"
        logger.info("%s: %s v%d loaded in %.2f s (was %s)", self.name, alias, version, time.perf_counter() - t0, was)
        return f"loaded v{version} (was {was})"

    # -- watching --------------------------------------------------------------------------------------------
    def start_watcher(self, interval_s: float = 10.0, reload_marker: Path | None = None) -> None:
        """Refresh every ``interval_s`` seconds in a daemon thread (a failed refresh is logged and retried).

        With ``reload_marker``, also refresh within a quarter second of the file changing: :meth:`request_reload`
        touches it, so one worker's ``/admin/reload`` reaches every worker process sharing the folder.
        """
        if self._watcher is not None:
            return
        self.reload_marker = reload_marker

        def stamp() -> float | None:
            try:
                return reload_marker.stat().st_mtime if reload_marker is not None else None
            except OSError:
                return None

        def loop() -> None:
            seen, due = stamp(), time.monotonic() + interval_s
            while not self._stop.wait(min(0.25, interval_s)):
                self.watch_checks += 1
                now_stamp = stamp()
                if now_stamp == seen and time.monotonic() < due:
                    continue
                seen, due = now_stamp, time.monotonic() + interval_s
                try:
                    self.refresh()
                except Exception:
                    logger.exception("alias refresh failed")

        self._watcher = threading.Thread(target=loop, name="alias-watcher", daemon=True)
        self._watcher.start()

    def request_reload(self) -> None:
        """Ask every watcher sharing the reload marker (other worker processes too) to refresh now."""
        marker = self.reload_marker
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{time.time():.6f}\n")  # a new mtime (and content) every time

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
