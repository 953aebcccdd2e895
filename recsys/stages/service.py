"""The service's admin client: ask a running recommendation service to reload its models from the registry now.

The service also watches the registry aliases on its own (``RECSYS_WATCH_INTERVAL``); a reload after a promotion
or a rollback makes the change serve at once, and checks that it does. The bearer token is the service's
``RECSYS_ADMIN_TOKEN``, read from the environment only (an orchestrator passes it from its secret store, never on
a command line).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from recsys.schema import CHAMPION
from recsys.settings import ServingSettings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult


class ReloadParams(BaseModel):
    url: str = Field(description="the service's base URL, e.g. http://127.0.0.1:3000")
    expect_version: int | None = Field(None, ge=1, description="fail unless the champion served afterwards is it")
    timeout: float = Field(10.0, gt=0, description="seconds per HTTP attempt")
    attempts: int = Field(3, ge=1, le=10, description="attempts on a connection error or a 5xx")


class ReloadResult(StageResult):
    url: str
    outcome: dict[str, str] = Field(description="alias -> what the refresh did (loaded, unchanged, removed, ...)")
    versions: dict[str, int | None] = Field(description="alias -> version served after the reload")
    seconds: float = Field(description="the service's own refresh time")


class _RetryableError(Exception):
    """A connection error or a 5xx: worth another attempt."""


def reload_service(settings: ServingSettings, params: ReloadParams, *, reporter: Reporter = SILENT) -> ReloadResult:
    """``POST /admin/reload`` with the admin token (retried with backoff on a connection error or a 5xx); with
    ``expect_version``, a StageError unless the champion served afterwards is that version."""
    import httpx
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

    if settings.admin_token is None:
        raise StageError("RECSYS_ADMIN_TOKEN is not set: the service's admin token is needed to reload it")
    url = params.url.rstrip("/") + "/admin/reload"
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}

    @retry(retry=retry_if_exception_type(_RetryableError), stop=stop_after_attempt(params.attempts),
           wait=wait_exponential(multiplier=0.5, max=5), reraise=True)
    def post() -> httpx.Response:
        try:
            response = httpx.post(url, headers=headers, timeout=params.timeout)
        except httpx.HTTPError as exc:
            raise _RetryableError(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 500 and response.status_code != 503:  # 503: admin disabled, not transient
            raise _RetryableError(f"{url}: HTTP {response.status_code}: {_message(response)}")
        return response

    reporter.note(f"reloading the service at {params.url} …")
    try:
        response = post()
    except _RetryableError as exc:
        raise StageError(f"the service did not reload after {params.attempts} attempt(s): {exc}") from exc
    if response.status_code != 200:
        raise StageError(f"{url}: HTTP {response.status_code}: {_message(response)}")
    body = response.json()
    versions = {alias: model.get("version") for alias, model in (body.get("models") or {}).items()}
    if params.expect_version is not None and versions.get(CHAMPION) != params.expect_version:
        raise StageError(f"the service serves champion v{versions.get(CHAMPION)} after the reload, "
                         f"not v{params.expect_version} (is it watching the same registry?)")
    return ReloadResult(url=params.url, outcome={k: str(v) for k, v in (body.get("outcome") or {}).items()},
                        versions=versions, seconds=float(body.get("seconds") or 0.0))


def _message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    return str(body.get("error") or body.get("detail") or body)[:200] if isinstance(body, dict) else str(body)[:200]


class SmokeParams(BaseModel):
    url: str = Field(description="the service's base URL, e.g. http://127.0.0.1:3000")
    user_id: int = Field(1, ge=0, description="a known user to ask for recommendations")
    n: int = Field(10, ge=1, le=100, description="how many items to ask for")
    wait: float = Field(0.0, ge=0, description="seconds to wait for /readyz before failing (0: ask once)")
    timeout: float = Field(10.0, gt=0, description="seconds per HTTP request")


class SmokeResult(StageResult):
    url: str
    ready_after: float = Field(description="seconds until /readyz answered 200")
    latency_ms: float = Field(description="the known user's /predict, client side")
    model: dict[str, Any] = Field(description="the model that answered (name, version, alias, variant)")
    items: list[dict[str, Any]] = Field(description="the known user's recommendations")
    cold_start_items: int = Field(description="items for an unknown user with a profile (the cold-start path)")


def smoke(params: SmokeParams, *, reporter: Reporter = SILENT) -> SmokeResult:
    """What a deployment checks before it takes traffic: ``/livez`` and ``/readyz`` (waited for up to
    ``wait`` seconds), ``/predict`` for a known user and for an unknown one with a profile, each answer checked
    for its shape; a StageError names the first thing that is wrong."""
    import time

    import httpx

    base = params.url.rstrip("/")
    started = time.monotonic()
    reporter.note(f"waiting for {base}/readyz (up to {params.wait:.0f} s) …")
    while True:
        try:
            ready = httpx.get(f"{base}/readyz", timeout=params.timeout)
            if ready.status_code == 200:
                break
            problem = f"/readyz answers {ready.status_code}: {_message(ready)}"
        except httpx.HTTPError as exc:
            problem = f"{base} is unreachable ({exc.__class__.__name__}: {exc})"
        if time.monotonic() - started >= params.wait:
            raise StageError(f"the service is not ready: {problem}")
        time.sleep(0.5)
    ready_after = time.monotonic() - started
    live = httpx.get(f"{base}/livez", timeout=params.timeout)
    if live.status_code != 200:
        raise StageError(f"/livez answers {live.status_code}: {_message(live)}")

    def predict(body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        t0 = time.perf_counter()
        answer = httpx.post(f"{base}/predict", json=body, timeout=params.timeout)
        ms = (time.perf_counter() - t0) * 1000
        if answer.status_code != 200:
            raise StageError(f"/predict {body} answers {answer.status_code}: {_message(answer)}")
        payload = answer.json()
        items = payload.get("items")
        if not isinstance(items, list) or not items or not all("item_id" in i and "score" in i for i in items):
            raise StageError(f"/predict {body} answers without items: {str(payload)[:200]}")
        return payload, ms

    known, ms = predict({"user_id": params.user_id, "n": params.n})
    if len(known["items"]) != params.n:
        raise StageError(f"/predict asked for {params.n} items and got {len(known['items'])}")
    cold, _ = predict({"user_id": 10**9, "n": params.n,
                       "profile": {"age": 30, "gender": "F", "occupation": "writer", "zip": "94110"}})
    return SmokeResult(url=params.url, ready_after=round(ready_after, 3), latency_ms=round(ms, 2),
                       model=known.get("model") or {}, items=known["items"], cold_start_items=len(cold["items"]))
