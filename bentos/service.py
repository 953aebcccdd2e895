"""The BentoML 1.4 service over :mod:`recsys.serving`: HTTP routes and status codes only, no ranking logic.

Configuration (environment variables, read when the service starts; the two traffic limits at import):

``RECSYS_MODEL_NAME``
    registered model name (default ``content-ranker``).
``MLFLOW_TRACKING_URI``
    MLflow tracking/registry URI; unset means no registry (only ``RECSYS_BUNDLE_DIR`` serves).
``RECSYS_BUNDLE_DIR``
    a model bundle directory loaded as the champion at start; default: ``bundle/`` beside this file when it
    exists (what ``recsys bake`` writes and the Bento ships). It keeps serving when the registry is unreachable
    or unset, until the registry's champion replaces it.
``RECSYS_WATCH_INTERVAL``
    seconds between registry alias checks (default 10; 0 disables the watcher).
``RECSYS_ADMIN_TOKEN``
    bearer token of the admin endpoints; unset means they answer 503 ``admin disabled``.
``RECSYS_FEEDBACK_URL``
    SQLAlchemy URL of the feedback store (default ``sqlite:///<RECSYS_VAR_DIR>/serving/feedback.db``).
``RECSYS_EXPERIMENT`` / ``RECSYS_EXPERIMENT_FILE``
    the A/B experiment (see :mod:`recsys.serving.router`); default 100 % champion.
``RECSYS_MAX_CONCURRENCY`` / ``RECSYS_TIMEOUT`` / ``RECSYS_THREADS``
    in-flight requests per service before 429 (default 128, split by BentoML across the workers: 32 shed
    closed-loop load as a storm of instant 429s, see benchmarks/serving.py), request timeout in seconds
    (default 10; then 504), and the threads running the synchronous endpoints per worker (default 4).

HTTP contract:

- ``POST /predict`` (bentoml.api): :class:`PredictRequest` -> :class:`PredictResponse`; invalid body 400 (BentoML
  maps a pydantic ValidationError to 400 with the errors), no champion loaded 503.
- ``POST /feedback`` (bentoml.api): :class:`FeedbackEvent` -> 202 ``{"event_id", "stored"}`` after the commit;
  ``stored`` is false for a duplicate ``event_id``.
- ``GET /model``, ``POST /admin/reload`` (a FastAPI app mounted on the service): loaded models, experiment, swap
  and shadow stats; registry refresh now (401 without the bearer token, 503 when no token is configured).
- ``/livez``, ``/readyz`` (503 until a champion is loaded, via ``__is_ready__``), ``/metrics`` and ``/docs.json``
  are BentoML's own; ``/metrics`` also carries the ``recsys_*`` metrics defined here.
"""

import hmac
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import bentoml
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel

from recsys.serving.feedback import FeedbackEvent, FeedbackStore, default_feedback_url
from recsys.serving.models import ModelManager
from recsys.serving.router import Experiment, Router
from recsys.serving.runtime import NotReadyError, ServingRuntime
from recsys.serving.schemas import PredictRequest, PredictResponse

logger = logging.getLogger("recsys.bento")

MAX_CONCURRENCY = int(os.environ.get("RECSYS_MAX_CONCURRENCY", "128"))
TIMEOUT_S = float(os.environ.get("RECSYS_TIMEOUT", "10"))
THREADS = int(os.environ.get("RECSYS_THREADS", "4"))

# -- metrics (prometheus_client; aggregated across workers through PROMETHEUS_MULTIPROC_DIR) ----------------------
PREDICTIONS = Counter("recsys_predict_requests", "predict requests by variant (alias served) and status",
                      ["variant", "status"])
FALLBACKS = Counter("recsys_predict_fallback", "predictions for unknown users (cold-start policy)", ["variant"])
PREDICT_LATENCY = Histogram("recsys_predict_latency_seconds", "time inside the runtime's predict",
                            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0))
SHADOW_OVERLAP = Histogram("recsys_shadow_overlap", "overlap@10 of the shadow ranking with the served one",
                           buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
SWAPS = Counter("recsys_model_swaps", "model loads by outcome", ["outcome"])
REGISTRY_ERRORS = Counter("recsys_registry_errors", "registry look-ups that failed (the current model kept serving)")
FEEDBACK = Counter("recsys_feedback_events", "feedback events received", ["event", "stored"])
MODEL_INFO = Gauge("recsys_model_info", "1 for the model version serving each alias",
                   ["alias", "name", "version", "run_id"], multiprocess_mode="livemax")
MODEL_AGE = Gauge("recsys_model_age_seconds", "seconds since the alias's model was loaded", ["alias"],
                  multiprocess_mode="livemax")


class FeedbackAck(BaseModel):
    event_id: str
    stored: bool


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class _MetricsSync:
    """Mirrors the manager's state into the gauges and swap counters (on change and every few seconds)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self._seen = (0, 0, 0)
        self._labels: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            stats = self.manager.stats
            ok, failed, reg = stats.succeeded, stats.failed, stats.registry_errors
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
                        MODEL_AGE.labels(alias).set(0)
            for alias, model in models.items():
                labels = self._model_labels(model)
                MODEL_INFO.labels(*labels).set(1)
                self._labels[alias] = labels
                MODEL_AGE.labels(alias).set(round(now - model.loaded_at, 1))

    @staticmethod
    def _model_labels(model: Any) -> tuple[str, ...]:
        version = "" if model.version is None else str(model.version)
        return (model.alias, model.name, version, str(model.run_id or ""))


admin_app = FastAPI(title="recsys admin", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(
    name="recommender",
    traffic={"timeout": TIMEOUT_S, "max_concurrency": MAX_CONCURRENCY},
    threads=THREADS,
    metrics={"enabled": True},
)
@bentoml.asgi_app(admin_app, path="/")
class RecommenderService:
    """MovieLens recommendations with hot-swapped registry models, A/B routing, shadow scoring and feedback."""

    def __init__(self) -> None:
        env = os.environ
        name = env.get("RECSYS_MODEL_NAME", "content-ranker")
        tracking_uri = env.get("MLFLOW_TRACKING_URI") or None
        self.admin_token = env.get("RECSYS_ADMIN_TOKEN") or None
        self.manager = ModelManager(name, tracking_uri)
        self.sync_metrics = _MetricsSync(self.manager)
        self.runtime = ServingRuntime(self.manager, Router(Experiment.from_env()), observers=[self._observe])
        self.feedback_store = FeedbackStore(env.get("RECSYS_FEEDBACK_URL") or default_feedback_url())

        bundle = env.get("RECSYS_BUNDLE_DIR")
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
        interval = float(env.get("RECSYS_WATCH_INTERVAL", "10"))
        if tracking_uri is not None and interval > 0:
            self.manager.start_watcher(interval)
        self.sync_metrics()
        self._stop = threading.Event()
        self._metrics_thread = threading.Thread(target=self._metrics_loop, name="metrics-sync", daemon=True)
        self._metrics_thread.start()

    def _metrics_loop(self) -> None:
        while not self._stop.wait(5.0):
            try:
                self.sync_metrics()
            except Exception:
                logger.warning("metrics sync failed", exc_info=True)

    def _observe(self, event: str, fields: dict[str, Any]) -> None:
        if event == "predict" and fields.get("fallback"):
            FALLBACKS.labels(fields["variant"]).inc()
        elif event == "shadow":
            SHADOW_OVERLAP.observe(fields["overlap"])

    def __is_ready__(self) -> bool:
        return self.manager.ready

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self._stop.set()
        self.runtime.close()
        self.feedback_store.close()

    # -- model endpoints ---------------------------------------------------------------------------------------
    @bentoml.api(route="/predict", input_spec=PredictRequest)
    def predict(self, **fields: Any) -> PredictResponse:
        """Top-n items for a user (an unknown user is ranked from the profile: ``fallback: true``)."""
        request = PredictRequest.model_construct(**fields)  # BentoML validated the body against PredictRequest
        t0 = time.perf_counter()
        try:
            response = self.runtime.predict(request)
        except NotReadyError as exc:
            PREDICTIONS.labels("none", "503").inc()
            return _error(503, str(exc))  # type: ignore[return-value]
        except Exception:
            PREDICTIONS.labels("none", "500").inc()
            raise
        PREDICT_LATENCY.observe(time.perf_counter() - t0)
        PREDICTIONS.labels(response.model.variant, "200").inc()
        return response

    @bentoml.api(route="/feedback", input_spec=FeedbackEvent)
    def feedback(self, ctx: bentoml.Context, **fields: Any) -> FeedbackAck:
        """Record a click/watch/dismiss once per ``event_id``; answers 202 after the event is durably stored."""
        event = FeedbackEvent.model_construct(**fields)  # validated by BentoML
        stored = self.feedback_store.record(event)
        FEEDBACK.labels(event.event, str(stored).lower()).inc()
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
            "swaps": {"succeeded": stats.succeeded, "failed": stats.failed, "last_error": stats.last_error,
                      "registry_errors": stats.registry_errors},
            "shadow": {"scored": shadow.scored, "dropped": shadow.dropped, "mean_overlap": shadow.mean_overlap},
        }

    def authorize(self, authorization: str | None) -> JSONResponse | None:
        """None when the bearer token matches; else the 401/503 response to send."""
        if self.admin_token is None:
            return _error(503, "admin disabled: RECSYS_ADMIN_TOKEN is not set")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.admin_token.encode()):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return None

    @admin_app.get("/model")
    def get_model(self) -> dict[str, Any]:
        """The loaded models per alias, the experiment, swap and shadow stats."""
        self.sync_metrics()
        return self.model_state()

    @admin_app.post("/admin/reload", response_model=None)
    def admin_reload(self, authorization: str | None = Header(None)) -> dict[str, Any] | JSONResponse:
        """Refresh every alias from the registry now (bearer token)."""
        denied = self.authorize(authorization)
        if denied is not None:
            return denied
        t0 = time.perf_counter()
        try:
            outcome = self.manager.refresh()
        except Exception as exc:
            logger.exception("admin reload failed")
            return _error(502, f"refresh failed: {exc}")
        finally:
            self.sync_metrics()
        return {"outcome": outcome, "registry": self.manager.tracking_uri is not None,
                "seconds": round(time.perf_counter() - t0, 3), **self.model_state()}
