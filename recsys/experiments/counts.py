"""The counts an A/B analysis starts from: per variant, impressions and the clicks and conversions among them.

Every test in :mod:`recsys.experiments.ab` and :mod:`recsys.experiments.sequential` treats one impression as one
Bernoulli trial. That holds when impressions are independent; when a user sees many, their outcomes correlate and
the tests are too confident. Pass users as ``impressions`` (and users who clicked as ``clicks``) to analyse per
randomisation unit, which is what the router randomises.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Metric = Literal["ctr", "conversion"]
"""``ctr``: clicks per impression; ``conversion``: conversions (watches) per impression."""


class Model(BaseModel):
    """The base of the experiment results: frozen, strict about unknown fields, JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self, indent: int | None = None) -> str:
        return self.model_dump_json(indent=indent)


class VariantCounts(Model):
    """One variant's totals over the analysis window (cumulative from the experiment's start)."""

    variant: str = Field(min_length=1, max_length=64)
    impressions: int = Field(ge=0, description="trials: impressions served (or users exposed)")
    clicks: int = Field(0, ge=0, description="impressions that were clicked")
    conversions: int = Field(0, ge=0, description="impressions that led to a watch")

    @model_validator(mode="after")
    def _check_within_impressions(self) -> VariantCounts:
        for name in ("clicks", "conversions"):
            if getattr(self, name) > self.impressions:
                raise ValueError(f"variant {self.variant!r}: {name} ({getattr(self, name)}) exceed impressions "
                                 f"({self.impressions})")
        return self

    def successes(self, metric: Metric) -> int:
        """The numerator of ``metric``."""
        return self.clicks if metric == "ctr" else self.conversions

    def rate(self, metric: Metric) -> float | None:
        """``metric``'s rate, or None without impressions (never a division by zero, never NaN)."""
        # None, not NaN: pydantic would write a NaN to JSON as null without a word
        return self.successes(metric) / self.impressions if self.impressions else None

    def require_impressions(self) -> None:
        """ValueError naming the variant when it has no impressions: no rate of it is defined."""
        if self.impressions == 0:
            raise ValueError(f"variant {self.variant!r} has no impressions: its rates are undefined")
