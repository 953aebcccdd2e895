"""The champion week by week: its version and held-out NDCG@10 over the replay, from the gate's decision records.

Each run of the gate (:mod:`recsys.stages.gate`) writes one decision record: the challenger, the champion of the
time and the version evaluated for it, the window ``[W - H, W)`` (``W`` is the gate's "now",
``window.end_week``), every model's mean NDCG@10 on that window and what was done. One row per gated week ``W``:

- **champion before** is the record's own champion: the alias as the gate read it from MLflow, so it is right
  even when the alias moved by hand since the previous gate;
- **champion after** is the promoted version (the refit, when there was one) if the outcome is ``promoted``, else
  the champion before (``pending``: nothing moved yet; ``rejected by gate``: nothing moves);
- **champion NDCG@10** is champion-after's score on that week's window: the challenger's mean when it was promoted
  (a refit is trained on the window; its evaluated version's score stands for it, as in the gate), else the mean
  of the champion's evaluated model; None when the week had no champion or its score is not in the record;
- a week gated more than once (a rerun) keeps its last decision (by ``decided_at``) and counts the others.

The audit log is optional and only annotates: a promotion or rollback between two gates (a manual ``promote``, an
``approve`` of a pending version, a ``rollback``) is listed on the row of the next gate as ``moves_before``; the
previous gate's own auto-promotion is not. What a moved-by-hand champion scored is not known (no gate evaluated
it on that week), so no score is invented for it; the next gate scores it. Matching audit events to the gap
between two gates uses the timestamps, which is sound only when the kept decisions were made in week order (a
backfill); where a rerun broke that order the row's ``moves_before`` is None (unknown), not a guess.
``champion_moved`` (champion before differs from the previous row's champion after) needs no audit log.

Pure: records and audit events in, rows out; :func:`plot_timeline` draws them (matplotlib, Agg backend).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from recsys.registry.audit import CHAMPION_EVENTS, AuditEvent, AuditRecord
from recsys.schema import K

if TYPE_CHECKING:
    from matplotlib.axes import Axes

NDCG = f"ndcg@{K}"
PROMOTED = "promoted"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RecordVersion(_Loose):
    version: int
    as_of_week: int


class RecordChampion(RecordVersion):
    compared_version: int


class RecordWindow(_Loose):
    start_week: int
    end_week: int
    users: int


class RecordDecision(_Loose):
    verdict: str


class RecordRefit(_Loose):
    version: int


class DecisionRecord(_Loose):
    """The fields of a gate decision record (``GateReport`` JSON) the timeline reads; the rest is ignored."""

    model: str
    challenger: RecordVersion
    champion: RecordChampion | None
    best_generator: str
    window: RecordWindow
    means: dict[str, dict[str, float | None]]
    decision: RecordDecision
    decided_at: datetime
    refit: RecordRefit | None = None
    outcome: str

    @property
    def target(self) -> int:
        """The version the decision acted on: the refit when there was one, else the challenger."""
        return self.refit.version if self.refit is not None else self.challenger.version

    def ndcg(self, label: str) -> float | None:
        return self.means.get(label, {}).get(NDCG)


class TimelineRow(BaseModel):
    week: int = Field(description="the gate's 'now' W: the window is [window_start, W)")
    window_start: int
    users: int = Field(description="users in the held-out window")
    challenger_version: int
    challenger_as_of_week: int
    promoted_version: int | None = Field(description="what a promotion moved the alias to (the refit if any)")
    champion_before: int | None
    champion_evaluated: int | None = Field(description="the version evaluated for the champion before")
    outcome: str
    verdict: str
    champion_after: int | None
    champion_ndcg: float | None = Field(description="champion-after's NDCG@10 on this week's window")
    challenger_ndcg: float | None
    best_generator: str
    best_generator_ndcg: float | None
    reruns: int = Field(0, description="earlier decisions of this week superseded by this one")
    champion_moved: bool = Field(False, description="champion before differs from the previous row's after")
    moves_before: list[str] | None = Field(
        None, description="promotions/rollbacks since the previous gate (audit log); None: unknown")
    decided_at: datetime


class TimelineSummary(BaseModel):
    weeks_gated: int
    first_week: int | None
    last_week: int | None
    promotions: int
    reruns: int
    first_champion: int | None
    last_champion: int | None
    champion_versions: list[int] = Field(description="each champion once, in the order they took over")
    mean_champion_ndcg: float | None = Field(description="over the weeks with a known champion score")
    weeks_scored: int


def latest_per_week(records: Iterable[DecisionRecord]) -> list[tuple[DecisionRecord, int]]:
    """Each gated week's last decision (by ``decided_at``) and how many earlier ones it supersedes, by week."""
    by_week: dict[int, list[DecisionRecord]] = {}
    for rec in records:
        by_week.setdefault(rec.window.end_week, []).append(rec)
    out = []
    for week in sorted(by_week):
        recs = sorted(by_week[week], key=lambda r: r.decided_at)
        out.append((recs[-1], len(recs) - 1))
    return out


def build_timeline(records: Iterable[DecisionRecord],
                   audit: Sequence[AuditRecord] | None = None) -> list[TimelineRow]:
    """One row per gated week (see the module docstring); ``audit`` (the model's events, any order) annotates."""
    moves = sorted((r for r in audit or () if r.event in CHAMPION_EVENTS), key=lambda r: (r.ts, r.id))
    rows: list[TimelineRow] = []
    previous: DecisionRecord | None = None
    for rec, reruns in latest_per_week(records):
        champion = rec.champion
        promoted = rec.outcome == PROMOTED
        after = rec.target if promoted else (champion.version if champion else None)
        if promoted:
            score = rec.ndcg(f"v{rec.challenger.version}")
        else:
            score = rec.ndcg(f"v{champion.compared_version}") if champion else None
        before = champion.version if champion else None
        rows.append(TimelineRow(
            week=rec.window.end_week, window_start=rec.window.start_week, users=rec.window.users,
            challenger_version=rec.challenger.version, challenger_as_of_week=rec.challenger.as_of_week,
            promoted_version=rec.target if promoted else None, champion_before=before,
            champion_evaluated=champion.compared_version if champion else None, outcome=rec.outcome,
            verdict=rec.decision.verdict, champion_after=after, champion_ndcg=score,
            challenger_ndcg=rec.ndcg(f"v{rec.challenger.version}"), best_generator=rec.best_generator,
            best_generator_ndcg=rec.ndcg(rec.best_generator), reruns=reruns,
            champion_moved=bool(rows) and before != rows[-1].champion_after,
            moves_before=None if audit is None else _moves_between(moves, previous, rec),
            decided_at=rec.decided_at))
        previous = rec
    return rows


def _moves_between(moves: list[AuditRecord], previous: DecisionRecord | None,
                   rec: DecisionRecord) -> list[str] | None:
    """Champion moves after ``previous``'s decision and before ``rec``'s, without ``previous``'s own promotion."""
    if previous is not None and previous.decided_at >= rec.decided_at:
        return None  # a rerun out of week order: the gap between the two gates is not a time interval
    since = previous.decided_at if previous is not None else None
    found = [m for m in moves if (since is None or m.ts > since) and m.ts < rec.decided_at]
    if previous is not None and previous.outcome == PROMOTED:
        own = next((m for m in found if m.event is AuditEvent.PROMOTED and m.to_version == previous.target), None)
        found = [m for m in found if m is not own]
    return [_describe(m) for m in found]


def _describe(move: AuditRecord) -> str:
    verb = "rolled back" if move.event is AuditEvent.ROLLED_BACK else "promoted"
    source = "–" if move.from_version is None else f"v{move.from_version}"
    return f"{verb} {source} → v{move.to_version} by {move.actor}"


def summarize(rows: Sequence[TimelineRow]) -> TimelineSummary:
    champions = [r.champion_after for r in rows if r.champion_after is not None]
    order = list(dict.fromkeys(v for r in rows for v in (r.champion_before, r.champion_after) if v is not None))
    scores = [r.champion_ndcg for r in rows if r.champion_ndcg is not None]
    return TimelineSummary(
        weeks_gated=len(rows), first_week=rows[0].week if rows else None, last_week=rows[-1].week if rows else None,
        promotions=sum(r.outcome == PROMOTED for r in rows), reruns=sum(r.reruns for r in rows),
        first_champion=champions[0] if champions else None, last_champion=champions[-1] if champions else None,
        champion_versions=order, mean_champion_ndcg=sum(scores) / len(scores) if scores else None,
        weeks_scored=len(scores))


# -- tables ----------------------------------------------------------------------------------------------------
COLUMNS = ("week", "challenger_version", "challenger_as_of_week", "champion_before", "outcome", "champion_after",
           "champion_ndcg", "challenger_ndcg", "best_generator", "best_generator_ndcg", "users", "reruns")
"""The columns of the CSV and markdown tables, in order (the JSON has every field)."""


def _version(value: int | None) -> str:
    return "–" if value is None else f"v{value}"


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def table_cells(row: TimelineRow) -> list[str]:
    """One row as display cells (versions as ``vN``, scores to 4 decimals, an en dash when missing)."""
    return [str(row.week), f"v{row.challenger_version} (wk {row.challenger_as_of_week})",
            _version(row.champion_before), row.outcome, _version(row.champion_after), _score(row.champion_ndcg),
            _score(row.challenger_ndcg), f"{row.best_generator} {_score(row.best_generator_ndcg)}", str(row.users),
            str(row.reruns)]


TABLE_HEADERS = ("week", "challenger (trained to)", "champion before", "outcome", "champion after",
                 f"champion NDCG@{K}", f"challenger NDCG@{K}", f"best generator NDCG@{K}", "users", "reruns")


def csv_records(rows: Sequence[TimelineRow]) -> list[dict[str, Any]]:
    """The rows as flat dicts over :data:`COLUMNS` (None stays empty in a CSV)."""
    return [{c: getattr(r, c) for c in COLUMNS} for r in rows]


def markdown_table(rows: Sequence[TimelineRow]) -> str:
    """A GitHub-flavoured markdown table, one line per gated week."""
    lines = ["| " + " | ".join(TABLE_HEADERS) + " |",
             "|" + "|".join("---:" if h in ("week", "users", "reruns") or "NDCG" in h else "---"
                            for h in TABLE_HEADERS) + "|"]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# -- the plot --------------------------------------------------------------------------------------------------
_MARKERS = {PROMOTED: ("^", "tab:green", "challenger promoted"),
            "pending": ("o", "tab:orange", "challenger pending approval"),
            "rejected by gate": ("x", "tab:red", "challenger rejected")}


def plot_timeline(rows: Sequence[TimelineRow], path: Path, title: str) -> Path:
    """Champion NDCG@10 per week (a step line), challengers as points by outcome, the best generator dashed and
    the champion's version written where it changes; saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    weeks = [r.week for r in rows]
    nan = float("nan")
    champion = [nan if r.champion_ndcg is None else r.champion_ndcg for r in rows]
    # the champion of week W stays until the next gate: the last step is drawn one week on
    ax.step([*weeks, *(w + 1 for w in weeks[-1:])], [*champion, *champion[-1:]], where="post", color="tab:blue",
            linewidth=2, label=f"champion NDCG@{K}")
    best = [nan if r.best_generator_ndcg is None else r.best_generator_ndcg for r in rows]
    generators = sorted({r.best_generator for r in rows})
    ax.plot(weeks, best, linestyle="--", color="tab:gray", label=f"best single generator ({', '.join(generators)})")
    for outcome, (marker, color, label) in _MARKERS.items():
        points = [(r.week, r.challenger_ndcg) for r in rows if r.outcome == outcome and r.challenger_ndcg is not None]
        if points:
            ax.scatter([w for w, _ in points], [y for _, y in points], marker=marker, color=color, s=46, zorder=3,
                       label=label)
    _annotate_versions(ax, rows)
    ax.set_xlabel("replay week W (the gate scores the held-out weeks [W − H, W))")
    ax.set_ylabel(f"mean NDCG@{K} on the held-out window")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if weeks:
        ax.set_xlim(min(weeks) - 0.5, max(weeks) + 1.5)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)  # below the axes: it hides no point
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _annotate_versions(ax: Axes, rows: Sequence[TimelineRow]) -> None:
    shown: int | None = None
    for r in rows:
        if r.champion_after is None or r.champion_after == shown:
            continue
        shown = r.champion_after
        y = r.champion_ndcg if r.champion_ndcg is not None else r.challenger_ndcg
        if y is None:
            continue
        ax.annotate(f"v{shown}", (r.week, y), xytext=(4, 6), textcoords="offset points", ha="left",
                    fontsize=8, color="tab:blue", fontweight="bold")
