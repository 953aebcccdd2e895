"""The replay traffic simulator: the real MovieLens users of the weeks after a model's cut, asking a live service.

**Requests.** Every real rating of the replayed weeks is one visit, in the data's own order: just before user
``u`` rates item ``i`` at time ``t``, ``u`` asks ``POST /predict`` for ``n`` items with the request time ``t`` (the
simulated clock), the user's sign-up profile (the service ranks an unknown user from it: new users arrive as cold
starts), a context ``{"hour", "weekday"}`` of ``t`` (UTC), and ``exclude`` = the items ``u`` rated earlier in the
replay (what an app knows its user has watched; ``exclude_seen=False`` leaves it out).

**Feedback**, posted as it happens on the simulated clock, each event with a deterministic ``event_id``:

- *click*: after the answer, if ``i`` was shown to ``u`` within ``click_horizon`` before ``t`` (this answer
  included), the most recent impression showing it gets a click at ``t + 1 s``: users pick what they were shown
  and really watched. A rating of an item never shown is an organic watch and sends nothing.
- *watch* (a conversion): the same, at ``t + 2 s``, when the rating is at least ``watch_min_rating``.
- *dismiss* (``dismiss_rate`` > 0): with that probability per answer, its best-ranked item that ``u`` does not
  rate within ``click_horizon`` is dismissed at ``t + 3 s``.

**Drift injection** from time ``at`` (:class:`Injection`):

- ``user_mix``: only users of one segment (``age:18-24``, ``occupation:student``, ``gender:F``) visit, at the
  same times and volume: each visit of a known user outside the segment is made by a known user of the segment
  instead (a seeded, fixed stand-in per user), and a new user outside it signs up with the profile of a segment
  member. Served features of user and item change with who asks.
- ``context``: every request's context hour is shifted by ``hour_shift`` hours (a new market in another time
  zone); the answers do not change, the logged context does.
- ``item_shock``: a block of ``shock_items`` long-tail items (the least rated before the cut, seeded) is suddenly
  popular: each later rating is, with probability ``shock_share``, of a random item of the block (rated 5)
  instead of its real item. The requests stay the same; what users watch moves away from what the model shows,
  so attributed CTR falls.

**Determinism and bounds.** The plan (requests, contexts, injections) is a pure function of the data and the seed;
the outcomes depend only on the service's answers and a per-visit random stream, and a user's visits run one
after another (different users overlap), so a seed gives the same events whatever the timing. Pacing: at most
``rate`` requests per second and, with ``week_seconds`` > 0, one data week every ``week_seconds`` seconds; the run
stops at the end of the replayed weeks, after ``max_requests``, or after ``duration`` seconds, whichever comes
first. Every feedback POST is retried (tenacity, exponential backoff) until acknowledged; what still fails is
counted, never silently dropped.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys import schema as S
from recsys.data.replay import ReplayClock

logger = logging.getLogger(__name__)

SEGMENT_FIELDS = ("age", "occupation", "gender")
TALLY = {"click": "clicks", "watch": "watches", "dismiss": "dismisses"}


class Injection(BaseModel):
    """A drift injected into the replay from time ``at`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["user_mix", "context", "item_shock"]
    at: datetime = Field(description="simulated time from which the drift applies (UTC)")
    segment: str = Field("age:18-24", description="user_mix: field:value, or age:lo-hi (inclusive)")
    hour_shift: int = Field(12, ge=1, le=23, description="context: hours added to the context hour")
    shock_items: int = Field(20, ge=1, le=500, description="item_shock: size of the block of items")
    shock_share: float = Field(0.8, gt=0, le=1, description="item_shock: share of later ratings moved to it")

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("segment")
    @classmethod
    def _segment(cls, value: str) -> str:
        name, sep, spec = value.partition(":")
        if not sep or name not in SEGMENT_FIELDS or not spec:
            raise ValueError(f"segment must be one of {', '.join(f + ':VALUE' for f in SEGMENT_FIELDS)} "
                             "(age takes lo-hi)")
        if name == "age":
            lo, dash, hi = spec.partition("-")
            if not (lo.isdigit() and (not dash or hi.isdigit())):
                raise ValueError("segment age must be N or LO-HI")
        return value

    def in_segment(self, users: pd.DataFrame) -> pd.Series:
        """Which users (rows of the users table) belong to the segment."""
        name, _, spec = self.segment.partition(":")
        if name == "age":
            lo, _, hi = spec.partition("-")
            return users[S.AGE].between(int(lo), int(hi or lo))
        column = {"occupation": S.OCCUPATION, "gender": S.GENDER}[name]
        return users[column].astype(str) == spec


class SimulationConfig(BaseModel):
    """What to replay, how fast, and what happens in it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("http://127.0.0.1:3000", description="the service's base URL")
    from_week: int | None = Field(None, ge=0, description="first replayed week; default: the champion's cut")
    to_week: int | None = Field(None, ge=0, description="last replayed week (inclusive); default: the last")
    n: int = Field(10, ge=1, le=100, description="items asked per request")
    rate: float = Field(200.0, gt=0, description="most requests per second")
    week_seconds: float = Field(0.0, ge=0, description="one data week in this many seconds (0: as fast as rate)")
    duration: float = Field(600.0, gt=0, description="stop after this many seconds")
    max_requests: int | None = Field(None, ge=1, description="stop after this many requests")
    seed: int = 0
    click_horizon_days: float = Field(1.0, gt=0, description="a rating within this long after an impression "
                                                             "that showed the item is a click on it")
    watch_min_rating: int = Field(4, ge=1, le=5)
    dismiss_rate: float = Field(0.0, ge=0, le=1)
    exclude_seen: bool = Field(True, description="send what the user rated earlier in the replay as exclude (an "
                                                 "app would; the service then ranks in full, ~3 ms instead of a "
                                                 "lookup)")
    concurrency: int = Field(32, ge=1, le=1024, description="requests in flight at most")
    inject: Injection | None = None

    @model_validator(mode="after")
    def _weeks(self) -> SimulationConfig:
        if self.from_week is not None and self.to_week is not None and self.to_week < self.from_week:
            raise ValueError(f"to_week {self.to_week} is before from_week {self.from_week}")
        return self


class RetryableStatusError(Exception):
    """A 429 or 5xx answer: the POST is tried again."""


@dataclass(frozen=True)
class Visit:
    """One planned request and the real rating that follows it."""

    index: int
    ts: float
    user_id: int
    item_id: int
    rating: int
    profile: dict[str, Any]
    context: dict[str, int]
    exclude: tuple[int, ...]


@dataclass
class Plan:
    visits: list[Visit]
    start: float
    end: float
    future: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Per user: the (sorted) times and items of the ratings of the replay, after injection."""


def _profile(row: Any) -> dict[str, Any]:
    return {"age": int(row[S.AGE]), "gender": str(row[S.GENDER]), "occupation": str(row[S.OCCUPATION]),
            "zip": str(row[S.ZIP])[:16]}


def plan(interactions: pd.DataFrame, users: pd.DataFrame, clock: ReplayClock, cfg: SimulationConfig,
         from_week: int) -> Plan:
    """The visits of weeks ``from_week..to_week`` in real order, with the injection applied (pure, seeded)."""
    to_week = clock.n_weeks - 1 if cfg.to_week is None else min(cfg.to_week, clock.n_weeks - 1)
    start, end = clock.start(from_week), clock.start(to_week + 1)
    span = interactions[(interactions[S.TS] >= start) & (interactions[S.TS] < end)]
    span = span.sort_values([S.TS, S.USER, S.ITEM], kind="stable").reset_index(drop=True)
    profiles = {int(row[S.USER]): _profile(row) for row in users.to_dict("records")}
    inj = cfg.inject
    at = inj.at.timestamp() if inj is not None else float("inf")
    items = span[S.ITEM].to_numpy(np.int64).copy()
    ratings = span[S.RATING].to_numpy(np.int64).copy()
    ts = span[S.TS].to_numpy(np.int64)
    user_ids = span[S.USER].to_numpy(np.int64).copy()
    signed_up_as: dict[int, dict[str, Any]] = {}  # user_mix: new users' profiles from T
    if inj is not None and inj.kind == "user_mix":
        user_ids, signed_up_as = _mix(user_ids, ts, at, interactions[interactions[S.TS] < start], users, profiles,
                                      inj, cfg.seed)
    if inj is not None and inj.kind == "item_shock":
        before = interactions[interactions[S.TS] < start]
        counts = before[S.ITEM].value_counts()
        tail = sorted(int(i) for i in counts[counts <= counts.quantile(0.25)].index)
        rng = np.random.default_rng(cfg.seed + 1)
        block = rng.choice(np.array(tail, dtype=np.int64), size=min(inj.shock_items, len(tail)), replace=False)
        moved = (ts >= at) & (rng.random(len(span)) < inj.shock_share)
        items[moved] = rng.choice(block, size=int(moved.sum()))
        ratings[moved] = 5
    visits: list[Visit] = []
    seen: dict[int, list[int]] = {}
    future_ts: dict[int, list[int]] = {}
    future_items: dict[int, list[int]] = {}
    for row in range(len(span)):
        user, item, t = int(user_ids[row]), int(items[row]), int(ts[row])
        hour = datetime.fromtimestamp(t, UTC).hour
        if inj is not None and inj.kind == "context" and t >= at:
            hour = (hour + inj.hour_shift) % 24
        context = {"hour": hour, "weekday": datetime.fromtimestamp(t, UTC).weekday()}
        history = seen.setdefault(user, [])
        profile = signed_up_as[user] if t >= at and user in signed_up_as else profiles.get(user, {})
        visits.append(Visit(len(visits), float(t), user, item, int(ratings[row]), profile, context,
                            tuple(dict.fromkeys(history))[-1000:]))
        history.append(item)
        future_ts.setdefault(user, []).append(t)
        future_items.setdefault(user, []).append(item)
    future = {u: (np.asarray(future_ts[u], np.int64), np.asarray(future_items[u], np.int64)) for u in future_ts}
    if cfg.max_requests is not None:
        visits = visits[:cfg.max_requests]
    return Plan(visits, float(start), float(end), future)


def _mix(user_ids: np.ndarray, ts: np.ndarray, at: float, before: pd.DataFrame, users: pd.DataFrame,
         profiles: dict[int, dict[str, Any]], inj: Injection, seed: int
         ) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
    """``user_mix``: from ``at`` every visit is by a segment member (see the module docstring): the visits' users,
    and the profiles new users outside the segment sign up with from ``at``."""
    members = users.loc[inj.in_segment(users), S.USER].astype(int)
    if members.empty:
        raise ValueError(f"segment {inj.segment!r} has no users")
    known = set(before[S.USER].astype(int))
    known_members = sorted(set(members) & known)
    rng = np.random.default_rng(seed + 2)
    outsiders = sorted({int(u) for u, t in zip(user_ids, ts, strict=True) if t >= at} - set(members))
    stand_in = dict(zip(outsiders, rng.choice(np.array(known_members or list(members), dtype=np.int64),
                                              size=len(outsiders)).tolist(), strict=True))
    member_profiles = [profiles[int(m)] for m in members if int(m) in profiles]
    signed_up_as: dict[int, dict[str, Any]] = {}
    mixed = user_ids.copy()
    for row, (user, t) in enumerate(zip(user_ids, ts, strict=True)):
        user = int(user)
        if t < at or user not in stand_in:
            continue
        if user in known:
            mixed[row] = stand_in[user]
        else:  # a new user: same id (a cold start), a member's profile
            signed_up_as[user] = member_profiles[user % len(member_profiles)]
    return mixed, signed_up_as


class VariantTally(BaseModel):
    requests: int = 0
    clicks: int = 0
    watches: int = 0
    dismisses: int = 0


class SimulationResult(BaseModel):
    """What the run sent and what the service acknowledged."""

    url: str
    from_week: int
    to_week: int
    sim_start: datetime
    sim_end: datetime = Field(description="simulated time of the last visit sent")
    seed: int
    inject: Injection | None
    planned: int
    requests: int = Field(description="predict requests sent")
    answered: int
    failed_requests: int
    fallback: int = Field(description="answers ranked by the cold-start policy (unknown users)")
    feedback_sent: int
    feedback_acked: int
    feedback_failed: int = Field(description="events never acknowledged after every retry (should be 0)")
    duplicates: int = Field(description="events the store already held (a retried POST whose answer was lost)")
    by_variant: dict[str, VariantTally]
    seconds: float
    requests_per_second: float
    stopped_by: Literal["end", "max_requests", "duration"]


@dataclass
class _Run:
    cfg: SimulationConfig
    plan: Plan
    horizon: float
    result: dict[str, Any] = field(default_factory=dict)
    shown: dict[int, list[tuple[float, str, str, frozenset[int]]]] = field(default_factory=dict)
    """Per user: (ts, request_id, variant, items) of the impressions within the click horizon."""
    tallies: dict[str, VariantTally] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("requests", "answered", "failed", "fallback", "sent", "acked", "failed_fb", "dup"), 0))
    last_ts: float = 0.0


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def _post(session: Any, url: str, body: dict[str, Any], attempts: int) -> tuple[int, dict[str, Any]]:
    """POST with retries on connection errors, 429 and 5xx (exponential backoff); (status, json body)."""
    import aiohttp
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts), reraise=True,
                                       wait=wait_exponential(multiplier=0.05, max=2.0),
                                       retry=retry_if_exception_type((RetryableStatusError, aiohttp.ClientError,
                                                                      asyncio.TimeoutError))):
        with attempt:
            async with session.post(url, json=body) as resp:
                if resp.status == 429 or resp.status >= 500:
                    raise RetryableStatusError(f"{resp.status} from {url}")
                return resp.status, await resp.json(content_type=None)
    raise AssertionError("unreachable")  # pragma: no cover


async def _ask(run: _Run, session: Any, visit: Visit) -> dict[str, Any] | None:
    """The visit's ``POST /predict``; None when it failed (counted and logged)."""
    cfg, c = run.cfg, run.counts
    body: dict[str, Any] = {"user_id": visit.user_id, "n": cfg.n, "ts": _stamp(visit.ts), "context": visit.context}
    if cfg.exclude_seen and visit.exclude:
        body["exclude"] = list(visit.exclude)
    if visit.profile:
        body["profile"] = visit.profile
    c["requests"] += 1
    run.last_ts = max(run.last_ts, visit.ts)
    try:
        status, answer = await _post(session, f"{cfg.url}/predict", body, attempts=4)
    except Exception as exc:
        c["failed"] += 1
        logger.warning("predict for user %d failed: %s", visit.user_id, exc)
        return None
    if status != 200:
        c["failed"] += 1
        logger.warning("predict for user %d answered %d: %s", visit.user_id, status, answer)
        return None
    return answer


async def _react(run: _Run, session: Any, visit: Visit, answer: dict[str, Any]) -> None:
    """What the user does with the answer: click, watch, dismiss (see the module docstring)."""
    cfg, c = run.cfg, run.counts
    c["answered"] += 1
    c["fallback"] += bool(answer.get("fallback"))
    variant = answer["model"]["variant"]
    tally = run.tallies.setdefault(variant, VariantTally())
    tally.requests += 1
    items = [int(it["item_id"]) for it in answer["items"]]
    recent = [imp for imp in run.shown.get(visit.user_id, []) if imp[0] > visit.ts - run.horizon]
    recent.append((visit.ts, answer["request_id"], variant, frozenset(items)))
    run.shown[visit.user_id] = recent
    rng = random.Random(cfg.seed * 1_000_003 + visit.index)  # nosec B311: seeded simulation, not security
    events: list[tuple[str, str, str, int, float]] = []
    hit = next((imp for imp in reversed(recent) if visit.item_id in imp[3]), None)
    if hit is not None:
        events.append(("click", hit[1], hit[2], visit.item_id, visit.ts + 1))
        if visit.rating >= cfg.watch_min_rating:
            events.append(("watch", hit[1], hit[2], visit.item_id, visit.ts + 2))
    if cfg.dismiss_rate > 0 and rng.random() < cfg.dismiss_rate:
        times, rated = run.plan.future.get(visit.user_id, (np.empty(0, np.int64), np.empty(0, np.int64)))
        lo = bisect.bisect_left(times.tolist(), visit.ts)
        hi = bisect.bisect_right(times.tolist(), visit.ts + run.horizon)
        soon = set(rated[lo:hi].tolist())
        skipped = next((i for i in items if i not in soon), None)
        if skipped is not None:
            events.append(("dismiss", answer["request_id"], variant, skipped, visit.ts + 3))
    for kind, request_id, var, item, ts in events:
        event = {"event_id": f"sim{cfg.seed}-{visit.index}-{kind}", "request_id": request_id,
                 "user_id": visit.user_id, "item_id": item, "event": kind, "ts": _stamp(ts), "variant": var}
        c["sent"] += 1
        try:
            status, ack = await _post(session, f"{cfg.url}/feedback", event, attempts=12)
        except Exception as exc:
            c["failed_fb"] += 1
            logger.error("feedback %s never acknowledged: %s", event["event_id"], exc)
            continue
        if status != 202:
            c["failed_fb"] += 1
            logger.error("feedback %s refused (%d): %s", event["event_id"], status, ack)
            continue
        c["acked"] += 1
        c["dup"] += not ack.get("stored", True)
        var_tally = run.tallies.setdefault(var, VariantTally())
        setattr(var_tally, TALLY[kind], getattr(var_tally, TALLY[kind]) + 1)


async def _drive(run: _Run, track: Callable[[Iterable[Visit]], Iterable[Visit]]) -> str:
    import aiohttp

    cfg, visits = run.cfg, run.plan.visits
    chains: dict[int, asyncio.Task[None]] = {}
    slots = asyncio.Semaphore(cfg.concurrency)
    t0 = time.monotonic()
    first_ts = visits[0].ts if visits else run.plan.start
    week = 7 * 24 * 3600
    stopped = "end" if cfg.max_requests is None or len(visits) < cfg.max_requests else "max_requests"

    async def chained(prev: asyncio.Task[None] | None, visit: Visit) -> None:
        try:
            answer = await _ask(run, session, visit)  # requests overlap, even a user's own ...
            if prev is not None:
                await prev  # ... but a user's reactions run in visit order: a click looks at what was shown before
            if answer is not None:
                await _react(run, session, visit, answer)
        finally:
            slots.release()

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=cfg.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for k, visit in enumerate(track(visits)):
            due = k / cfg.rate
            if cfg.week_seconds > 0:
                due = max(due, (visit.ts - first_ts) / week * cfg.week_seconds)
            wait = due - (time.monotonic() - t0)
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() - t0 >= cfg.duration:
                stopped = "duration"
                break
            await slots.acquire()
            chains[visit.user_id] = asyncio.create_task(chained(chains.get(visit.user_id), visit))
        await asyncio.gather(*chains.values(), return_exceptions=True)
    return stopped


def simulate(interactions: pd.DataFrame, users: pd.DataFrame, clock: ReplayClock, cfg: SimulationConfig,
             from_week: int, track: Callable[[Iterable[Visit]], Iterable[Visit]] = iter) -> SimulationResult:
    """Plan the replay, play it against ``cfg.url``, and account for every request and feedback event."""
    the_plan = plan(interactions, users, clock, cfg, from_week)
    to_week = clock.n_weeks - 1 if cfg.to_week is None else min(cfg.to_week, clock.n_weeks - 1)
    run = _Run(cfg, the_plan, horizon=timedelta(days=cfg.click_horizon_days).total_seconds())
    t0 = time.perf_counter()
    stopped = asyncio.run(_drive(run, track))
    seconds = time.perf_counter() - t0
    c = run.counts
    return SimulationResult(
        url=cfg.url, from_week=from_week, to_week=to_week, sim_start=datetime.fromtimestamp(the_plan.start, UTC),
        sim_end=datetime.fromtimestamp(run.last_ts or the_plan.start, UTC), seed=cfg.seed, inject=cfg.inject,
        planned=len(the_plan.visits), requests=c["requests"], answered=c["answered"], failed_requests=c["failed"],
        fallback=c["fallback"], feedback_sent=c["sent"], feedback_acked=c["acked"], feedback_failed=c["failed_fb"],
        duplicates=c["dup"], by_variant=dict(sorted(run.tallies.items())), seconds=round(seconds, 3),
        requests_per_second=round(c["requests"] / seconds, 1) if seconds > 0 else 0.0,
        stopped_by=stopped)
