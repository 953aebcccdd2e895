"""The floor of benchmarks/serving.py: a BentoML 1.4 service with our /predict's HTTP shape and no model at all.

    cd benchmarks && bentoml serve floor_service:FloorService

``POST /predict`` validates the body against the same pydantic model as ``bentos/service.py``
(:class:`recsys.serving.schemas.PredictRequest`, imported: the same validation cost, and it follows the schema
when the schema changes) and returns one pre-built :class:`~recsys.serving.schemas.PredictResponse`, serialized by
BentoML on every request exactly like the real answer. No model, no ranking, no cache, no metrics of our own: the
rps and CPU per request measured against it are BentoML's (plus uvicorn's, Starlette's, pydantic's and the access
log's) own cost on this machine, the ceiling our service can approach.

The same BentoML options as the real service, from the same function and environment
(:func:`recsys.serving.options.bento_options` of :class:`recsys.settings.ServingSettings`: traffic limits,
threads, metrics, access log); the number of workers comes from ``BENTOML_CONFIG_OPTIONS`` as for the real service
(``services.floor.workers=N``).

``RECSYS_FLOOR_RESPONSE``
    a JSON file holding a real ``/predict`` answer (benchmarks/serving.py saves one from the real service); without
    it, a synthetic 10-item answer with titles of a typical length.
``RECSYS_FLOOR_SYNC``
    ``1``: a synchronous endpoint run in the worker's thread pool (what a plain ``def`` costs), instead
    of an ``async def`` on the event loop (default).
"""

import json
import os
from pathlib import Path
from typing import Any

import bentoml

from recsys.serving.options import bento_options
from recsys.serving.schemas import PredictRequest, PredictResponse
from recsys.settings import ServingSettings, load

SYNC = os.environ.get("RECSYS_FLOOR_SYNC", "0").lower() in ("1", "true", "yes")


def synthetic_answer(n: int = 10) -> dict[str, Any]:
    """A 10-item answer shaped like a real one (ML-100K titles are ~25 characters with the year)."""
    titles = ["Star Wars (1977)", "Fargo (1996)", "Return of the Jedi (1983)", "Contact (1997)",
              "English Patient, The (1996)", "Scream (1996)", "Toy Story (1995)", "Liar Liar (1997)",
              "Air Force One (1997)", "Independence Day (ID4) (1996)"]
    return {"request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "user_id": 196,
            "items": [{"item_id": 50 + 37 * i, "score": 1.2345678901 - 0.0987654321 * i,
                       "title": titles[i % len(titles)]} for i in range(n)],
            "model": {"name": "content-ranker", "version": 1, "alias": "champion", "variant": "champion"},
            "fallback": False}


def load_answer() -> PredictResponse:
    path = os.environ.get("RECSYS_FLOOR_RESPONSE")
    payload = json.loads(Path(path).read_text()) if path else synthetic_answer()
    return PredictResponse.model_validate(payload)


ANSWER = load_answer()


# the service's own options, from the same environment
@bentoml.service(name="floor", **bento_options(load(ServingSettings)))
class FloorService:
    """A constant /predict answer behind BentoML's HTTP layer: the per-request cost of BentoML itself."""

    if SYNC:
        @bentoml.api(route="/predict", input_spec=PredictRequest)
        def predict(self, **fields: Any) -> PredictResponse:
            return ANSWER
    else:
        @bentoml.api(route="/predict", input_spec=PredictRequest)
        async def predict(self, **fields: Any) -> PredictResponse:
            return ANSWER
