"""The promotion gate: a pure function of two evaluations on the same users and window.

Against the champion, a challenger is promoted only if the paired-bootstrap CI of its per-user NDCG@10 gain
(and Recall@10's, when configured) clears a margin, no slice (warm, cold, long tail) regresses beyond a
tolerance, catalog coverage holds, its bundle passed the schema check and recommend() met the latency
budget. With no champion yet, the first model must not be worse than the best single candidate generator.
Nothing here touches MLflow or the disk: the caller evaluates, measures, and records the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from recsys.evaluation.bootstrap import paired_bootstrap
from recsys.schema import K

if TYPE_CHECKING:
    from recsys.evaluation.protocols import EvalResult

NDCG = f"ndcg@{K}"
RECALL = f"recall@{K}"
ALIGN = ["cut", "key"]
REQUIRED_COLUMNS = (*ALIGN, "slice", "cold", NDCG)
SLICES = ("warm", "cold", "long_tail")


class GateConfig(BaseModel):
    """Thresholds of the promotion gate and the settings of its paired bootstrap."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(0.0, description="min CI lower bound of challenger − champion mean per-user NDCG@10")
    recall_margin: float | None = Field(None, description="the same for Recall@10; None skips the check")
    slice_tolerance: float = Field(0.02, ge=0, description="max absolute drop of a slice's mean NDCG@10")
    coverage_tolerance: float = Field(0.02, ge=0, description="max absolute drop of catalog coverage")
    latency_budget_ms: float = Field(50.0, gt=0, description="max p95 latency of recommend(), in ms")
    first_model_tolerance: float = Field(
        -0.01, description="no champion: min CI lower bound of challenger − best single generator NDCG@10"
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the bootstrap intervals")
    n_resamples: int = Field(2000, ge=1, description="bootstrap resamples")
    seed: int = Field(0, ge=0, description="bootstrap seed: a fixed seed gives a reproducible decision")


# eq=False: the generated __eq__ would compare DataFrames, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class ModelEvaluation:
    """One model's evaluation: its per-user rows (both slices), catalog coverage and bundle checks."""

    name: str
    per_user: pd.DataFrame
    """Columns key, cut, slice ('main' | 'long_tail'), cold, ndcg@10 (and recall@10)."""
    coverage: float
    latency_p95_ms: float | None = None
    schema_ok: bool = True

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in self.per_user.columns]
        if missing:
            raise ValueError(f"{self.name!r}: per_user lacks column(s) {missing}")

    @classmethod
    def from_eval(cls, result: EvalResult, model: str, latency_p95_ms: float | None = None,
                  schema_ok: bool = True, name: str | None = None) -> ModelEvaluation:
        """Pick ``model``'s rows and coverage out of an :class:`EvalResult` (``name`` defaults to ``model``)."""
        rows = result.per_user[result.per_user["model"] == model]
        if rows.empty or model not in result.list_metrics.index:
            known = sorted(result.per_user["model"].unique())
            raise ValueError(f"model {model!r} is not in the evaluation; models: {known}")
        return cls(name or model, rows.drop(columns="model").reset_index(drop=True),
                   float(result.list_metrics.loc[model, "coverage"]), latency_p95_ms, schema_ok)

    def means(self) -> dict[str, float | None]:
        """Mean NDCG@10 over all, warm and cold users of the main slice, and the catalog coverage."""
        main = self.per_user[self.per_user["slice"] == "main"]
        cold = main["cold"].astype(bool)
        values = {NDCG: main[NDCG].mean(), f"{NDCG}_warm": main.loc[~cold, NDCG].mean(),
                  f"{NDCG}_cold": main.loc[cold, NDCG].mean(), "coverage": self.coverage}
        return {k: _json_safe(float(v)) for k, v in values.items()}


class GateCheck(BaseModel):
    """One check of the gate: passed or not (a skipped check passes), its value against its threshold, and the
    numbers behind it (a bootstrap CI, slice means or coverages)."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    skipped: bool = False
    reason: str | None = Field(None, description="why the check was skipped")
    value: float | bool | None = None
    threshold: float | bool | None = None
    # a paired bootstrap (ndcg, recall): challenger = a, reference = b
    mean_a: float | None = None
    mean_b: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    rel_gain: float | None = None
    rel_ci_low: float | None = None
    rel_ci_high: float | None = None
    confidence: float | None = None
    n: int | None = None
    # a slice's means, or the catalog coverages
    mean_challenger: float | None = None
    mean_reference: float | None = None
    challenger: float | None = None
    reference: float | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        """NaN and infinities (an undefined relative gain) are stored as None: JSON has no NaN."""
        return _json_safe(value)

    @model_serializer(mode="wrap")
    def _only_what_was_measured(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A check's record holds the fields its kind sets (an explicit None stays: "not measured")."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set or k in ("passed", "skipped")}


class GateDecision(BaseModel):
    """The verdict, every check's numbers, and human-readable reasons (failures, or a one-line summary)."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    verdict: Literal["promote", "reject"]
    reasons: list[str]
    checks: dict[str, GateCheck]
    """Check name -> its result; a skipped check does not block."""
    mode: Literal["vs_champion", "first_model"]
    challenger: str
    reference: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return self.model_dump(mode="json")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _rows(model: ModelEvaluation, slice_: str) -> pd.DataFrame:
    rows = model.per_user[model.per_user["slice"] == slice_]
    duplicated = rows.duplicated(ALIGN)
    if duplicated.any():
        raise ValueError(f"{model.name!r}: {int(duplicated.sum())} duplicate (cut, key) rows in slice {slice_!r}; "
                         "pass the rows of one model only")
    return rows


def _align(challenger: ModelEvaluation, reference: ModelEvaluation, slice_: str, columns: list[str]) -> pd.DataFrame:
    """Inner join on (cut, key), sorted so the bootstrap sees the same order whatever the input order."""
    keep = [*ALIGN, "cold", *columns]
    merged = _rows(challenger, slice_)[keep].merge(_rows(reference, slice_)[keep], on=ALIGN,
                                                   suffixes=("_ch", "_ref"))
    if (merged["cold_ch"].astype(bool) != merged["cold_ref"].astype(bool)).any():
        raise ValueError(f"{challenger.name!r} and {reference.name!r} disagree on which users are cold: "
                         "they were not evaluated on the same window")
    return merged.rename(columns={"cold_ch": "cold"}).sort_values(ALIGN, ignore_index=True)


Outcome = tuple[GateCheck, str]
"""A check and the reason to give when it fails."""


def _ci_check(label: str, merged: pd.DataFrame, metric: str, threshold: float, cfg: GateConfig,
              against: str) -> Outcome:
    diff = paired_bootstrap(merged[f"{metric}_ch"].to_numpy(), merged[f"{metric}_ref"].to_numpy(),
                            n_resamples=cfg.n_resamples, confidence=cfg.confidence, seed=cfg.seed)
    check = GateCheck(passed=diff.ci_low >= threshold, value=diff.ci_low, threshold=threshold, **diff.to_dict())
    reason = (f"{label}: CI lower bound of challenger − {against} is {diff.ci_low:+.4f} (diff {diff.diff:+.4f}, "
              f"{diff.confidence:.0%} CI [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}], {diff.n} users), "
              f"below {threshold:+.4f}")
    return check, reason


def _slice_check(name: str, merged: pd.DataFrame, tolerance: float) -> Outcome:
    if merged.empty:
        return _skipped(f"no common users in slice {name!r}")
    mean_ch, mean_ref = float(merged[f"{NDCG}_ch"].mean()), float(merged[f"{NDCG}_ref"].mean())
    drop = mean_ref - mean_ch
    check = GateCheck(passed=drop <= tolerance, value=drop, threshold=tolerance, mean_challenger=mean_ch,
                      mean_reference=mean_ref, n=len(merged))
    reason = (f"slice {name}: mean NDCG@10 dropped by {drop:.4f} ({mean_ref:.4f} -> {mean_ch:.4f}, "
              f"{len(merged)} users), more than the tolerance {tolerance:.4f}")
    return check, reason


def _skipped(why: str) -> Outcome:
    return GateCheck(passed=True, skipped=True, reason=why), ""


def decide(challenger: ModelEvaluation, champion: ModelEvaluation | None, cfg: GateConfig,
           best_generator: ModelEvaluation | None = None) -> GateDecision:
    """Decide whether ``challenger`` replaces ``champion`` (or, with no champion, becomes the first one).

    Users are aligned on (cut, key) and only users both models were scored on count. Raises ValueError
    when no champion and no ``best_generator`` are given, or when the two models share fewer than 2 users.
    """
    reference = champion if champion is not None else best_generator
    if reference is None:
        raise ValueError(f"no champion for {challenger.name!r}: the first model needs best_generator to compare with")
    mode = "vs_champion" if champion is not None else "first_model"
    columns = [NDCG] if cfg.recall_margin is None or mode == "first_model" else [NDCG, RECALL]
    for model in (challenger, reference):
        if RECALL in columns and RECALL not in model.per_user.columns:
            raise ValueError(f"{model.name!r}: per_user lacks {RECALL!r}, needed by recall_margin")
    main = _align(challenger, reference, "main", columns)
    if len(main) < 2:
        raise ValueError(f"{challenger.name!r} and {reference.name!r} share {len(main)} evaluation user(s) in the "
                         "'main' slice; they must be evaluated on the same users and window")

    results: dict[str, Outcome] = {}
    if mode == "vs_champion":
        against = f"champion {reference.name!r}"
        results["ndcg"] = _ci_check("NDCG@10", main, NDCG, cfg.margin, cfg, against)
        if cfg.recall_margin is None:
            results["recall"] = _skipped("recall_margin is not set")
        else:
            results["recall"] = _ci_check("Recall@10", main, RECALL, cfg.recall_margin, cfg, against)
        cold = main["cold"].astype(bool)
        results["slice_warm"] = _slice_check("warm", main[~cold], cfg.slice_tolerance)
        results["slice_cold"] = _slice_check("cold", main[cold], cfg.slice_tolerance)
        results["slice_long_tail"] = _slice_check(
            "long_tail", _align(challenger, reference, "long_tail", [NDCG]), cfg.slice_tolerance)
        drop = reference.coverage - challenger.coverage
        results["coverage"] = (
            GateCheck(passed=drop <= cfg.coverage_tolerance, value=drop, threshold=cfg.coverage_tolerance,
                      challenger=challenger.coverage, reference=reference.coverage),
            f"catalog coverage dropped by {drop:.4f} ({reference.coverage:.4f} -> {challenger.coverage:.4f}), "
            f"more than the tolerance {cfg.coverage_tolerance:.4f}")
    else:
        against = f"best generator {reference.name!r}"
        results["ndcg"] = _ci_check("NDCG@10", main, NDCG, cfg.first_model_tolerance, cfg, against)
        results["recall"] = _skipped("first model: only NDCG@10 is compared with the best generator")
        for name in (*(f"slice_{s}" for s in SLICES), "coverage"):
            results[name] = _skipped("first model: checked against a champion only")

    latency = challenger.latency_p95_ms
    if latency is None or not math.isfinite(latency):
        results["latency"] = (
            GateCheck(passed=False, value=None, threshold=cfg.latency_budget_ms),
            f"latency: p95 of recommend() was not measured; the budget is {cfg.latency_budget_ms:.1f} ms")
    else:
        results["latency"] = (
            GateCheck(passed=latency <= cfg.latency_budget_ms, value=latency, threshold=cfg.latency_budget_ms),
            f"latency: p95 of recommend() is {latency:.1f} ms, over the budget {cfg.latency_budget_ms:.1f} ms")
    results["schema"] = (GateCheck(passed=bool(challenger.schema_ok), value=challenger.schema_ok, threshold=True),
                         "schema: the bundle failed the schema check")

    checks = {name: check for name, (check, _) in results.items()}
    reasons = [reason for check, reason in results.values() if not check.passed]
    passed = not reasons
    if passed:
        ndcg = checks["ndcg"]
        skipped = [name for name, check in checks.items() if check.skipped]
        reasons = [f"promote {challenger.name!r} over {against}: NDCG@10 {ndcg.diff:+.4f} "
                   f"({ndcg.confidence:.0%} CI [{ndcg.ci_low:+.4f}, {ndcg.ci_high:+.4f}], {ndcg.n} users); "
                   f"all checks passed" + (f" (skipped: {', '.join(skipped)})" if skipped else "")]
    return GateDecision(passed=passed, verdict="promote" if passed else "reject", reasons=reasons, checks=checks,
                        mode=mode, challenger=challenger.name, reference=reference.name)
