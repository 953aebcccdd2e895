"""HTTP contract of ``bentos/service.py``, in-process through BentoML's ASGI app (one app per module)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from recsys.serving.feedback import FeedbackStore
from recsys.serving.schemas import MAX_EXCLUDE, MAX_ID

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"
UNKNOWN_USER = MAX_ID  # far above MovieLens's ids


@pytest.fixture(scope="module")
def known_users(small_model: SimpleNamespace) -> list[int]:
    return [int(u) for u in small_model.result.recommender.profiles.index[:5]]


def _error_text(resp: Any) -> str:
    body = resp.json()
    if isinstance(body, list):  # BentoML wraps some 4xx bodies in a list
        body = body[0]
    return json.dumps(body)


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


def test_openapi_lists_the_routes(client: Any) -> None:
    resp = client.get("/docs.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert "/predict" in paths and "/feedback" in paths


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
}


@pytest.mark.parametrize("body", list(BAD_FEEDBACK.values()), ids=list(BAD_FEEDBACK))
def test_feedback_bad_input_is_4xx(client: Any, body: dict[str, Any]) -> None:
    resp = client.post("/feedback", json=body)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert len(_error_text(resp)) > 10


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
    assert resp.status_code == 401, resp.text
    assert "token" in resp.json()["error"]


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
    assert resp.status_code == 503 and "admin disabled" in resp.json()["error"]


# -- no model --------------------------------------------------------------------------------------------------
def test_no_champion_is_503(client: Any, monkeypatch: pytest.MonkeyPatch, known_users: list[int]) -> None:
    from _bentoml_sdk.service import get_current_service

    manager = get_current_service().manager
    monkeypatch.setattr(manager, "_models", {})
    assert client.get("/readyz").status_code == 503
    resp = client.post("/predict", json={"user_id": known_users[0]})
    assert resp.status_code == 503 and "no model" in resp.json()["error"]
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


# -- a real server ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_bentoml_serve_subprocess(service_env: dict[str, str], known_users: list[int], tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, **service_env, "RECSYS_MAX_CONCURRENCY": "1",
           "RECSYS_FEEDBACK_URL": f"sqlite:///{(tmp_path / 'fb.db').as_posix()}", "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR")  # bentoml serve sets its own
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    proc = subprocess.Popen([bentoml, "serve", "service:RecommenderService", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT / "bentos", env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"bentoml serve exited with {proc.returncode}:\n{out[-4000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready in 120 s"
            time.sleep(0.5)
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
            codes = list(pool.map(lambda _: httpx.post(f"{base}/predict", json=body, timeout=30).status_code,
                                  range(48)))
        assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes

        # every acknowledged feedback event survives kill -9 of the whole server
        acked = []
        for i in range(40):
            event = {"event_id": f"k9-{i}", "user_id": known_users[0], "item_id": 50, "event": "click"}
            resp = httpx.post(f"{base}/feedback", json=event, timeout=30)
            if resp.status_code == 202:
                acked.append(event["event_id"])
        assert len(acked) == 40
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        store = FeedbackStore(env["RECSYS_FEEDBACK_URL"])
        assert all(store.get(event_id) is not None for event_id in acked) and store.count() == 40
        store.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
