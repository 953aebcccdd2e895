"""The HTTP contract of the recommendation service as pydantic models (shared by the runtime and the Bento).

Every bound is explicit so that bad input is a 4xx with a message, never a 5xx: ids are non-negative 31-bit
integers, ``n`` is 1..100, strings and lists have maximum lengths, floats reject NaN and infinities, and unknown
fields are errors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ID = 2**31 - 1
MAX_EXCLUDE = 1000
MAX_CONTEXT_KEYS = 32

UserId = Annotated[int, Field(ge=0, le=MAX_ID, description="a user id (unknown ids get the cold-start policy)")]
ItemId = Annotated[int, Field(ge=0, le=MAX_ID)]


class Profile(BaseModel):
    """A sign-up profile: what the cold-start policy ranks an unknown user from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    age: int | None = Field(None, ge=1, le=120)
    gender: Literal["M", "F"] | None = None
    occupation: str | None = Field(None, min_length=1, max_length=64)
    zip: str | None = Field(None, min_length=1, max_length=16)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user_id: UserId
    n: int = Field(10, ge=1, le=100, description="how many items")
    profile: Profile | None = None
    context: dict[str, str | int | float | bool] | None = Field(
        None, description="request context (device, time of day, …); accepted, logged, not yet a feature")
    exclude: list[ItemId] = Field(default_factory=list, max_length=MAX_EXCLUDE, description="items never to return")

    @field_validator("context")
    @classmethod
    def _small_context(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            if len(value) > MAX_CONTEXT_KEYS:
                raise ValueError(f"context has {len(value)} keys; at most {MAX_CONTEXT_KEYS}")
            long = [k for k, v in value.items() if len(k) > 64 or (isinstance(v, str) and len(v) > 256)]
            if long:
                raise ValueError(f"context keys are at most 64 characters and values 256: {long[:3]}")
        return value


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
