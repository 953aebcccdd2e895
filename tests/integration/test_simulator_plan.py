"""The simulator's plan on the real data: real users in real order, and what each drift injection changes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from recsys.data.load import load_movielens
from recsys.data.replay import ReplayClock
from recsys.experiments.simulator import Injection, SimulationConfig, plan


@pytest.fixture(scope="module")
def data(movielens: Path) -> tuple[object, ReplayClock]:
    ml = load_movielens(movielens)
    return ml, ReplayClock.from_interactions(ml.interactions)


def _plan(data: tuple[object, ReplayClock], inject: Injection | None = None, **kw: object):  # type: ignore[no-untyped-def]
    ml, clock = data
    cfg = SimulationConfig(inject=inject, **kw)  # type: ignore[arg-type]
    return plan(ml.interactions, ml.users, clock, cfg, from_week=28)  # type: ignore[attr-defined]


AT = datetime(1998, 4, 13, tzinfo=UTC)


def test_the_visits_are_the_real_ratings_in_order(data: tuple[object, ReplayClock]) -> None:
    ml, clock = data
    p = _plan(data)
    span = ml.interactions[ml.interactions["timestamp"] >= clock.start(28)]  # type: ignore[attr-defined]
    assert len(p.visits) == len(span)
    assert [v.ts for v in p.visits] == sorted(v.ts for v in p.visits)
    assert {v.user_id for v in p.visits} == set(span["user_id"])
    first = p.visits[0]
    assert first.profile.keys() == {"age", "gender", "occupation", "zip"} and first.exclude == ()
    later = next(v for v in p.visits if v.user_id == first.user_id and v.index > first.index)
    assert first.item_id in later.exclude  # what the user watched before is excluded
    assert {v.context["hour"] for v in p.visits} <= set(range(24))
    assert _plan(data, max_requests=50).visits == p.visits[:50]


def test_user_mix_makes_every_later_visit_a_segment_member(data: tuple[object, ReplayClock]) -> None:
    ml, clock = data
    base = _plan(data)
    shifted = _plan(data, Injection(kind="user_mix", at=AT, segment="occupation:student"))
    assert len(shifted.visits) == len(base.visits)  # the same times and volume
    users = ml.users.set_index("user_id")  # type: ignore[attr-defined]
    known = set(ml.interactions.loc[ml.interactions["timestamp"] < clock.start(28), "user_id"])  # type: ignore[attr-defined]
    for b, s in zip(base.visits, shifted.visits, strict=True):
        if b.ts < AT.timestamp():
            assert s == b  # nothing changes before T
        else:
            assert s.profile["occupation"] == "student" and (s.ts, s.item_id) == (b.ts, b.item_id)
            if s.user_id in known:
                assert users.loc[s.user_id, "occupation"] == "student"
            else:
                assert s.user_id == b.user_id  # a new user stays a cold start, with a student's profile


def test_context_shift_moves_only_the_hour_after_the_injection(data: tuple[object, ReplayClock]) -> None:
    base = _plan(data)
    shifted = _plan(data, Injection(kind="context", at=AT, hour_shift=12))
    for b, s in zip(base.visits, shifted.visits, strict=True):
        if b.ts < AT.timestamp():
            assert s == b
        else:
            assert s.context["hour"] == (b.context["hour"] + 12) % 24 and s.item_id == b.item_id


def test_item_shock_moves_ratings_to_a_long_tail_block(data: tuple[object, ReplayClock]) -> None:
    ml, clock = data
    base = _plan(data)
    shocked = _plan(data, Injection(kind="item_shock", at=AT, shock_items=20, shock_share=0.8))
    moved = [(b, s) for b, s in zip(base.visits, shocked.visits, strict=True) if b.item_id != s.item_id]
    assert all(b.ts >= AT.timestamp() for b, _ in moved)
    after = sum(b.ts >= AT.timestamp() for b in base.visits)
    assert 0.7 * after < len(moved) <= after
    block = {s.item_id for _, s in moved}
    assert len(block) <= 20 and all(s.rating == 5 for _, s in moved)
    before = ml.interactions[ml.interactions["timestamp"] < clock.start(28)]  # type: ignore[attr-defined]
    counts = before["item_id"].value_counts()
    assert np.median([counts.get(i, 0) for i in block]) <= counts.quantile(0.25)  # unpopular before the cut
    assert _plan(data, Injection(kind="item_shock", at=AT)).visits == shocked.visits  # seeded


def test_bad_segments_are_refused() -> None:
    for segment in ("age", "shoe:9", "age:old", "occupation:"):
        with pytest.raises(ValueError, match="segment"):
            Injection(kind="user_mix", at=AT, segment=segment)
