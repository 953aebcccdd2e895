"""Attribution: events join impressions on request, user, item and window; the rest is counted apart, by reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from recsys.experiments.attribution import Impression, attribute, attribute_logs, read_impressions
from recsys.serving.feedback import FeedbackEvent, FeedbackRecord, FeedbackStore

T0 = datetime(1998, 4, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _imp(rid: str, user: int, items: tuple[int, ...], minutes: float = 0, variant: str = "champion",
         version: int | None = 1) -> Impression:
    return Impression(T0 + timedelta(minutes=minutes), rid, user, variant, variant, version, False, items)


def _ev(n: int, rid: str | None, user: int, item: int, kind: str = "click", minutes: float = 1) -> FeedbackRecord:
    ts = T0 + timedelta(minutes=minutes)
    return FeedbackRecord(n, f"e{n}", rid, user, item, kind, None, ts, ts)  # type: ignore[arg-type]


def test_only_events_that_join_an_impression_count() -> None:
    imps = [_imp("a", 1, (10, 11, 12)), _imp("b", 2, (20, 21)), _imp("c", 3, (30,))]
    events = [
        _ev(1, "a", 1, 11), _ev(2, "a", 1, 11),  # the same click twice counts once
        _ev(3, "a", 1, 11, "watch"),
        _ev(4, None, 2, 20), _ev(5, "zz", 2, 20), _ev(6, "b", 9, 20), _ev(7, "b", 2, 99),
        _ev(8, "b", 2, 21, minutes=-5), _ev(9, "c", 3, 30, minutes=61),
    ]
    result = attribute(imps, events, HOUR)
    assert result.attributed == 2 and result.events == 9
    assert result.unattributed == {"no_request_id": 1, "unknown_request": 1, "wrong_user": 1, "item_not_shown": 1,
                                   "early": 1, "late": 1}
    (row,) = result.rates
    assert (row.impressions, row.clicked, row.converted, row.clicks) == (3, 1, 1, 1)
    assert row.ctr == 1 / 3 and row.conversion == 1 / 3
    assert row.shown_at == [3, 2, 1] and row.clicks_at == [0, 1, 0]
    assert row.ctr_at == [0.0, 0.5, 0.0]
    assert json.loads(result.model_dump_json())["rates"][0]["ctr_at"] == [0.0, 0.5, 0.0]


def test_rates_split_by_variant_and_version_and_sum_per_variant() -> None:
    imps = [_imp("a", 1, (1, 2), version=1), _imp("b", 2, (1, 2), version=2), _imp("c", 3, (1, 2), variant="challenger",
                                                                                   version=3)]
    result = attribute(imps, [_ev(1, "a", 1, 2), _ev(2, "c", 3, 1)], HOUR)
    assert [(r.variant, r.version, r.clicked) for r in result.rates] == [
        ("challenger", 3, 1), ("champion", 1, 1), ("champion", 2, 0)]
    per_variant = result.by_variant()
    assert per_variant["champion"].impressions == 2 and per_variant["champion"].ctr == 0.5
    assert per_variant["champion"].clicks_at == [0, 1] and per_variant["challenger"].ctr == 1.0


def test_immature_and_look_back_impressions_join_but_do_not_count() -> None:
    end = T0 + timedelta(minutes=100)
    imps = [_imp("old", 1, (5,), minutes=-10), _imp("a", 2, (5,), minutes=10), _imp("young", 3, (5,), minutes=70)]
    events = [_ev(1, "old", 1, 5, minutes=-5), _ev(2, "a", 2, 5, minutes=11), _ev(3, "young", 3, 5, minutes=71)]
    result = attribute(imps, events, HOUR, start=T0, end=end)
    assert result.attributed == 3  # every event found its impression ...
    assert result.impressions == 1 and result.rates[0].clicked == 1  # ... but only "a" is this period's and mature


def test_reads_the_service_logs_and_the_store(tmp_path: Path) -> None:
    folder = tmp_path / "assignments"
    folder.mkdir()
    rows = [{"ts": (T0 + timedelta(days=d)).isoformat(), "request_id": f"r{d}", "user_id": d, "variant": "champion",
             "alias": "champion", "version": 4, "fallback": False, "items": [100 + d, 200]} for d in range(3)]
    for row in rows:
        with (folder / f"assignments-{datetime.fromisoformat(row['ts']):%Y%m%d}.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    (folder / "assignments-19980402.jsonl").open("a").write('{"ts": "1998-04-02T1')  # a torn last line
    assert [i.request_id for i in read_impressions(folder, T0 + timedelta(hours=1))] == ["r1", "r2"]
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    for d in range(3):
        store.record(FeedbackEvent(event_id=f"e{d}", request_id=f"r{d}", user_id=d, item_id=200, event="click",
                                   ts=T0 + timedelta(days=d, minutes=2)))
    result = attribute_logs(folder, store, HOUR, start=T0, end=T0 + timedelta(days=2))
    assert result.impressions == 2 and result.attributed == 2 and result.rates[0].clicks_at == [0, 2]
    store.close()


def test_the_design_effect_is_one_for_independent_trials_and_grows_with_clustering() -> None:
    from recsys.experiments.attribution import design_effect

    rng = np.random.default_rng(0)
    single = {u: [1, int(rng.random() < 0.1), 0] for u in range(5000)}  # one impression per user
    assert design_effect(single, 1) == pytest.approx(1.0, abs=0.1)
    all_or_nothing = {u: [20, 20 * int(rng.random() < 0.1), 0] for u in range(2000)}  # a user clicks all or none
    assert design_effect(all_or_nothing, 1) == pytest.approx(20, rel=0.1)
    assert design_effect({1: [5, 1, 0]}, 1) == 1.0 and design_effect({1: [5, 0, 0], 2: [3, 0, 0]}, 1) == 1.0


def test_clustered_a_a_tests_keep_their_false_positive_rate_only_with_the_design_effect() -> None:
    """Users with their own CTR and many impressions each: the impression-level z-test, taking every impression
    as independent, rejects a true null far too often; divided by the design effect it holds alpha."""
    from recsys.experiments.ab import VariantCounts, compare
    from recsys.experiments.attribution import design_effect

    rng = np.random.default_rng(11)
    sims, users, rejected_plain, rejected_adjusted = 1000, 150, 0, 0
    for _ in range(sims):
        arms = []
        for _arm in range(2):
            ctr = rng.beta(0.8, 9.2, users)  # mean 0.08, very different users
            n = 1 + rng.poisson(15, users)
            clicks = rng.binomial(n, ctr)
            arms.append({u: [int(n[u]), int(clicks[u]), 0] for u in range(users)})
        plain, adjusted = [], []
        for name, arm in zip(("champion", "challenger"), arms, strict=True):
            n_sum, c_sum = sum(v[0] for v in arm.values()), sum(v[1] for v in arm.values())
            deff = design_effect(arm, 1)
            plain.append(VariantCounts(variant=name, impressions=n_sum, clicks=c_sum))
            adjusted.append(VariantCounts(variant=name, impressions=round(n_sum / deff), clicks=round(c_sum / deff)))
        rejected_plain += compare(*plain).significant
        rejected_adjusted += compare(*adjusted).significant
    plain_rate, adjusted_rate = rejected_plain / sims, rejected_adjusted / sims
    print(f"clustered A/A: impression-level FPR {plain_rate:.1%}, design-effect adjusted {adjusted_rate:.1%}")
    assert plain_rate > 0.15, plain_rate
    assert 0.03 <= adjusted_rate <= 0.07, adjusted_rate
