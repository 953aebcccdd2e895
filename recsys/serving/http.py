"""The service's HTTP contract at the ASGI layer: body limits, media types, one error shape, the OpenAPI document.

:class:`ContractMiddleware` is a pure ASGI middleware (``Service.add_asgi_middleware``); before the app sees a
request it answers

- **413** to a body over ``max_body_bytes``, unread: at once from ``Content-Length``, or, for a chunked body, as
  soon as the bytes read pass the limit (the connection is then closed, so the rest is never read);
- **415** on a JSON route to a ``Content-Type`` other than ``application/json`` (a ``charset`` other than utf-8,
  a malformed value and ``multipart/form-data`` included; no ``Content-Type`` at all is read as JSON, as BentoML
  does);

and it rewrites every answer of status >= 400 from inside (BentoML's 400 on validation and its list-wrapped 4xx,
Starlette's plain-text 404/405, FastAPI's ``{"detail": ...}``, the service's own) into
:class:`~recsys.serving.schemas.ErrorBody`, keeping the status and the other headers (``Allow``,
``WWW-Authenticate``). Answers below 400 pass through untouched: no parse, no copy. It also serves the OpenAPI
document (``GET /docs.json``), built once when the middleware is made, by :func:`openapi_document` from BentoML's
generated one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode

from recsys.serving.schemas import ErrorBody, ErrorDetail

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = "application/json"
REF = "#/components/schemas/{model}"


def error_bytes(message: str, detail: list[ErrorDetail] | None = None) -> bytes:
    """An :class:`ErrorBody` as the JSON sent (``message`` folded to one line)."""
    return ErrorBody(error=" ".join(message.split()), detail=detail).model_dump_json().encode()


def as_error_body(status: int, body: bytes, content_type: bytes) -> bytes:
    """Any error answer's body (JSON from BentoML, FastAPI or Starlette, or text) as an :class:`ErrorBody`."""
    parsed: Any = None
    if b"json" in content_type:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    if isinstance(parsed, list) and len(parsed) == 1:  # BentoML sends ({"error": ...},) for a 4xx exception
        parsed = parsed[0]
    message, detail = "", None
    if isinstance(parsed, dict):
        text = parsed.get("error", parsed.get("detail"))
        message = text if isinstance(text, str) else ""
        if isinstance(parsed.get("detail"), list):  # pydantic errors (BentoML's 400, FastAPI's 422)
            detail = []
            for item in parsed["detail"]:
                try:
                    detail.append(ErrorDetail.model_validate({k: item.get(k) for k in ("loc", "msg", "type")}))
                except (AttributeError, ValidationError):
                    continue
            message = message or f"{len(detail)} validation errors"
    elif parsed is None:
        message = body.decode("utf-8", "replace")
    return error_bytes(message.strip() or HTTPStatus(status).phrase, detail)


def is_json(content_type: bytes) -> bool:
    """``application/json``, with or without parameters; a ``charset`` must be utf-8."""
    media, *params = content_type.split(b";")
    if media.strip().lower() != JSON.encode():
        return False
    for param in params:
        name, _, value = param.partition(b"=")
        if name.strip().lower() == b"charset" and value.strip().strip(b'"').lower() not in (b"utf-8", b"utf8"):
            return False
    return True


async def respond(send: Send, status: int, body: bytes, content_type: str = JSON, close: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if close:  # the server stops reading the request and closes once the answer is sent
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _ErrorShaper:
    """The ``send`` handed to the app: passes answers below 400 through, buffers and rewrites the others.

    ``started``: an answer has gone out (else the middleware may still send one).
    """

    __slots__ = ("_chunks", "_send", "_start", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []
        self.started = False

    async def __call__(self, message: Message) -> None:
        if self._start is None:
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    self._start = message
                    return
                self.started = True
            await self._send(message)
            return
        if message["type"] != "http.response.body":
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        start = self._start
        headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in (b"content-type", b"content-length")]
        content_type = next((v for k, v in start.get("headers", ()) if k.lower() == b"content-type"), b"")
        body = as_error_body(start["status"], b"".join(self._chunks), content_type)
        headers += [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
        self.started = True
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


class ContractMiddleware:
    """Body limit (413), media type (415) and one error shape for every answer; serves the OpenAPI document."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, json_paths: Iterable[str],
                 openapi: Callable[[], Mapping[str, Any]] | None = None, openapi_path: str = "/docs.json") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_paths = frozenset(json_paths)
        self.openapi_path = openapi_path
        self.openapi = None if openapi is None else json.dumps(openapi()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.openapi is not None and path == self.openapi_path and scope["method"] in ("GET", "HEAD"):
            await respond(send, 200, self.openapi)
            return
        length = content_type = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:  # the server parsed it
            await respond(send, 413, error_bytes(f"body over {self.max_body_bytes} bytes"), close=True)
            return
        if (path in self.json_paths and content_type is not None and content_type != b"application/json"
                and not is_json(content_type)):
            await respond(send, 415, error_bytes(
                f"Content-Type must be {JSON} (utf-8), got {content_type.decode('latin-1')!r}"))
            return
        if chunked and length is None:
            body = await self._read_at_most(receive)
            if body is None:
                await respond(send, 413, error_bytes(f"body over {self.max_body_bytes} bytes"), close=True)
                return
            receive = _replay(body, receive)
        shaper = _ErrorShaper(send)
        try:
            await self.app(scope, receive, shaper)
        except Exception:
            if not shaper.started:
                await respond(send, 500, error_bytes("internal error"))
            raise

    async def _read_at_most(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is left unread)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read ahead, then what the server sends (a disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# -- the OpenAPI document --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """One status of one route as the document shows it: a JSON body of ``body`` (a model or a JSON schema)."""

    description: str
    body: type[BaseModel] | Mapping[str, Any] | None = ErrorBody
    media_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header name -> description, each a required string."""


@dataclass(frozen=True)
class Operation:
    """Every status a route answers, its JSON request body (required) and whether it takes the bearer token."""

    answers: Mapping[int, Answer]
    request: type[BaseModel] | None = None
    bearer: bool = False


INVALID = Answer("invalid body: malformed JSON, a wrong type, a missing or unknown field, a value out of bounds "
                 "(detail lists each)")
TOO_LARGE = Answer("body over RECSYS_MAX_BODY_BYTES, refused before it is read")
UNSUPPORTED = Answer("Content-Type other than application/json (utf-8)")
OVERLOADED = Answer("more than RECSYS_MAX_CONCURRENCY requests in flight (BentoML's answer: no detail)")
TIMED_OUT = Answer("not answered within RECSYS_TIMEOUT seconds (BentoML's answer: no detail)")


def openapi_document(base: Mapping[str, Any], operations: Mapping[tuple[str, str], Operation]) -> dict[str, Any]:
    """BentoML's generated document with each listed ``(method, path)``'s answers and request body replaced.

    The schemas come from the models themselves (pydantic's JSON Schema 2020-12, hence OpenAPI 3.1): BentoML's
    flattened copies drop ``null`` from optional fields and keywords such as ``propertyNames``. Components no
    path refers to any more (BentoML's generic 400/404/500 bodies) are dropped.
    """
    doc = copy.deepcopy(dict(base))
    doc["openapi"] = "3.1.0"
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})

    def schema_of(body: type[BaseModel] | Mapping[str, Any], mode: JsonSchemaMode) -> dict[str, Any]:
        if not isinstance(body, type):
            return dict(body)
        generated = body.model_json_schema(ref_template=REF, mode=mode)
        schemas.update(generated.pop("$defs", {}))
        schemas[body.__name__] = generated
        return {"$ref": REF.format(model=body.__name__)}

    for (method, path), operation in operations.items():
        target = doc["paths"][path][method]  # a KeyError: the table names a route BentoML does not serve
        responses = {}
        for status, answer in sorted(operation.answers.items()):
            response: dict[str, Any] = {"description": answer.description}
            if answer.body is not None:
                response["content"] = {answer.media_type: {"schema": schema_of(answer.body, "serialization")}}
            if answer.headers:
                response["headers"] = {name: {"description": text, "required": True, "schema": {"type": "string"}}
                                       for name, text in answer.headers.items()}
            responses[str(status)] = response
        target["responses"] = responses
        if operation.request is not None:
            target["requestBody"] = {"required": True,
                                     "content": {JSON: {"schema": schema_of(operation.request, "validation")}}}
        if operation.bearer:
            target["security"] = [{"bearer": []}]
            components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    used = _refs(doc["paths"])
    while True:
        more = _refs([schemas[name] for name in used if name in schemas]) - used
        if not more:
            break
        used |= more
    components["schemas"] = {name: schema for name, schema in schemas.items() if name in used}
    return doc


def _refs(node: Any) -> set[str]:
    """The component names ``node`` refers to (``$ref`` values, recursively)."""
    if isinstance(node, Mapping):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()
