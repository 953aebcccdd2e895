"""The HTTP contract of the recommendation service as pydantic models (shared by the runtime and the Bento).

Every bound is explicit so that bad input is a 4xx with a message, never a 5xx: ids are non-negative 31-bit
integers, ``n`` is 1..100, strings, lists and the context have maximum sizes, floats reject NaN and infinities,
and unknown fields are errors. Validation is strict (``"5"`` is not an integer, ``true`` is not 1), and every
bound is a JSON-schema keyword, so the served OpenAPI document states exactly what is accepted.

:class:`ErrorBody` is the one shape of every error answer, whatever the route and status.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from recsys.db import utcnow

MAX_ID = 2**31 - 1
"""User and item ids are stored as 32-bit signed integers."""
MAX_EXCLUDE = 1000
MAX_CONTEXT_KEYS = 32
MAX_CONTEXT_KEY_CHARS = 64
MAX_CONTEXT_VALUE_CHARS = 256
NO_NUL = r"^[^\x00]*$"
"""Fields a database stores refuse NUL characters: PostgreSQL's text columns cannot hold them (the insert would
fail, a 500). Request fields that only reach the Parquet logs (profile, context) may contain them."""


def _json_integer(value: Any) -> Any:
    """JSON Schema's ``integer``: ``3`` and ``3.0`` (the same JSON number), never ``"3"`` or ``true``.

    Strict pydantic refuses ``3.0`` and lax pydantic takes ``"3"``; with ``strict=False`` on the field, this check
    in front of it leaves exactly what the schema says (``3.5`` is still refused).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


JSON_INTEGER = BeforeValidator(_json_integer)
"""With ``Field(strict=False)``: an int field that takes what JSON Schema calls an integer."""
UserId = Annotated[int, Field(ge=0, le=MAX_ID, strict=False,
                              description="a user id (unknown ids get the cold-start policy)"), JSON_INTEGER]
ItemId = Annotated[int, Field(ge=0, le=MAX_ID, strict=False), JSON_INTEGER]
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?", re.ASCII)
"""What a ``ts`` string must look like (pydantic alone also reads ``"0"`` or ``"1700000000"`` as Unix times)."""
EDGE_DAYS = ("0001-01-01", "9999-12-31")
"""Dates a ``ts`` may not fall on: their UTC time can be outside the datetime range (years 1..9999)."""
TS_SCHEMA = {"anyOf": [{"type": "string", "format": "date-time", "pattern": "^(?!0001-01-01|9999-12-31)"},
                       {"type": "null"}]}
"""The JSON schema of ``ts``: an RFC 3339 date-time (not on an edge day), or null."""


def _ts_before(value: Any) -> Any:
    if value is None:
        return utcnow()
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339.fullmatch(value)):
        return value
    raise PydanticCustomError("datetime_type", "ts must be an RFC 3339 date-time, e.g. 2024-05-01T12:00:00Z, or null")


def _ts_utc(value: datetime) -> datetime:
    if value.date().isoformat() in EDGE_DAYS:
        raise ValueError("ts may not fall on 0001-01-01 or 9999-12-31 (its UTC time may not exist)")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


EventTime = Annotated[datetime, Field(strict=False), BeforeValidator(_ts_before), AfterValidator(_ts_utc),
                      WithJsonSchema(TS_SCHEMA, mode="validation")]
"""When something happened: an RFC 3339 date-time (UTC when it has no offset) or null (the server's time now);
never on 0001-01-01 or 9999-12-31. Replays send their simulated time, so every log is on the data's clock."""
ContextKey = Annotated[str, StringConstraints(max_length=MAX_CONTEXT_KEY_CHARS)]
ContextValue = Annotated[str, StringConstraints(max_length=MAX_CONTEXT_VALUE_CHARS)] | int | float | bool


class Profile(BaseModel):
    """A sign-up profile: what the cold-start policy ranks an unknown user from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    age: Annotated[int, Field(ge=1, le=120, strict=False), JSON_INTEGER] | None = None
    gender: Literal["M", "F"] | None = None
    occupation: str | None = Field(None, min_length=1, max_length=64)
    zip: str | None = Field(None, min_length=1, max_length=16)


class PredictRequest(BaseModel):
    """The body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    user_id: UserId
    n: Annotated[int, Field(ge=1, le=100, strict=False), JSON_INTEGER] = Field(10, description="how many items")
    profile: Profile | None = None
    context: dict[ContextKey, ContextValue] | None = Field(
        None, max_length=MAX_CONTEXT_KEYS,
        description=f"request context (device, time of day, …): at most {MAX_CONTEXT_KEYS} keys of at most "
                    f"{MAX_CONTEXT_KEY_CHARS} characters, string values of at most {MAX_CONTEXT_VALUE_CHARS}; "
                    "accepted, logged, not yet a feature")
    exclude: list[ItemId] = Field(default_factory=list, max_length=MAX_EXCLUDE, description="items never to return")
    ts: EventTime = Field(default_factory=utcnow, description="when the request is made (RFC 3339; default: now); "
                                                              "a replay sends its simulated time, which the "
                                                              "assignment and traffic logs record")


class Item(BaseModel):
    item_id: int
    score: float
    title: str | None = None


class ModelInfo(BaseModel):
    name: str
    version: int | None
    alias: str
    variant: str


class PredictResponse(BaseModel):
    request_id: str
    user_id: int
    items: list[Item]
    model: ModelInfo
    fallback: bool = Field(description="true when the user is unknown and the cold-start policy ranked the items")


class FeedbackAck(BaseModel):
    """The 202 answer of ``POST /feedback``: the event is durably stored (``stored`` false: a duplicate id)."""

    event_id: str
    stored: bool


class ErrorDetail(BaseModel):
    """One reason a request body was rejected (a pydantic validation error, without the input it quoted)."""

    loc: list[str | int] = Field(description="where: field names and list indexes from the top of the body")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. missing, int_type, extra_forbidden, json_invalid")


class ErrorBody(BaseModel):
    """Every error answer of the service, on every route and status (4xx and 5xx).

    ``detail`` lists the field errors of a 400; it is null for every other error, and absent from the two answers
    BentoML writes outside the service's middleware (429 overload, 504 timeout).
    """

    error: str = Field(description="what went wrong, one line")
    detail: list[ErrorDetail] | None = Field(None, description="the field errors of an invalid body, else null")
