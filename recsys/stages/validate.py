"""The validation stage: every incoming weekly batch through Great Expectations, into the store or quarantine."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult
from recsys.validation.runner import ValidationOutcome


class ValidateParams(BaseModel):
    weeks: list[int] | None = Field(None, description="weeks to validate, in order; None: every incoming batch")


class ValidateResult(StageResult):
    passed: bool = Field(description="every batch was accepted")
    accepted: int
    rejected: int
    outcomes: list[ValidationOutcome]
    store_dir: Path
    data_docs: Path | None


def incoming_weeks(settings: Settings) -> list[int]:
    """The weeks that have an incoming batch folder, in order."""
    return sorted(int(p.name.split("=", 1)[1]) for p in settings.batches_dir.glob("week=*") if p.is_dir())


def validate(settings: Settings, params: ValidateParams, *, reporter: Reporter = SILENT) -> ValidateResult:
    """Validate batches in week order (later weeks learn their volume band from earlier accepted ones).

    A rejected batch is quarantined with its GX result and a summary, and a notification goes out; the result
    says so (``passed`` is False) rather than raising, so that every requested week is looked at.
    """
    weeks = incoming_weeks(settings) if params.weeks is None else params.weeks
    if not weeks:
        raise StageError(f"no incoming batches in {settings.batches_dir}: run `recsys data replay --all`")
    with reporter.status("loading Great Expectations …"):
        from recsys.validation.runner import load_reference, validate_weeks

        reference = load_reference(settings.raw_dir)
    with reporter.progress("validating weekly batches", "weeks") as track:
        outcomes = validate_weeks(settings, track(weeks), reference=reference)
    docs = next((o.data_docs for o in reversed(outcomes) if o.data_docs), None)
    accepted = sum(o.success for o in outcomes)
    return ValidateResult(passed=accepted == len(outcomes), accepted=accepted, rejected=len(outcomes) - accepted,
                          outcomes=outcomes,
                          store_dir=settings.store_dir, data_docs=docs)
