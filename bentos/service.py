"""The BentoML 1.4 service over :mod:`recsys.serving`: HTTP routes and status codes only, no ranking logic.

Configuration: :class:`recsys.settings.ServingSettings` (every variable in docs/configuration.md), read when this
module is imported.

HTTP contract (every status of every route is in ``CONTRACT`` at the end, from which
:func:`recsys.serving.http.openapi_document` builds the served ``/docs.json``; bentos/README.md has the table):

- ``POST /predict`` (async bentoml.api): :class:`PredictRequest` -> 200 :class:`PredictResponse`; 400 invalid
  body (BentoML validates it against PredictRequest); 503 no champion loaded. A precomputed answer is looked up on
  the event loop; anything else is ranked on a worker thread, so the loop never waits on numpy. Every answer's
  assignment is logged (``AssignmentLog``), a sample of them with features (``TrafficLog``).
- ``POST /feedback`` (bentoml.api): :class:`FeedbackEvent` -> 202 :class:`FeedbackAck` after the commit;
  ``stored`` is false for a duplicate ``event_id``; 400 invalid body.
- ``GET /model``, ``POST /admin/reload`` (a FastAPI app mounted on the service; a reload also touches
  ``<RECSYS_VAR_DIR>/serving/reload-<model>`` so every worker's watcher refreshes): loaded models, experiment, swap
  and shadow stats; registry refresh now (401 without the bearer token, 503 when no token is configured, 502 when
  the refresh raises).
- ``/livez``, ``/readyz`` (503 until a champion is loaded, via ``__is_ready__``) and ``/metrics`` are BentoML's
  own; ``/metrics`` also carries the ``recsys_*`` metrics defined here.
- Every route: 413 for a body over ``RECSYS_MAX_BODY_BYTES`` (before it is read), 429 over
  ``RECSYS_MAX_CONCURRENCY`` (not the health routes), 504 after ``RECSYS_TIMEOUT``; ``/predict`` and
  ``/feedback`` answer 415 to a Content-Type other than application/json. Every error body, whoever writes it, is
  an :class:`~recsys.serving.schemas.ErrorBody` ``{"error": "...", "detail": [...] | null}``
  (:class:`~recsys.serving.http.ContractMiddleware`).
"""

import hmac
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.to_thread
import bentoml
from fastapi import FastAPI, Header
from fastapi.responses import Response
from prometheus_client import Counter, Gauge, Histogram

from recsys.monitoring.metrics import (
    CTR_DIR,
    DRIFT_DIR,
    LATEST,
    LIVE_DIR,
    CtrGauges,
    DriftGauges,
    Gauges,
    LiveGauges,
    export_latest,
)
from recsys.schema import CHAMPION
from recsys.serving.bandit import BanditRefresher, BanditStore
from recsys.serving.feedback import FeedbackEvent, FeedbackStore
from recsys.serving.http import (
    INVALID,
    OVERLOADED,
    TIMED_OUT,
    TOO_LARGE,
    UNSUPPORTED,
    Answer,
    ContractMiddleware,
    Operation,
    error_bytes,
    openapi_document,
)
from recsys.serving.models import LoadedModel, ModelManager, SwapStats
from recsys.serving.online_store import RedisAnswers
from recsys.serving.options import bento_options
from recsys.serving.router import Experiment, Router
from recsys.serving.runtime import NotReadyError, Observer, ServingRuntime
from recsys.serving.schemas import FeedbackAck, PredictRequest, PredictResponse
from recsys.serving.traffic import AssignmentLog, TrafficLog
from recsys.settings import ServingSettings, load

logger = logging.getLogger("recsys.bento")

SETTINGS = load(ServingSettings)

# -- metrics (prometheus_client; aggregated across workers through PROMETHEUS_MULTIPROC_DIR) ----------------------
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
SCORE_BUCKETS = (-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
CANDIDATE_BUCKETS = (0, 10, 25, 50, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000)
PREDICTIONS = Counter("recsys_predict_requests", "predict requests by variant (alias served) and status",
                      ["variant", "status"])
FALLBACKS = Counter("recsys_predict_fallback", "predictions for unknown users (cold-start policy)", ["variant"])
PREDICT_LATENCY = Histogram("recsys_predict_latency_seconds", "time inside the runtime's predict",
                            buckets=LATENCY_BUCKETS)
REQUEST_LATENCY = Histogram("recsys_request_latency_seconds",
                            "time inside the endpoint handler, by endpoint and model version (successes only)",
                            ["endpoint", "version"], buckets=LATENCY_BUCKETS)
CANDIDATES = Histogram("recsys_predict_candidates", "candidates the ranker scored per predict request",
                       buckets=CANDIDATE_BUCKETS)
SCORES = Histogram("recsys_predict_score", "ranker scores of the served items, by variant", ["variant"],
                   buckets=SCORE_BUCKETS)
SHADOW_OVERLAP = Histogram("recsys_shadow_overlap", "overlap@10 of the shadow ranking with the served one",
                           buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
SWAPS = Counter("recsys_model_swaps", "model loads by outcome", ["outcome"])
REGISTRY_ERRORS = Counter("recsys_registry_errors", "registry look-ups that failed (the current model kept serving)")
FEEDBACK = Counter("recsys_feedback_events", "feedback events received, by type, variant and whether stored",
                   ["event", "variant", "stored"])
LOG_DROPPED = Counter("recsys_log_dropped", "traffic/assignment log entries dropped (full queue)", ["log"])
MODEL_INFO = Gauge("recsys_model_info", "1 for the model version serving each alias",
                   ["alias", "name", "version", "run_id", "data_hash"], multiprocess_mode="livemax")
DRIFT_GAUGES = DriftGauges()
CTR_GAUGES = CtrGauges()
LIVE_GAUGES = LiveGauges()
MODEL_AGE = Gauge("recsys_model_age_seconds", "seconds since the alias's model was loaded", ["alias"],
                  multiprocess_mode="livemax")
MODEL_REGISTERED = Gauge("recsys_model_registered_timestamp_seconds",
                         "when the registry created the alias's version (its training finished)", ["alias"],
                         multiprocess_mode="livemax")
MODEL_COMPILED = Gauge("recsys_model_compiled", "1 when the alias's trees run compiled (lleaves), 0 on LightGBM",
                       ["alias"], multiprocess_mode="livemin")
REGISTRY_UP = Gauge("recsys_registry_up", "1 when the latest registry look-up of the model succeeded (absent "
                    "without a registry)", ["name"], multiprocess_mode="livemin")
CACHE = Counter("recsys_predict_cache", "predict requests answered from the precomputed answers (hit) or ranked",
                ["result"])
CACHE_HIT, CACHE_MISS = CACHE.labels("hit"), CACHE.labels("miss")


def version_label(version: int | None) -> str:
    """A model version as a label value: ``none`` for a bundle without a registry version."""
    return "none" if version is None else str(version)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An :class:`~recsys.serving.schemas.ErrorBody` answer."""
    return Response(error_bytes(message), status_code=status, media_type="application/json", headers=headers)


class _MetricsSync:
    """Mirrors the manager's state into the gauges and swap counters (on change and every few seconds), and tells
    people about a failed swap (``on_swap_failed``, called off the lock)."""

    def __init__(self, manager: ModelManager, on_swap_failed: Callable[[SwapStats], None] | None = None) -> None:
        self.manager = manager
        self.on_swap_failed = on_swap_failed
        self._seen = (0, 0, 0)
        self._labels: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            stats = self.manager.stats
            ok, failed, reg = stats.succeeded, stats.failed, stats.registry_errors
            newly_failed = failed > self._seen[1]
            SWAPS.labels("succeeded").inc(max(0, ok - self._seen[0]))
            SWAPS.labels("failed").inc(max(0, failed - self._seen[1]))
            REGISTRY_ERRORS.inc(max(0, reg - self._seen[2]))
            self._seen = (ok, failed, reg)
            models = self.manager.models
            now = time.time()
            for alias, labels in list(self._labels.items()):
                model = models.get(alias)
                current = None if model is None else self._model_labels(model)
                if current != labels:
                    MODEL_INFO.labels(*labels).set(0)  # multiprocess files keep a removed child's value
                    del self._labels[alias]
                    if model is None:
                        for gauge in (MODEL_AGE, MODEL_REGISTERED, MODEL_COMPILED):
                            gauge.labels(alias).set(0)
            for alias, model in models.items():
                labels = self._model_labels(model)
                MODEL_INFO.labels(*labels).set(1)
                self._labels[alias] = labels
                MODEL_AGE.labels(alias).set(round(now - model.loaded_at, 1))
                if model.registered_at is not None:
                    MODEL_REGISTERED.labels(alias).set(model.registered_at)
                MODEL_COMPILED.labels(alias).set(1.0 if model.recommender.engine == "lleaves" else 0.0)
            if stats.registry_up is not None:
                REGISTRY_UP.labels(self.manager.name).set(1.0 if stats.registry_up else 0.0)
        if newly_failed and self.on_swap_failed is not None:
            self.on_swap_failed(stats)

    @staticmethod
    def _model_labels(model: LoadedModel) -> tuple[str, ...]:
        data_hash = model.data_hash or model.recommender.manifest.get("data_hash") or ""
        return (model.alias, model.name, version_label(model.version), str(model.run_id or ""), str(data_hash))


admin_app = FastAPI(title="recsys admin", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="recommender", **bento_options(SETTINGS))
@bentoml.asgi_app(admin_app, path="/")
class RecommenderService:
    """MovieLens recommendations with hot-swapped registry models, A/B routing, shadow scoring and feedback."""

    def __init__(self) -> None:
        cfg = SETTINGS
        self.admin_token = cfg.admin_token.get_secret_value() if cfg.admin_token else None
        tracking_uri = cfg.tracking_uri or None
        answers = None if cfg.answers_url is None else RedisAnswers.connect(cfg.answers_url, cfg.answers_prefix,
                                                                            cfg.answers_timeout)
        self.manager = ModelManager(cfg.model_name, tracking_uri, compile_trees=cfg.compile_trees,
                                    compiled_dir=cfg.compiled_path, answers=answers)
        self.sync_metrics = _MetricsSync(self.manager, on_swap_failed=self._swap_failed)
        self.assignments = AssignmentLog(cfg.assignment_path, on_drop=LOG_DROPPED.labels("assignments").inc)
        self.traffic = None if cfg.traffic_rate == 0 else TrafficLog(
            cfg.traffic_path, rate=cfg.traffic_rate, on_drop=LOG_DROPPED.labels("traffic").inc)
        LOG_DROPPED.labels("traffic")  # exported at 0 from the start
        observers: list[Observer] = [self._observe, self.assignments]
        if self.traffic is not None:
            observers.append(self.traffic)
        experiment = Experiment.configured(cfg.experiment, cfg.experiment_file)
        router = Router(experiment)
        self.runtime = ServingRuntime(self.manager, router, observers=observers)
        self.bandit: BanditRefresher | None = None
        if experiment.allocation == "thompson":  # shares from the stored posteriors, the same in every worker
            self.bandit = BanditRefresher(BanditStore(cfg.bandit_db_url), router)
            self.bandit.start(cfg.bandit_interval)
        self.monitors: list[tuple[Path, Gauges]] = [(cfg.var_dir / DRIFT_DIR / LATEST, DRIFT_GAUGES),
                                                    (cfg.var_dir / CTR_DIR / LATEST, CTR_GAUGES),
                                                    (cfg.var_dir / LIVE_DIR / LATEST, LIVE_GAUGES)]
        self._limiter: anyio.CapacityLimiter | None = None  # made on the event loop, at the first uncached predict
        self.feedback_store = FeedbackStore(cfg.feedback_db_url)

        bundle = cfg.bundle_dir
        baked = Path(__file__).resolve().parent / "bundle"  # `recsys bake` puts it here; the Bento ships it
        if bundle is None and (baked / "manifest.json").exists():  # set but empty: no bundle at all
            bundle = str(baked)
        if bundle:
            try:
                model = self.manager.load_bundle(Path(bundle))
                logger.info("loaded bundle %s as champion (v%s)", bundle, model.version)
            except Exception:
                logger.exception("the bundle %s could not be loaded", bundle)
        try:
            outcome = self.manager.refresh()
            if outcome:
                logger.info("registry refresh: %s", outcome)
        except Exception:
            logger.exception("registry refresh failed at start; serving what is loaded")
        if tracking_uri is not None and cfg.watch_interval > 0:
            # /admin/reload reaches one worker: it touches this file and every worker's watcher refreshes too
            self.manager.start_watcher(cfg.watch_interval, reload_marker=cfg.reload_marker())
        self.sync_metrics()
        self._stop = threading.Event()
        self._metrics_thread = threading.Thread(target=self._metrics_loop, name="metrics-sync", daemon=True)
        self._metrics_thread.start()

    def _metrics_loop(self) -> None:
        while True:
            try:
                self.sync_metrics()
                self.sync_monitors()
            except Exception:
                logger.warning("metrics sync failed", exc_info=True)
            if self._stop.wait(5.0):
                return

    def _swap_failed(self, stats: SwapStats) -> None:
        """A new model could not be loaded (the old one keeps serving): notify, on a thread of its own, since a
        slow receiver may take seconds (every worker reports it; the notification store keeps one per period)."""
        from recsys import notify

        alias, version = stats.last_failed or ("?", None)
        serving = self.manager.get(alias)
        details = {"alias": alias, "error": stats.last_error,
                   "serving": None if serving is None else serving.version}
        threading.Thread(target=notify.notify, args=(SETTINGS, "model_swap_failed"),
                         kwargs={"model_name": self.manager.name, "version": version, "details": details},
                         name="notify-swap-failed", daemon=True).start()

    def sync_monitors(self) -> None:
        """The drift and CTR verdicts and the live metrics into their gauges (a file is re-read when it changed)."""
        for path, gauges in self.monitors:
            export_latest(path, gauges)

    def _observe(self, event: str, fields: dict[str, Any]) -> None:
        if event == "predict":
            variant = fields["variant"]
            if fields["fallback"]:
                FALLBACKS.labels(variant).inc()
            CANDIDATES.observe(fields["candidates"])
            scores = SCORES.labels(variant)
            for score in fields["scores"]:
                scores.observe(score)
        elif event == "shadow":
            SHADOW_OVERLAP.observe(fields["overlap"])

    def _variant_label(self, variant: str | None) -> str:
        """A client-sent variant as a label: ``none`` when absent, ``other`` when no experiment or model knows it
        (the label set stays bounded whatever clients send)."""
        if variant is None:
            return "none"
        experiment = self.runtime.router.experiment
        if variant in experiment.variants or variant == experiment.shadow or variant in self.manager.models:
            return variant
        return "other"

    def __is_ready__(self) -> bool:
        return self.manager.ready

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self._stop.set()
        if self.bandit is not None:
            self.bandit.stop()
            self.bandit.store.close()
        self.runtime.close()  # waits for the shadow jobs, which may still emit events
        self.assignments.close()  # writes what is queued
        if self.traffic is not None:
            self.traffic.close()
        self.feedback_store.close()

    # -- model endpoints ---------------------------------------------------------------------------------------
    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, **fields: Any) -> PredictResponse:
        """Top-n items for a user (an unknown user is ranked from the profile: ``fallback: true``)."""
        request = PredictRequest.model_construct(**fields)  # BentoML validated the body against PredictRequest
        t0 = time.perf_counter()
        try:
            prefetched = None
            if self.runtime.is_cached(request):  # a lookup of a precomputed answer: microseconds, on the loop
                CACHE_HIT.inc()
                response = self.runtime.predict(request)
            elif (prefetched := await self.runtime.prefetch(request)) is not None and prefetched.answer is not None:
                CACHE_HIT.inc()  # read from the online store without blocking the loop
                response = self.runtime.predict(request, prefetched)
            else:  # ranking (numpy, LightGBM: milliseconds) on a worker thread, so the loop keeps serving
                CACHE_MISS.inc()
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(SETTINGS.threads)
                response = await anyio.to_thread.run_sync(self.runtime.predict, request, prefetched,
                                                          limiter=self._limiter)
        except NotReadyError as exc:
            PREDICTIONS.labels("none", "503").inc()
            return _error(503, str(exc))  # type: ignore[return-value]
        except Exception:
            PREDICTIONS.labels("none", "500").inc()
            raise
        elapsed = time.perf_counter() - t0
        PREDICT_LATENCY.observe(elapsed)
        REQUEST_LATENCY.labels("predict", version_label(response.model.version)).observe(elapsed)
        PREDICTIONS.labels(response.model.variant, "200").inc()
        return response

    # Synchronous on purpose: the commit fsyncs the SQLite WAL (blocking I/O for milliseconds), and BentoML runs a
    # sync API on its worker threads (RECSYS_THREADS of them), which is exactly the offloading predict does by
    # hand; an async def would only add a second thread hop per event.
    @bentoml.api(route="/feedback", input_spec=FeedbackEvent)
    def feedback(self, ctx: bentoml.Context, **fields: Any) -> FeedbackAck:
        """Record a click/watch/dismiss once per ``event_id``; answers 202 after the event is durably stored."""
        t0 = time.perf_counter()
        event = FeedbackEvent.model_construct(**fields)  # validated by BentoML
        stored = self.feedback_store.record(event)
        variant = self._variant_label(event.variant)
        FEEDBACK.labels(event.event, variant, str(stored).lower()).inc()
        # the version serving the event's variant when it is loaded, else the champion's
        models = self.manager.models
        model = models.get(event.variant or CHAMPION) or models.get(CHAMPION)
        version = version_label(model.version) if model is not None else "none"
        REQUEST_LATENCY.labels("feedback", version).observe(time.perf_counter() - t0)
        ctx.response.status_code = 202
        return FeedbackAck(event_id=event.event_id, stored=stored)

    # -- read-only and admin routes (GET and bodyless POST: a mounted FastAPI app) -----------------------------
    def model_state(self) -> dict[str, Any]:
        shadow = self.runtime.shadow
        stats = self.manager.stats
        return {
            "name": self.manager.name,
            "ready": self.manager.ready,
            "registry": self.manager.tracking_uri is not None,
            "models": {alias: model.info() for alias, model in self.manager.models.items()},
            "experiment": self.runtime.router.experiment.model_dump(mode="json"),
            "shares": self.runtime.router.shares,
            "swaps": {"succeeded": stats.succeeded, "failed": stats.failed, "last_error": stats.last_error,
                      "compiled": stats.compiled, "compile_failed": stats.compile_failed,
                      "registry_errors": stats.registry_errors},
            "shadow": {"scored": shadow.scored, "dropped": shadow.dropped, "mean_overlap": shadow.mean_overlap},
        }

    def authorize(self, authorization: str | None) -> Response | None:
        """None when the bearer token matches; else the 401/503 response to send."""
        if self.admin_token is None:
            return _error(503, "admin disabled: RECSYS_ADMIN_TOKEN is not set")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.admin_token.encode()):
            return _error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        return None

    @admin_app.get("/model")
    def get_model(self) -> dict[str, Any]:
        """The loaded models per alias, the experiment, swap and shadow stats."""
        self.sync_metrics()
        return self.model_state()

    @admin_app.post("/admin/reload", response_model=None)
    def admin_reload(self, authorization: str | None = Header(None, include_in_schema=False)
                     ) -> dict[str, Any] | Response:
        """Refresh every alias from the registry now (bearer token)."""
        denied = self.authorize(authorization)
        if denied is not None:
            return denied
        t0 = time.perf_counter()
        try:
            self.manager.request_reload()  # the other workers (their watchers see the marker within 0.25 s)
            outcome = self.manager.refresh()  # this one, now
        except Exception as exc:
            logger.exception("admin reload failed")
            return _error(502, f"refresh failed: {exc}")
        finally:
            self.sync_metrics()
        return {"outcome": outcome, "registry": self.manager.tracking_uri is not None,
                "seconds": round(time.perf_counter() - t0, 3), **self.model_state()}


# -- the HTTP contract: every status of every route (recsys.serving.http builds /docs.json from it) ----------------
TEXT = {"type": "string"}
ANY_OBJECT = {"type": "object"}
NOT_READY = Answer("no champion loaded yet")
HEALTH = Operation({200: Answer("alive", TEXT, "text/plain"), 413: TOO_LARGE, 504: TIMED_OUT})
CONTRACT = {
    ("post", "/predict"): Operation(
        {200: Answer("the top-n items", PredictResponse), 400: INVALID, 413: TOO_LARGE, 415: UNSUPPORTED,
         429: OVERLOADED, 503: NOT_READY, 504: TIMED_OUT}, request=PredictRequest),
    ("post", "/feedback"): Operation(
        {202: Answer("stored (stored: false for an event_id already stored)", FeedbackAck), 400: INVALID,
         413: TOO_LARGE, 415: UNSUPPORTED, 429: OVERLOADED, 504: TIMED_OUT}, request=FeedbackEvent),
    ("get", "/model"): Operation(
        {200: Answer("loaded models per alias, experiment, swap and shadow stats", ANY_OBJECT), 413: TOO_LARGE,
         429: OVERLOADED, 504: TIMED_OUT}),
    ("post", "/admin/reload"): Operation(
        {200: Answer("refresh outcome and the model state", ANY_OBJECT),
         401: Answer("missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}),
         413: TOO_LARGE, 429: OVERLOADED, 502: Answer("the registry refresh failed"),
         503: Answer("admin disabled: RECSYS_ADMIN_TOKEN is not set"), 504: TIMED_OUT}, bearer=True),
    ("get", "/livez"): HEALTH,
    ("get", "/healthz"): HEALTH,
    ("get", "/readyz"): Operation({200: Answer("ready: a champion is loaded", TEXT, "text/plain"),
                                   413: TOO_LARGE, 503: NOT_READY, 504: TIMED_OUT}),
    ("get", "/metrics"): Operation({200: Answer("Prometheus text format", TEXT, "text/plain"), 413: TOO_LARGE,
                                    504: TIMED_OUT}),
}
SERVICE = cast("bentoml.Service[RecommenderService]", RecommenderService)  # what @bentoml.service made of the class
SERVICE.add_asgi_middleware(
    ContractMiddleware, max_body_bytes=SETTINGS.max_body_bytes, json_paths=("/predict", "/feedback"),
    openapi=lambda: openapi_document(SERVICE.openapi_spec.asdict(), CONTRACT))
