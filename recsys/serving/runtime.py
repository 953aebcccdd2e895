"""The serving runtime the Bento wraps: route a request to a variant, recommend, answer, score the shadow.

Framework-free: :class:`ServingRuntime` takes validated pydantic requests and returns pydantic responses, so the
HTTP layer (BentoML) only maps routes and status codes, and tests drive the logic without a server.

- **Routing**: the experiment's stable hash of (salt, user id) picks a served alias; if that alias has no model
  loaded the champion serves (the response says which alias and variant answered).
- **Cold start**: an unknown user is ranked by the bundle's cold-start path from the request's profile, and the
  response says ``fallback: true``; it is never an error.
- **Shadow**: for the experiment's shadow share, the shadow alias also scores the request on a background thread
  (never delaying the answer; dropped when the thread is busy) and the rank agreement (overlap@10) is recorded.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from recsys.schema import CHAMPION
from recsys.serving.cache import Answer
from recsys.serving.models import LoadedModel, ModelManager
from recsys.serving.router import Router, overlap_at_k
from recsys.serving.schemas import Item, ModelInfo, PredictRequest, PredictResponse

logger = logging.getLogger(__name__)


class NotReadyError(RuntimeError):
    """No champion model is loaded yet (the service answers 503)."""


@dataclass
class ShadowStats:
    scored: int = 0
    dropped: int = 0
    overlap_sum: float = 0.0
    recent: list[float] = field(default_factory=list)

    @property
    def mean_overlap(self) -> float | None:
        return self.overlap_sum / self.scored if self.scored else None


class Prefetched(NamedTuple):
    """What :meth:`ServingRuntime.prefetch` found: the request's routed variant and model, and its stored answer."""

    variant: str
    model: LoadedModel
    answer: Answer | None


Observer = Callable[[str, dict[str, Any]], None]
"""Called with an event name and its fields (``predict``, ``shadow``): the metrics and traffic log hook in here."""


class ServingRuntime:
    def __init__(self, manager: ModelManager, router: Router, observers: list[Observer] | None = None) -> None:
        self.manager = manager
        self.router = router
        self.observers = observers or []
        self.shadow = ShadowStats()
        # request ids: a random prefix per runtime (each worker process has its own) and a counter; 32 hex digits
        # like a uuid4, without uuid4's os.urandom call per request (it releases the GIL: a worker thread ranking a
        # cold-start request would then hold it while the event loop waits to finish a cached answer)
        self._id_prefix = uuid.uuid4().hex[:20]
        self._counter = itertools.count()
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._shadow_slot = threading.BoundedSemaphore(4)  # at most 4 waiting shadow jobs; the rest are dropped

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(event, fields)
            except Exception:
                logger.warning("observer of %r failed", event, exc_info=True)

    def choose(self, user_id: int) -> tuple[str, LoadedModel]:
        """(variant, model): the experiment's variant for the user, the champion when that alias is not loaded."""
        models = self.manager.models  # one read: the request keeps this model even if a swap happens now
        variant = self.router.assign(user_id)
        model = models.get(variant) or models.get(CHAMPION)
        if model is None:
            raise NotReadyError("no model loaded yet")
        return variant, model

    def is_cached(self, request: PredictRequest) -> bool:
        """Whether the answer is a lookup in precomputed answers (cheap enough to run on an event loop)."""
        try:
            _, model = self.choose(request.user_id)
        except NotReadyError:
            return True  # the 503 is immediate
        profile = request.profile.model_dump() if request.profile is not None else None
        return model.is_cached(request.user_id, request.n, request.exclude or None, profile)

    async def prefetch(self, request: PredictRequest) -> Prefetched | None:
        """For a model whose answers are in the online store: the routed variant and model, and the stored answer
        read on the event loop (None inside when the store holds none); None for any other request."""
        variant, model = self.choose(request.user_id)
        profile = request.profile.model_dump() if request.profile is not None else None
        cache = model.cache
        if cache is None or not cache.in_store(request.user_id, request.exclude or None, profile):
            return None
        return Prefetched(variant, model, await cache.fetch(request.user_id, request.n))

    def predict(self, request: PredictRequest, prefetched: Prefetched | None = None) -> PredictResponse:
        """Answer ``request``; with ``prefetched`` (see :meth:`prefetch`) its variant and model, and its stored
        answer when there is one (else ranked in full without asking the store again)."""
        variant, model = prefetched[:2] if prefetched is not None else self.choose(request.user_id)
        profile = request.profile.model_dump() if request.profile is not None else None
        if prefetched is not None and prefetched.answer is not None:
            answer = prefetched.answer
        else:
            answer = model.recommend(request.user_id, request.n, exclude=request.exclude or None, profile=profile,
                                     use_store=prefetched is None)
        recs, fallback = answer.items, not answer.known
        request_id = f"{self._id_prefix}{next(self._counter):012x}"
        titles = model.recommender.titles
        items = [Item(item_id=r.item_id, score=r.score, title=titles.get(r.item_id)) for r in recs]
        response = PredictResponse(request_id=request_id, user_id=request.user_id, items=items,
                                   model=ModelInfo(name=model.name, version=model.version, alias=model.alias,
                                                   variant=variant),
                                   fallback=fallback)
        ts = request.ts.timestamp() if request.ts is not None else time.time()
        self._emit("predict", {"ts": ts, "request_id": request_id, "variant": variant, "alias": model.alias,
                               "version": model.version, "fallback": fallback, "n": request.n,
                               "candidates": answer.candidates,
                               "user_id": request.user_id, "items": [r.item_id for r in recs],
                               "scores": [r.score for r in recs], "profile": profile, "context": request.context,
                               "model": model})
        self._maybe_shadow(request, [r.item_id for r in recs], request_id)
        return response

    # -- shadow scoring --------------------------------------------------------------------------------------
    def _maybe_shadow(self, request: PredictRequest, served: list[int], request_id: str) -> None:
        alias = self.router.experiment.shadow
        if alias is None or not self.router.in_shadow(request.user_id):
            return
        model = self.manager.get(alias)
        if model is None:
            return
        if not self._shadow_slot.acquire(blocking=False):
            self.shadow.dropped += 1
            return

        def score() -> None:
            try:
                profile = request.profile.model_dump() if request.profile is not None else None
                shadow = model.recommend(request.user_id, request.n, exclude=request.exclude or None,
                                         profile=profile).items
                overlap = overlap_at_k(served, [r.item_id for r in shadow], k=min(10, request.n))
                self.shadow.scored += 1
                self.shadow.overlap_sum += overlap
                self.shadow.recent = [*self.shadow.recent[-99:], overlap]
                self._emit("shadow", {"request_id": request_id, "alias": alias, "version": model.version,
                                      "overlap": overlap})
            except Exception:
                logger.warning("shadow scoring failed", exc_info=True)
            finally:
                self._shadow_slot.release()

        self._shadow_pool.submit(score)

    def close(self) -> None:
        self._shadow_pool.shutdown(wait=True)
        self.manager.stop()
