"""HTTP contract of ``bentos/service.py``, in-process through BentoML's ASGI app (one app per module)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil
import pytest

from recsys.serving.feedback import FeedbackStore
from recsys.serving.schemas import MAX_EXCLUDE, MAX_ID, ErrorBody

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"
UNKNOWN_USER = MAX_ID  # far above MovieLens's ids


@pytest.fixture(scope="module")
def known_users(small_model: SimpleNamespace) -> list[int]:
    return [int(u) for u in small_model.result.recommender.profiles.index[:5]]


def _error(resp: Any, status: int | None = None) -> ErrorBody:
    """The answer's body as the one error model (and the status, when given)."""
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json", resp.headers
    body = ErrorBody.model_validate_json(resp.content)
    assert body.error.strip() and "\n" not in body.error
    return body


def _error_text(resp: Any) -> str:
    body = _error(resp)
    if resp.status_code == 400:
        assert body.detail, "a 400 lists its field errors"
    return body.model_dump_json()


# -- health ----------------------------------------------------------------------------------------------------
def test_livez_and_readyz(client: Any) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_model_lists_the_champion(client: Any) -> None:
    resp = client.get("/model")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ready"] is True
    champion = body["models"]["champion"]
    assert champion["alias"] == "champion" and champion["source"].startswith("bundle ")
    assert champion["as_of_week"] == 20
    assert body["experiment"]["variants"] == {"champion": 1.0}
    assert body["swaps"]["succeeded"] >= 1 and body["swaps"]["failed"] == 0
    assert set(body["shadow"]) == {"scored", "dropped", "mean_overlap"}


def test_the_champion_moves_to_compiled_trees(client: Any, wait_until: Callable[..., None]) -> None:
    """RECSYS_COMPILE_TREES (default on): a few seconds after the load, compiled trees score the candidates."""
    wait_until(lambda: client.get("/model").json()["models"]["champion"]["engine"] == "lleaves", interval=0.5)
    body = client.get("/model").json()
    assert body["swaps"]["compiled"] >= 1 and body["swaps"]["compile_failed"] == 0
    resp = client.post("/predict", json={"user_id": UNKNOWN_USER, "n": 5, "profile": {"age": 33}})
    assert resp.status_code == 200 and len(resp.json()["items"]) == 5


def test_openapi_lists_the_routes(client: Any) -> None:
    resp = client.get("/docs.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "/predict" in paths and "/feedback" in paths


DOCUMENTED_STATUSES = {
    ("post", "/predict"): {200, 400, 413, 415, 429, 503, 504},
    ("post", "/feedback"): {202, 400, 413, 415, 429, 504},
    ("get", "/model"): {200, 413, 429, 504},
    ("post", "/admin/reload"): {200, 401, 413, 429, 502, 503, 504},
    ("get", "/livez"): {200, 413, 504},
    ("get", "/healthz"): {200, 413, 504},
    ("get", "/readyz"): {200, 413, 503, 504},
    ("get", "/metrics"): {200, 413, 504},
}
SUCCESS_BODIES = {"/predict": "PredictResponse", "/feedback": "FeedbackAck"}


def test_openapi_documents_every_status_with_the_body_sent(client: Any) -> None:
    doc = client.get("/docs.json").json()
    assert doc["openapi"].startswith("3.1")
    documented = {(method, path): {int(status) for status in op["responses"]}
                  for path, item in doc["paths"].items() for method, op in item.items()}
    assert documented == DOCUMENTED_STATUSES
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for (method, path), statuses in DOCUMENTED_STATUSES.items():
        responses = doc["paths"][path][method]["responses"]
        for status in statuses:
            content = responses[str(status)]["content"]
            if status >= 400:
                assert content == {"application/json": {"schema": error_ref}}, (path, status)
            elif path in SUCCESS_BODIES:
                ref = {"$ref": f"#/components/schemas/{SUCCESS_BODIES[path]}"}
                assert content == {"application/json": {"schema": ref}}, path
            elif path in ("/livez", "/healthz", "/readyz", "/metrics"):
                assert list(content) == ["text/plain"], path
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorBody"]["properties"]) == {"error", "detail"}
    assert not {"InvalidArgument", "NotFound", "InternalServerError", "HTTPValidationError"} & set(schemas)


def test_openapi_declares_the_bearer_token(client: Any) -> None:
    doc = client.get("/docs.json").json()
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    reload = doc["paths"]["/admin/reload"]["post"]
    assert reload["security"] == [{"bearer": []}]
    assert "parameters" not in reload  # the Authorization header is the security scheme's, not a parameter
    assert reload["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "security" not in doc["paths"]["/model"]["get"]


def test_openapi_request_schemas_state_the_real_bounds(client: Any) -> None:
    doc = client.get("/docs.json").json()
    schemas = doc["components"]["schemas"]
    for path, model in (("/predict", "PredictRequest"), ("/feedback", "FeedbackEvent")):
        body = doc["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"] == {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}
        assert schemas[model]["additionalProperties"] is False
    context = next(s for s in schemas["PredictRequest"]["properties"]["context"]["anyOf"] if s["type"] == "object")
    assert context["maxProperties"] == 32 and context["propertyNames"] == {"maxLength": 64}
    assert {"type": "string", "maxLength": 256} in context["additionalProperties"]["anyOf"]
    assert schemas["PredictRequest"]["properties"]["exclude"]["maxItems"] == MAX_EXCLUDE
    feedback = schemas["FeedbackEvent"]["properties"]
    assert {"type": "null"} in feedback["ts"]["anyOf"] and {"type": "null"} in feedback["request_id"]["anyOf"]


# -- predict ---------------------------------------------------------------------------------------------------
def test_predict_known_user(client: Any, known_users: list[int]) -> None:
    resp = client.post("/predict", json={"user_id": known_users[0], "n": 7})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == known_users[0] and body["fallback"] is False
    assert len(body["items"]) == 7
    assert len({i["item_id"] for i in body["items"]}) == 7
    assert body["model"] == {"name": "content-ranker", "version": body["model"]["version"], "alias": "champion",
                             "variant": "champion"}
    assert body["request_id"]


def test_predict_unknown_user_with_profile_falls_back(client: Any) -> None:
    profile = {"age": 30, "gender": "F", "occupation": "engineer", "zip": "94110"}
    resp = client.post("/predict", json={"user_id": UNKNOWN_USER, "n": 5, "profile": profile})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["fallback"] is True and len(body["items"]) == 5


def test_predict_unknown_user_without_profile_falls_back(client: Any) -> None:
    resp = client.post("/predict", json={"user_id": UNKNOWN_USER - 1})
    assert resp.status_code == 200, resp.text
    assert resp.json()["fallback"] is True and len(resp.json()["items"]) == 10


def test_predict_exclude_is_honoured(client: Any, known_users: list[int]) -> None:
    first = client.post("/predict", json={"user_id": known_users[1], "n": 10}).json()
    top = [i["item_id"] for i in first["items"][:5]]
    resp = client.post("/predict", json={"user_id": known_users[1], "n": 10, "exclude": top})
    assert resp.status_code == 200, resp.text
    again = [i["item_id"] for i in resp.json()["items"]]
    assert len(again) == 10 and not set(again) & set(top)


def test_predict_n_100(client: Any, known_users: list[int]) -> None:
    resp = client.post("/predict", json={"user_id": known_users[2], "n": 100, "context": {"device": "tv"}})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["items"]) == 100


BAD_PREDICT = {
    "user_id as string": '{"user_id": "abc"}',
    "user_id as list": '{"user_id": [1]}',
    "missing user_id": '{"n": 5}',
    "empty object": "{}",
    "n = 0": '{"user_id": 1, "n": 0}',
    "n = 101": '{"user_id": 1, "n": 101}',
    "n as NaN": '{"user_id": 1, "n": NaN}',
    "user_id as NaN": '{"user_id": NaN}',
    "context value NaN": '{"user_id": 1, "context": {"x": NaN}}',
    "context value Infinity": '{"user_id": 1, "context": {"x": Infinity}}',
    "negative user_id": '{"user_id": -1}',
    "user_id 10^12": '{"user_id": 1000000000000}',
    "user_id float": '{"user_id": 1.5}',
    "unknown field": '{"user_id": 1, "foo": 1}',
    "unknown profile field": '{"user_id": 1, "profile": {"height": 180}}',
    "age out of range": '{"user_id": 1, "profile": {"age": 500}}',
    "bad gender": '{"user_id": 1, "profile": {"gender": "X"}}',
    "long occupation": json.dumps({"user_id": 1, "profile": {"occupation": "x" * 10_000}}),
    "long context value": json.dumps({"user_id": 1, "context": {"k": "v" * 10_000}}),
    "too many context keys": json.dumps({"user_id": 1, "context": {f"k{i}": i for i in range(100)}}),
    "oversize exclude": json.dumps({"user_id": 1, "exclude": list(range(MAX_EXCLUDE + 1))}),
    "negative excluded id": '{"user_id": 1, "exclude": [-5]}',
    "exclude not a list": '{"user_id": 1, "exclude": 5}',
    "not json": "user_id=1",
    "truncated json": '{"user_id": 1',
    "json array": "[1, 2]",
    "json null": "null",
    "empty body": "",
    "user_id as numeric string": '{"user_id": "5"}',
    "user_id as boolean": '{"user_id": true}',
    "n as numeric string": '{"user_id": 1, "n": "5"}',
    "n as fraction": '{"user_id": 1, "n": 5.5}',
    "age as string": '{"user_id": 1, "profile": {"age": "30"}}',
    "zip as number": '{"user_id": 1, "profile": {"zip": 94110}}',
    "excluded id as string": '{"user_id": 1, "exclude": ["5"]}',
    "context key too long": json.dumps({"user_id": 1, "context": {"k" * 65: 1}}),
    "context 33 keys": json.dumps({"user_id": 1, "context": {f"k{i}": i for i in range(33)}}),
    "context nested value": '{"user_id": 1, "context": {"x": {"y": 1}}}',
}


@pytest.mark.parametrize("body", list(BAD_PREDICT.values()), ids=list(BAD_PREDICT))
def test_predict_bad_input_is_4xx_with_a_message(client: Any, body: str) -> None:
    resp = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert len(_error_text(resp)) > 10


BAD_FEEDBACK = {
    "missing event_id": {"user_id": 1, "item_id": 2, "event": "click"},
    "bad event": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "like"},
    "bad event_id chars": {"event_id": "e 1/..", "user_id": 1, "item_id": 2, "event": "click"},
    "long event_id": {"event_id": "e" * 500, "user_id": 1, "item_id": 2, "event": "click"},
    "negative item": {"event_id": "e1", "user_id": 1, "item_id": -2, "event": "click"},
    "boolean user": {"event_id": "e1", "user_id": True, "item_id": 2, "event": "click"},
    "huge user": {"event_id": "e1", "user_id": 10**12, "item_id": 2, "event": "click"},
    "bad ts": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "click", "ts": "yesterday"},
    "unknown field": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "click", "rating": 5},
    "user as numeric string": {"event_id": "e1", "user_id": "1", "item_id": 2, "event": "click"},
    "ts as unix time": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "click", "ts": 1700000000},
    "ts as numeric string": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "click", "ts": "0"},
    "ts a date only": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "click", "ts": "2024-01-01"},
    # the UTC time of the first day's instants may be in year 0 (it was a 500: OverflowError)
    "ts on 0001-01-01": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "click",
                         "ts": "0001-01-01T00:00:00+05:00"},
    "ts on 9999-12-31": {"event_id": "e1", "user_id": 1, "item_id": 2, "event": "click",
                         "ts": "9999-12-31T23:00:00-05:00"},
    # PostgreSQL cannot store a NUL in a text column: refused here, not a 500 at the database
    "NUL in request_id": {"event_id": "e1", "request_id": "r\x001", "user_id": 1, "item_id": 2, "event": "click"},
    "NUL in variant": {"event_id": "e1", "variant": "cham\x00pion", "user_id": 1, "item_id": 2, "event": "click"},
}


@pytest.mark.parametrize("body", list(BAD_FEEDBACK.values()), ids=list(BAD_FEEDBACK))
def test_feedback_bad_input_is_4xx(client: Any, body: dict[str, Any]) -> None:
    resp = client.post("/feedback", json=body)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert len(_error_text(resp)) > 10


GOOD_FEEDBACK = {"event_id": "ok-1", "user_id": 1, "item_id": 2, "event": "click"}


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.parametrize("content_type", [
    "multipart/form-data",  # no boundary: BentoML parsed it as a form and failed (500)
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/xml",
    "application/vnd.bentoml+pickle",
    "application/json; charset=latin-1",
    "application/jsonx",
    "not a media type",
    "",
])
def test_a_body_that_is_not_json_is_415(client: Any, route: str, content_type: str) -> None:
    resp = client.post(route, content=json.dumps({"user_id": 1, **GOOD_FEEDBACK}),
                       headers={"Content-Type": content_type})
    assert _error(resp, 415).detail is None


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          'application/json;charset="UTF-8"', "Application/JSON", None])
def test_json_with_or_without_charset_is_accepted(client: Any, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}  # none at all: read as JSON
    predict = client.post("/predict", content=b'{"user_id": 1, "n": 2}', headers=headers)
    assert predict.status_code == 200, predict.text
    event = {**GOOD_FEEDBACK, "event_id": f"ev-{uuid.uuid4().hex}"}
    assert client.post("/feedback", content=json.dumps(event), headers=headers).status_code == 202


def test_integers_are_json_integers(client: Any, known_users: list[int]) -> None:
    """JSON Schema's integer is a number without a fraction: 5.0 is accepted, "5" and true are not."""
    resp = client.post("/predict", content=f'{{"user_id": {known_users[0]}.0, "n": 3.0}}',
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["user_id"] == known_users[0] and len(resp.json()["items"]) == 3


def test_invalid_json_is_400_with_the_parse_error(client: Any) -> None:
    for route in ("/predict", "/feedback"):
        resp = client.post(route, content=b'{"user_id": 1,', headers={"Content-Type": "application/json"})
        detail = _error(resp, 400).detail
        assert detail is not None and detail[0].type == "json_invalid" and detail[0].loc == []


def test_field_errors_name_the_field(client: Any) -> None:
    resp = client.post("/predict", json={"user_id": 1, "exclude": [3, -5]})
    detail = _error(resp, 400).detail
    assert detail is not None and [(d.loc, d.type) for d in detail] == [(["exclude", 1], "greater_than_equal")]


@pytest.mark.parametrize("route", ["/predict", "/feedback", "/model", "/admin/reload"])
def test_a_body_over_the_limit_is_413(client: Any, service_module: Any, route: str) -> None:
    limit = service_module.SETTINGS.max_body_bytes
    body = b'{"user_id": 1, "pad": "' + b"x" * limit + b'"}'
    resp = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert _error(resp, 413).detail is None and resp.headers["connection"] == "close"
    at_limit = b'{"user_id": 1, "n": 2}'.ljust(limit)  # exactly the limit (JSON allows trailing blanks): served
    assert client.post("/predict", content=at_limit, headers={"Content-Type": "application/json"}).status_code == 200


def test_a_chunked_body_over_the_limit_is_413(client: Any, service_module: Any) -> None:
    """No Content-Length (``Transfer-Encoding: chunked``): counted as it is read. The test client hands the body
    over in one piece; that reading stops at the limit is tested over a socket in test_contract.py."""
    limit = service_module.SETTINGS.max_body_bytes

    def chunks() -> Any:
        for _ in range(2 * limit // 65536):
            yield b" " * 65536

    resp = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert _error(resp, 413).detail is None

    def small() -> Any:
        yield b'{"user_id": 1,'
        yield b' "n": 4}'

    ok = client.post("/predict", content=small(), headers={"Content-Type": "application/json"})
    assert ok.status_code == 200 and len(ok.json()["items"]) == 4


@pytest.mark.parametrize(("method", "path", "status", "allow"), [
    ("GET", "/no-such-route", 404, None),
    ("POST", "/no-such-route", 404, None),
    ("GET", "/predict", 405, "POST"),  # a BentoML route (Starlette's plain-text 405)
    ("PUT", "/feedback", 405, "POST"),
    ("DELETE", "/model", 405, "GET"),  # a route of the mounted FastAPI app ({"detail": ...})
    ("GET", "/admin/reload", 405, "POST"),
])
def test_unknown_routes_and_methods_answer_in_the_error_shape(client: Any, method: str, path: str, status: int,
                                                             allow: str | None) -> None:
    resp = client.request(method, path)
    assert _error(resp, status).detail is None
    if allow is not None:
        assert resp.headers["allow"] == allow


# -- feedback --------------------------------------------------------------------------------------------------
def test_feedback_is_202_and_idempotent(client: Any, known_users: list[int]) -> None:
    event = {"event_id": f"ev-{uuid.uuid4().hex}", "request_id": "r1", "user_id": known_users[0], "item_id": 50,
             "event": "click", "variant": "champion"}
    first = client.post("/feedback", json=event)
    assert first.status_code == 202, first.text
    assert first.json() == {"event_id": event["event_id"], "stored": True}
    again = client.post("/feedback", json=event)
    assert again.status_code == 202, again.text
    assert again.json() == {"event_id": event["event_id"], "stored": False}
    other = client.post("/feedback", json={**event, "event_id": f"ev-{uuid.uuid4().hex}", "event": "watch",
                                           "ts": "2024-01-01T10:00:00+02:00"})
    assert other.status_code == 202 and other.json()["stored"] is True


def test_feedback_is_durable(client: Any, service_env: dict[str, str]) -> None:
    from recsys.serving.feedback import FeedbackStore

    event_id = f"ev-{uuid.uuid4().hex}"
    resp = client.post("/feedback", json={"event_id": event_id, "user_id": 1, "item_id": 2, "event": "dismiss"})
    assert resp.status_code == 202
    store = FeedbackStore(service_env["RECSYS_FEEDBACK_URL"])  # a second connection sees the committed row
    try:
        stored = store.get(event_id)
        assert stored is not None and stored.event == "dismiss"
    finally:
        store.close()


# -- admin -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN},
                                     {"Authorization": f"Basic {ADMIN_TOKEN}"}],
                         ids=["none", "wrong token", "no scheme", "basic"])
def test_admin_reload_needs_the_token(client: Any, headers: dict[str, str]) -> None:
    resp = client.post("/admin/reload", headers=headers)
    assert "token" in _error(resp, 401).error
    assert resp.headers["www-authenticate"] == "Bearer"


def test_admin_reload_with_the_token(client: Any) -> None:
    resp = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["outcome"] == {} and body["registry"] is False  # no MLflow: nothing to refresh
    assert "champion" in body["models"]


def test_admin_disabled_without_a_configured_token(client: Any, service_module: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from _bentoml_sdk.service import get_current_service

    instance = get_current_service()
    monkeypatch.setattr(instance, "admin_token", None)
    resp = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert "admin disabled" in _error(resp, 503).error


def test_admin_reload_failure_is_502(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refresh() -> None:
        raise RuntimeError("registry down\nsecond line")

    monkeypatch.setattr(_service().manager, "refresh", refresh)
    resp = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert _error(resp, 502).error == "refresh failed: registry down second line"


# -- no model --------------------------------------------------------------------------------------------------
def test_no_champion_is_503(client: Any, monkeypatch: pytest.MonkeyPatch, known_users: list[int]) -> None:
    from _bentoml_sdk.service import get_current_service

    manager = get_current_service().manager
    monkeypatch.setattr(manager, "_models", {})
    _error(client.get("/readyz"), 503)  # BentoML's plain-text 503, reshaped
    resp = client.post("/predict", json={"user_id": known_users[0]})
    assert "no model" in _error(resp, 503).error
    assert client.get("/livez").status_code == 200


# -- metrics ---------------------------------------------------------------------------------------------------
def test_metrics_exposes_our_metrics(client: Any, known_users: list[int]) -> None:
    client.post("/predict", json={"user_id": known_users[0]})
    client.post("/predict", json={"user_id": UNKNOWN_USER})
    client.get("/model")  # syncs the model gauges
    resp = client.get("/metrics")
    assert resp.status_code == 200
    text = resp.text
    for name in ("recsys_predict_requests_total", "recsys_predict_fallback_total", "recsys_model_swaps_total",
                 "recsys_model_info", "recsys_model_age_seconds", "recsys_predict_latency_seconds_bucket"):
        assert name in text, name
    assert 'variant="champion"' in text and 'alias="champion"' in text
    assert 'outcome="succeeded"' in text
    samples = _samples(client)
    hits = samples[("recsys_predict_cache_total", frozenset({("result", "hit")}))]
    misses = samples[("recsys_predict_cache_total", frozenset({("result", "miss")}))]
    assert hits + misses >= 2 and hits >= 1  # a known user's default request is a precomputed answer
    assert samples[("recsys_model_compiled", frozenset({("alias", "champion")}))] in (0.0, 1.0)
    assert not any(name == "recsys_registry_up" for name, _ in samples)  # no registry configured: absent


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(client: Any) -> Samples:
    """Every sample of ``GET /metrics`` keyed by (sample name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = client.get("/metrics")
    assert resp.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def _value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def _service() -> Any:
    from _bentoml_sdk.service import get_current_service

    return get_current_service()


def test_metrics_carry_the_latest_drift_ctr_and_live_results(client: Any, service_env: dict[str, str]) -> None:
    var = Path(service_env["RECSYS_VAR_DIR"]) / "monitoring"
    for name in ("drift", "ctr", "live"):
        (var / name).mkdir(parents=True, exist_ok=True)
    (var / "drift" / "latest.json").write_text(json.dumps(
        {"share": 0.25, "drift_detected": True, "checked_at": "2026-12-01T10:00:00+00:00", "rows": 900,
         "columns": [{"column": "item_age", "role": "feature", "score": 2.5, "drifted": True},
                     {"column": "genre_match", "role": "feature", "score": 0.2, "drifted": False}]}))
    (var / "live" / "latest.json").write_text(json.dumps(
        {"window": "1h", "coverage": 0.3, "checked_at": "2026-12-01T10:00:00+00:00", "srm_p_value": 0.4,
         "shares": {"champion": 0.6, "challenger": 0.4}, "last_retrain_at": "2026-11-30T00:00:00+00:00",
         "variants": [{"variant": "challenger", "version": 4, "impressions": 80, "ctr": 0.1, "conversion": None}]}))
    (var / "ctr" / "latest.json").write_text(json.dumps(
        {"end": "1998-04-20T00:00:00+00:00", "performance_degraded": True, "versions": [
            {"variant": "champion", "version": 3, "ctr": 0.05, "baseline_ctr": 0.1, "relative_drop": 0.5}]}))
    _service().sync_monitors()
    samples = _samples(client)
    assert _value(samples, "recsys_drift_share") == 0.25 and _value(samples, "recsys_drift_detected") == 1
    assert _value(samples, "recsys_drift_window_rows") == 900
    assert _value(samples, "recsys_ctr", variant="champion", version="3") == 0.05
    assert _value(samples, "recsys_ctr_relative_drop", variant="champion", version="3") == 0.5
    assert _value(samples, "recsys_ctr_degraded") == 1
    assert _value(samples, "recsys_drift_column_score", column="item_age", role="feature") == 2.5
    assert _value(samples, "recsys_drift_column_drifted", column="genre_match", role="feature") == 0
    assert _value(samples, "recsys_catalog_coverage", window="1h") == 0.3
    assert _value(samples, "recsys_variant_ctr", window="1h", variant="challenger", version="4") == 0.1
    assert ("recsys_variant_conversion", frozenset({("window", "1h"), ("variant", "challenger"),
                                                    ("version", "4")})) not in samples  # no rate: no sample
    assert _value(samples, "recsys_assignment_share", window="1h", variant="champion") == 0.6
    assert _value(samples, "recsys_srm_p_value", window="1h") == 0.4
    assert _value(samples, "recsys_last_retrain_timestamp_seconds") == datetime(2026, 11, 30, tzinfo=UTC).timestamp()


def test_metrics_by_endpoint_version_variant(client: Any, known_users: list[int]) -> None:
    champion = client.get("/model").json()["models"]["champion"]  # also syncs the model gauges
    version = "none" if champion["version"] is None else str(champion["version"])
    before = _samples(client)
    bodies = [{"user_id": known_users[0], "n": 5},  # cached
              {"user_id": known_users[1], "n": 6, "exclude": [1]},  # ranked on a worker thread
              {"user_id": UNKNOWN_USER - 2, "n": 7}]  # cold start
    for body in bodies:
        assert client.post("/predict", json=body).status_code == 200
    events = [{"variant": "champion", "event": "click"}, {"event": "click"},
              {"variant": "zz-unknown", "event": "watch"}]
    for extra in events:
        resp = client.post("/feedback", json={"event_id": f"ev-{uuid.uuid4().hex}", "user_id": known_users[0],
                                              "item_id": 50, **extra})
        assert resp.status_code == 202, resp.text
    after = _samples(client)

    def grew(metric: str, /, **labels: str) -> float:
        return _value(after, metric, **labels) - _value(before, metric, **labels)

    latency = "recsys_request_latency_seconds_count"
    assert grew(latency, endpoint="predict", version=version) == 3
    assert grew(latency, endpoint="feedback", version=version) == 3
    assert ("recsys_request_latency_seconds_bucket",  # the fine low-end bucket is exported
            frozenset({"endpoint": "predict", "version": version, "le": "0.0005"}.items())) in after
    assert grew("recsys_predict_candidates_count") == 3
    assert grew("recsys_predict_candidates_sum") > 0
    assert grew("recsys_predict_score_count", variant="champion") == 5 + 6 + 7
    assert grew("recsys_predict_score_bucket", variant="champion", le="+Inf") == 5 + 6 + 7
    assert grew("recsys_predict_requests_total", variant="champion", status="200") == 3
    assert grew("recsys_predict_fallback_total", variant="champion") == 1
    feedback = "recsys_feedback_events_total"
    assert grew(feedback, event="click", variant="champion", stored="true") == 1
    assert grew(feedback, event="click", variant="none", stored="true") == 1
    assert grew(feedback, event="watch", variant="other", stored="true") == 1  # unknown variants stay bounded
    info = {dict(labels)["data_hash"]: value for (name, labels), value in after.items()
            if name == "recsys_model_info" and dict(labels)["alias"] == "champion" and value == 1}
    assert champion["data_hash"] and list(info) == [champion["data_hash"]]
    assert _value(after, "recsys_model_info", alias="champion", name="content-ranker", version=version,
                  run_id=champion["run_id"] or "", data_hash=champion["data_hash"]) == 1
    for log in ("traffic", "assignments"):
        assert ("recsys_log_dropped_total", frozenset({"log": log}.items())) in after, log


def test_predict_runs_cached_answers_on_the_loop_and_ranks_on_a_thread(client: Any, known_users: list[int],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _service().runtime
    calls: list[tuple[bool, bool]] = []
    predict = runtime.predict

    def spy(request: Any, prefetched: Any = None) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        calls.append((runtime.is_cached(request), on_loop))
        return predict(request, prefetched)

    monkeypatch.setattr(runtime, "predict", spy)
    assert client.post("/predict", json={"user_id": known_users[0], "n": 3}).status_code == 200
    assert client.post("/predict", json={"user_id": known_users[0], "n": 3, "exclude": [1]}).status_code == 200
    assert calls == [(True, True), (False, False)]


def test_assignment_log_has_one_line_per_predict(client: Any, known_users: list[int],
                                                 service_env: dict[str, str]) -> None:
    answers = [client.post("/predict", json={"user_id": user, "n": 3}).json() for user in known_users]
    answers.append(client.post("/predict", json={"user_id": UNKNOWN_USER - 3}).json())
    assert _service().assignments.flush()
    folder = Path(service_env["RECSYS_VAR_DIR"]) / "serving" / "assignments"
    lines = [json.loads(line) for path in sorted(folder.glob("assignments-*.jsonl"))
             for line in path.read_text().splitlines()]
    counts = Counter(line["request_id"] for line in lines)
    assert all(n == 1 for n in counts.values())  # one line per request id, every request so far
    by_id = {line["request_id"]: line for line in lines}
    for answer in answers:
        line = by_id[answer["request_id"]]
        assert line["user_id"] == answer["user_id"] and line["fallback"] == answer["fallback"]
        assert line["variant"] == answer["model"]["variant"] and line["alias"] == answer["model"]["alias"]
        assert line["version"] == answer["model"]["version"] and line["ts"].endswith("+00:00")
        assert line["items"] == [item["item_id"] for item in answer["items"]]  # the impression, in rank order
    assert _service().assignments.dropped == 0


def test_a_request_time_is_the_logged_time(client: Any, known_users: list[int], service_env: dict[str, str]) -> None:
    """A replay sends its simulated time; the assignment log (and its day file) is on that clock."""
    answer = client.post("/predict", json={"user_id": known_users[0], "n": 2, "ts": "1998-04-01T10:00:00+02:00",
                                           "context": {"hour": 8, "weekday": 2}}).json()
    assert _service().assignments.flush()
    day = Path(service_env["RECSYS_VAR_DIR"]) / "serving" / "assignments" / "assignments-19980401.jsonl"
    (line,) = [json.loads(raw) for raw in day.read_text().splitlines()
               if json.loads(raw)["request_id"] == answer["request_id"]]
    assert line["ts"] == "1998-04-01T08:00:00+00:00"
    bad = client.post("/predict", json={"user_id": 1, "ts": "1700000000"})
    assert bad.status_code == 400 and _error(bad).detail[0].loc[-1] == "ts"


def test_traffic_log_writes_feature_rows(client: Any, known_users: list[int], service_env: dict[str, str],
                                         small_model: SimpleNamespace) -> None:
    known = client.post("/predict", json={"user_id": known_users[3], "n": 4}).json()
    cold = client.post("/predict", json={"user_id": UNKNOWN_USER - 4, "n": 3,
                                         "profile": {"age": 25, "gender": "M", "occupation": "student"}}).json()
    traffic = _service().traffic
    assert traffic is not None and traffic.rate == 1.0 and traffic.flush()
    folder = Path(service_env["RECSYS_VAR_DIR"]) / "serving" / "traffic"
    rows = [json.loads(line) for path in folder.glob("traffic-*.jsonl") for line in path.read_text().splitlines()]
    names = set(small_model.result.recommender.feature_names)
    for answer in (known, cold):
        mine = [r for r in rows if r["request_id"] == answer["request_id"]]
        assert [r["rank"] for r in mine] == list(range(1, len(answer["items"]) + 1))
        assert [r["item_id"] for r in mine] == [i["item_id"] for i in answer["items"]]
        assert [r["score"] for r in mine] == pytest.approx([i["score"] for i in answer["items"]])
        assert all(set(r["features"]) == names for r in mine)
        assert all(r["fallback"] is answer["fallback"] for r in mine)
    assert traffic.dropped == 0 and traffic.failed == 0


ACCESS_LOG_PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
import service
from bentoml._internal.configuration.containers import BentoMLContainer
service.RecommenderService.inject_config()
print(BentoMLContainer.api_server_config.logging.access.enabled.get())
"""


@pytest.mark.parametrize(("env", "enabled"), [
    ({}, "False"),
    ({"RECSYS_ACCESS_LOG": "1"}, "True"),
    ({"BENTOML_CONFIG_OPTIONS": "services.recommender.logging.access.enabled=true"}, "True"),
], ids=["default", "RECSYS_ACCESS_LOG=1", "BENTOML_CONFIG_OPTIONS"])
def test_access_log_is_off_unless_asked_for(env: dict[str, str], enabled: str, tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items()
            if k not in {"RECSYS_ACCESS_LOG", "BENTOML_CONFIG_OPTIONS", "BENTOML_CONFIG_OVERRIDES", "BENTOML_CONFIG"}}
    out = subprocess.run([sys.executable, "-c", ACCESS_LOG_PROBE], cwd=ROOT / "bentos", capture_output=True,
                         text=True, timeout=120,
                         env={**base, **env, "BENTOML_HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
                              "RECSYS_BUNDLE_DIR": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == enabled


# -- a real server ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bentoml_serve_subprocess(bento_server: Any, known_users: list[int], tmp_path: Path) -> None:
    with bento_server(RECSYS_MAX_CONCURRENCY="1",
                      RECSYS_FEEDBACK_URL=f"sqlite:///{(tmp_path / 'fb.db').as_posix()}") as server:
        base = server.base
        resp = httpx.post(f"{base}/predict", json={"user_id": known_users[0], "n": 3}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["items"]) == 3
        bad = httpx.post(f"{base}/predict", json={"user_id": -1}, timeout=30)
        assert bad.status_code == 400
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert "recsys_predict_requests_total" in metrics
        # overload: max_concurrency 1, so concurrent requests beyond the one in flight get 429, never 5xx
        # (an exclusion takes the full two-stage path, so each request holds its slot for milliseconds)
        body = {"user_id": known_users[1], "n": 100, "exclude": [1]}
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{base}/predict", json=body, timeout=30), range(48)))
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
        for answer in answers:  # BentoML's own 429, in the error shape too
            if answer.status_code == 429:
                ErrorBody.model_validate_json(answer.content)

        # every acknowledged feedback event survives kill -9 of the whole server
        acked = []
        for i in range(40):
            event = {"event_id": f"k9-{i}", "user_id": known_users[0], "item_id": 50, "event": "click"}
            resp = httpx.post(f"{base}/feedback", json=event, timeout=30)
            if resp.status_code == 202:
                acked.append(event["event_id"])
        assert len(acked) == 40
        tree = server.tree()  # the workers run in sessions of their own: kill every process, not the group
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=30)
        server.proc.wait(timeout=30)
        store = FeedbackStore(server.env["RECSYS_FEEDBACK_URL"])
        assert all(store.get(event_id) is not None for event_id in acked) and store.count() == 40
        store.close()


def test_a_failed_swap_counts_and_tells_people(client: Any, service_env: dict[str, str], tmp_path: Path,
                                               wait_until: Any) -> None:
    """A bundle that cannot load keeps the champion serving, counts as a failed swap and is notified (the store
    holds it with its delivery state: the default channels are the outbox file and the log)."""
    from recsys.notify import NotificationStore
    from recsys.ranking.recommender import BundleError
    from recsys.settings import ServingSettings

    service = _service()
    before = _value(_samples(client), "recsys_model_swaps_total", outcome="failed")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{}")
    with pytest.raises(BundleError):
        service.manager.load_bundle(broken, alias="challenger", version=41)
    service.sync_metrics()
    assert _value(_samples(client), "recsys_model_swaps_total", outcome="failed") == before + 1
    assert client.post("/predict", json={"user_id": 1}).status_code == 200  # the champion still serves
    store = NotificationStore(ServingSettings(var_dir=Path(service_env["RECSYS_VAR_DIR"])).notify_db_url)

    def notified() -> list[Any]:
        return [n for n in store.recent(limit=50) if n.event == "model_swap_failed" and n.version == 41]

    wait_until(notified)
    (note,) = notified()
    assert note.severity == "critical" and {d.channel for d in note.deliveries} == {"outbox", "log"}
    store.close()
