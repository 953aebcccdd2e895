"""The retrain triggers' decision: which raised signal (drift, CTR degradation) fires, and which is held back.

Pure logic on what the checks found (:class:`Observation`) and the last recorded trigger (:class:`Trigger`); the
stage (:mod:`recsys.stages.signals`) reads the files, counts the traffic, takes the lock and records. A signal is
*raised* when its latest check is fresh (checked within ``max_age_minutes`` of now, wall clock) and found
drift / a degraded version; a raised signal *fires* unless a trigger (of either signal) happened within
``cooldown_hours`` (it is then *suppressed* until the cooldown ends) or fewer than ``min_impressions`` impressions
were logged since the last trigger (in the checked window when there was none). One trigger carries every signal
that fires together: one retrain answers both.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SIGNALS_DIR = Path("monitoring") / "signals"
"""Where the triggers are recorded, relative to the var dir."""


class SignalConfig(BaseModel):
    """The ``signals`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid")

    cooldown_hours: float = Field(24.0, ge=0, description="at most one trigger per this many hours (wall clock)")
    min_impressions: int = Field(500, ge=0, description="a raised signal fires only after this many impressions "
                                 "since the last trigger (in the checked window without one)")
    max_age_minutes: float = Field(60.0, gt=0, description="an older check result is stale and fires nothing")

    @property
    def cooldown(self) -> timedelta:
        return timedelta(hours=self.cooldown_hours)

    @property
    def max_age(self) -> timedelta:
        return timedelta(minutes=self.max_age_minutes)


class Observation(BaseModel):
    """What one check's latest result says, as the decision needs it."""

    source: Path = Field(description="the result file")
    present: bool = Field(description="False: no result file (no check has run)")
    checked_at: datetime | None = Field(None, description="wall-clock time of the check")
    detected: bool = Field(False, description="the check found drift / a degraded version")
    verdict: str = Field("", description="the check's own one-line account")
    window_start: datetime | None = Field(None, description="the checked window, on the logs' clock")
    window_end: datetime | None = None
    facts: dict[str, Any] = Field(default_factory=dict)


class Trigger(BaseModel):
    """One recorded trigger: when, which signals, their facts, and how far the assignment log had been counted."""

    at: datetime = Field(description="wall-clock time of the trigger")
    signals: list[str] = Field(description="drift and/or performance")
    facts: dict[str, dict[str, Any]]
    run_id: str | None = None
    new_impressions: int
    log_position: datetime | None = Field(description="the newest impression counted (logs' clock): the next "
                                          "trigger counts the impressions after it")


class Decision(BaseModel):
    """One signal's verdict."""

    raised: bool = Field(description="a fresh result found drift / degradation")
    fired: bool = Field(description="raised, outside the cooldown, with enough new traffic")
    suppressed: bool = Field(False, description="raised but inside the cooldown")
    stale: bool = Field(False, description="the result is older than max_age")
    reason: str = Field(description="why, in one line")
    checked_at: datetime | None
    source: Path
    facts: dict[str, Any]


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def fresh(obs: Observation, now: datetime, cfg: SignalConfig) -> bool:
    return obs.present and obs.checked_at is not None and now - obs.checked_at <= cfg.max_age


def cooldown_end(last: Trigger | None, cfg: SignalConfig) -> datetime | None:
    return None if last is None else last.at + cfg.cooldown


def decide(name: str, obs: Observation, now: datetime, cfg: SignalConfig, last: Trigger | None,
           new_impressions: int) -> Decision:
    """One signal's decision (``name``: what the reasons call the check, e.g. "drift check")."""
    common: dict[str, Any] = dict(checked_at=obs.checked_at, source=obs.source, facts=obs.facts)
    if not obs.present:
        return Decision(raised=False, fired=False, reason=f"no data: no {name} result yet ({obs.source})", **common)
    if obs.checked_at is None:
        return Decision(raised=False, fired=False, stale=True,
                        reason=f"stale: the {name} result has no check time ({obs.source})", **common)
    if not fresh(obs, now, cfg):
        return Decision(raised=False, fired=False, stale=True,
                        reason=f"stale: the {name} ran {_ago(now - obs.checked_at)} ago (max_age_minutes "
                               f"{cfg.max_age_minutes:g})", **common)
    if not obs.detected:
        return Decision(raised=False, fired=False, reason=f"not raised: {obs.verdict}", **common)
    until = cooldown_end(last, cfg)
    if last is not None and until is not None and now < until:
        return Decision(raised=True, fired=False, suppressed=True,
                        reason=f"suppressed: cooldown until {until.isoformat()} (last trigger {last.at.isoformat()}"
                               f", {'+'.join(last.signals)}); {obs.verdict}", **common)
    if new_impressions < cfg.min_impressions:
        since = "since the last trigger" if last is not None else "in the checked window"
        return Decision(raised=True, fired=False,
                        reason=f"too little traffic: {new_impressions} new impressions {since} < min_impressions "
                               f"{cfg.min_impressions}; {obs.verdict}", **common)
    return Decision(raised=True, fired=True, reason=f"fired: {obs.verdict}", **common)


def counted_window(observations: list[Observation], now: datetime,
                   cfg: SignalConfig) -> tuple[datetime | None, datetime | None]:
    """Without a previous trigger the traffic is counted over the fresh results' checked windows (their union's
    span, on the logs' clock); ``(None, None)`` when no fresh result has a window."""
    windows = [(o.window_start, o.window_end) for o in observations if fresh(o, now, cfg)
               and o.window_start is not None and o.window_end is not None]
    if not windows:
        return None, None
    return min(s for s, _ in windows if s is not None), max(e for _, e in windows if e is not None)
