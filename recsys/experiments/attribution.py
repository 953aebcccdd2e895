"""Attribution: which feedback events count for CTR, joined to the impressions the service logged.

An *impression* is one answered ``/predict``: the assignment log (:class:`~recsys.serving.traffic.AssignmentLog`)
records its time, request id, user, variant, model version and the served item ids in rank order. A feedback event
is *attributed* when it joins an impression: the same ``request_id``, the same user, an item of the served list,
and a time within ``window`` after the impression. Everything else is stored by the service but counted apart,
by reason (no request id, an unknown request, an item that was not shown, early or late), so a client bug or a
slow feedback pipeline shows up instead of quietly moving CTR. Each (request, item, event) counts once.

Rates are list-level: an impression is *clicked* when at least one of its items got an attributed click, and
*converted* when one got an attributed watch; ``ctr = clicked impressions / impressions``. Each impression is then
one Bernoulli trial, which is what the A/B test compares. Per position, ``ctr@p`` is the share of impressions
with at least p items whose item at position p was clicked.

Only *mature* impressions are counted: those at least ``window`` older than the end of the period looked at, so
that clicks still on their way cannot read as a CTR drop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field

from recsys.serving.feedback import FeedbackRecord, FeedbackStore

UNATTRIBUTED_REASONS = ("no_request_id", "unknown_request", "wrong_user", "item_not_shown", "early", "late")


@dataclass(frozen=True)
class Impression:
    """One answered predict, as the assignment log wrote it."""

    ts: datetime
    request_id: str
    user_id: int
    variant: str
    alias: str
    version: int | None
    fallback: bool
    items: tuple[int, ...]


def _day(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y%m%d}"


def read_impressions(folder: Path, start: datetime | None = None, end: datetime | None = None) -> list[Impression]:
    """The impressions with ``start <= ts < end`` from ``<folder>/assignments-YYYYMMDD.jsonl``, in time order.

    Only the files of the days the bounds overlap are opened; a truncated last line (a writer killed mid-write)
    is skipped. Rows without ``items`` (logs written before impressions were recorded) are read as empty lists.
    """
    lo, hi = (None if start is None else _day(start)), (None if end is None else _day(end))
    out = []
    for path in sorted(folder.glob("assignments-*.jsonl")):
        day = path.stem.rsplit("-", 1)[-1]
        if (lo is not None and day < lo) or (hi is not None and day > hi):
            continue
        for row in _json_lines(path):
            ts = datetime.fromisoformat(row["ts"])
            if (start is not None and ts < start) or (end is not None and ts >= end):
                continue
            out.append(Impression(ts, row["request_id"], int(row["user_id"]), row["variant"], row["alias"],
                                  row["version"], bool(row["fallback"]), tuple(row.get("items") or ())))
    out.sort(key=lambda imp: (imp.ts, imp.request_id))
    return out


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line: the rows before it are whole


class VariantRates(BaseModel):
    """Attributed rates of one (variant, model version) over the impressions of a period."""

    variant: str
    version: int | None
    impressions: int
    clicked: int = Field(description="impressions with at least one attributed click")
    converted: int = Field(description="impressions with at least one attributed watch")
    clicks: int = Field(description="attributed clicks (one per request and item)")
    dismissed: int = Field(0, description="impressions with at least one attributed dismiss")
    users: int = Field(0, description="distinct users with an impression (the unit the router randomises)")
    design_effect: float = Field(1.0, description="variance of the CTR and conversion over clustered impressions "
                                                  "(a user's impressions move together) / the independent "
                                                  "impressions' variance; at least 1 (the larger of the two)")
    ctr: float | None = Field(description="clicked / impressions; null without impressions")
    conversion: float | None = Field(description="converted / impressions")
    shown_at: list[int] = Field(description="per position p = 1..: impressions that showed at least p items")
    clicks_at: list[int] = Field(description="per position p = 1..: attributed clicks on the item at p")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ctr_at(self) -> list[float | None]:
        """Per position: clicks at p / impressions showing p items."""
        return [c / s if s else None for c, s in zip(self.clicks_at, self.shown_at, strict=True)]


class Attribution(BaseModel):
    """Attributed CTR and conversion per variant and version, with the events that could not be attributed."""

    start: datetime | None
    end: datetime | None
    window_seconds: float
    impressions: int
    events: int = Field(description="feedback events looked at (stored in the period, plus the window after it)")
    attributed: int
    unattributed: dict[str, int] = Field(description="events counted apart, by reason")
    rates: list[VariantRates] = Field(description="per (variant, model version)")
    variants: list[VariantRates] = Field(description="per variant, over all its versions (version null)")

    def by_variant(self) -> dict[str, VariantRates]:
        """One row per variant over all its versions (what the A/B analysis compares)."""
        return {row.variant: row for row in self.variants}


@dataclass
class _Tally:
    impressions: int = 0
    clicked: int = 0
    converted: int = 0
    dismissed: int = 0
    clicks: int = 0
    shown_at: list[int] = field(default_factory=list)
    clicks_at: list[int] = field(default_factory=list)
    per_user: dict[int, list[int]] = field(default_factory=dict)
    """user -> [impressions, clicked, converted]"""

    def _grow(self, n: int) -> None:
        while len(self.shown_at) < n:
            self.shown_at.append(0)
            self.clicks_at.append(0)

    def add_impression(self, imp: Impression, kinds: dict[int, set[str]]) -> None:
        self.impressions += 1
        self._grow(len(imp.items))
        for pos in range(len(imp.items)):
            self.shown_at[pos] += 1
        positions = [pos for pos, item in enumerate(imp.items) if "click" in kinds.get(item, ())]
        for pos in positions:
            self.clicks_at[pos] += 1
        converted = any("watch" in k for k in kinds.values())
        self.clicks += len(positions)
        self.clicked += bool(positions)
        self.converted += converted
        self.dismissed += any("dismiss" in k for k in kinds.values())
        mine = self.per_user.setdefault(imp.user_id, [0, 0, 0])
        mine[0] += 1
        mine[1] += bool(positions)
        mine[2] += converted

    def rates(self, variant: str, version: int | None) -> VariantRates:
        n = self.impressions
        return VariantRates(
            variant=variant, version=version, impressions=n, clicked=self.clicked, converted=self.converted,
            clicks=self.clicks, dismissed=self.dismissed, users=len(self.per_user),
            design_effect=max(design_effect(self.per_user, 1), design_effect(self.per_user, 2)),
            ctr=self.clicked / n if n else None, conversion=self.converted / n if n else None,
            shown_at=list(self.shown_at), clicks_at=list(self.clicks_at))


def design_effect(per_user: dict[int, list[int]], column: int) -> float:
    """Kish's design effect of a ratio metric (successes / impressions) over users, by the delta method.

    A user's impressions are not independent trials (the same person, the same taste, often the same list), so
    the binomial variance ``r (1 - r) / n`` understates the rate's variance. The delta method gives the variance of
    ``r = sum(s_u) / sum(n_u)`` over independent users: ``(var(s) - 2 r cov(s, n) + r^2 var(n)) / (U mean(n)^2)``
    (Deng et al., "Applying the delta method in metric analytics", KDD 2018). Their ratio is the factor by which
    the impressions count as fewer independent trials; it is floored at 1 (never more confident than binomial).
    """
    import numpy as np

    if len(per_user) < 2:
        return 1.0
    counts = np.array(list(per_user.values()), dtype=float)
    n, succ = counts[:, 0], counts[:, column]
    total, users = n.sum(), len(n)
    r = succ.sum() / total
    if r <= 0 or r >= 1:
        return 1.0
    cov = np.cov(succ, n, ddof=1)
    delta = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (users * n.mean() ** 2)
    return float(max(1.0, delta / (r * (1 - r) / total)))


def attribute(impressions: Iterable[Impression], events: Iterable[FeedbackRecord], window: timedelta,
              start: datetime | None = None, end: datetime | None = None) -> Attribution:
    """Join events to impressions (see the module docstring).

    Every impression given can be joined, but only those with ``start <= ts < end - window`` are counted in the
    rates: older ones (a look-back, so that an event early in the period finds its impression) belong to an
    earlier period, younger ones may still get clicks.
    """
    mature_end = None if end is None else end - window
    by_request: dict[str, Impression] = {}
    counted: list[Impression] = []
    for imp in impressions:
        by_request[imp.request_id] = imp
        if (start is None or imp.ts >= start) and (mature_end is None or imp.ts < mature_end):
            counted.append(imp)
    unattributed = dict.fromkeys(UNATTRIBUTED_REASONS, 0)
    kinds: dict[str, dict[int, set[str]]] = {}
    n_events = attributed = 0
    for ev in events:
        n_events += 1
        reason = _reason(ev, by_request.get(ev.request_id) if ev.request_id else None, window)
        if reason is not None:
            unattributed[reason] += 1
            continue
        assert ev.request_id is not None
        seen = kinds.setdefault(ev.request_id, {}).setdefault(ev.item_id, set())
        if ev.event not in seen:
            seen.add(ev.event)
            attributed += 1
    tallies: dict[tuple[str, int | None], _Tally] = {}
    per_variant: dict[str, _Tally] = {}
    for imp in counted:
        got = kinds.get(imp.request_id, {})
        tallies.setdefault((imp.variant, imp.version), _Tally()).add_impression(imp, got)
        per_variant.setdefault(imp.variant, _Tally()).add_impression(imp, got)
    rates = [t.rates(v, ver) for (v, ver), t in sorted(tallies.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))]
    return Attribution(start=start, end=end, window_seconds=window.total_seconds(), impressions=len(counted),
                       events=n_events, attributed=attributed, unattributed=unattributed, rates=rates,
                       variants=[t.rates(v, None) for v, t in sorted(per_variant.items())])


def _reason(ev: FeedbackRecord, imp: Impression | None, window: timedelta) -> str | None:
    """Why an event cannot be attributed to its impression, or None when it can."""
    if ev.request_id is None:
        return "no_request_id"
    if imp is None:
        return "unknown_request"
    if ev.user_id != imp.user_id:
        return "wrong_user"
    if ev.item_id not in imp.items:
        return "item_not_shown"
    if ev.ts < imp.ts:
        return "early"
    if ev.ts - imp.ts > window:
        return "late"
    return None


def attribute_logs(assignments: Path, store: FeedbackStore, window: timedelta, start: datetime | None = None,
                   end: datetime | None = None) -> Attribution:
    """:func:`attribute` over the assignment log folder and the feedback store for ``[start, end)``.

    Events are read from ``start`` to ``end``; impressions from ``start - window`` (the look-back that lets an
    event early in the period find an impression just before it).
    """
    lookback = None if start is None else start - window
    return attribute(read_impressions(assignments, lookback, end), store.between(start, end), window, start, end)
