"""Live recommendation metrics: coverage, attributed CTR/conversion per version, the split's SRM test, the gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from recsys.experiments.attribution import Impression
from recsys.monitoring.live import LiveConfig, live_metrics, window_label
from recsys.monitoring.metrics import LiveGauges
from recsys.serving.feedback import FeedbackRecord

T0 = datetime(1998, 3, 1, 12, tzinfo=UTC)
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _imp(n: int, variant: str, version: int | None, items: tuple[int, ...], minutes: float) -> Impression:
    return Impression(T0 + timedelta(minutes=minutes), f"r{n}", 100 + n, variant, variant, version, False, items)


def _click(n: int, item: int, kind: str = "click", minutes: float = 1) -> FeedbackRecord:
    ts = T0 + timedelta(minutes=minutes)
    return FeedbackRecord(n, f"e{n}", f"r{n}", 100 + n, item, kind, None, ts, ts)  # type: ignore[arg-type]


def test_coverage_ctr_conversion_and_a_balanced_split() -> None:
    imps = [_imp(i, "champion" if i % 2 else "challenger", 3 if i % 2 else 4, (i % 5, 10 + i % 5), i * 0.5)
            for i in range(40)]
    events = [_click(1, 1), _click(3, 3, "watch", 2), _click(2, 2)]
    end = T0 + timedelta(minutes=60)  # every impression is past the 30-minute attribution window
    m = live_metrics(imps, events, end - timedelta(hours=1), end, catalog_items=100,
                     expected_shares={"champion": 0.5, "challenger": 0.5}, config=LiveConfig(),
                     last_retrain_at=None, checked_at=NOW)
    assert m.impressions == 40 and m.served_items == 10 and m.coverage == pytest.approx(0.10)
    rates = {(v.variant, v.version): v for v in m.variants}
    assert rates["champion", 3].impressions == 20 and rates["champion", 3].clicked == 1
    assert rates["champion", 3].converted == 1 and rates["champion", 3].conversion == pytest.approx(1 / 20)
    assert rates["challenger", 4].ctr == pytest.approx(1 / 20)
    assert m.shares == {"challenger": 0.5, "champion": 0.5}
    assert m.srm_ok is True and m.srm_p_value == pytest.approx(1.0)


def test_a_broken_split_of_users_fails_the_srm_test_and_one_variant_has_none() -> None:
    imps = [_imp(i, "champion" if i % 10 else "challenger", 1, (1,), i * 0.1) for i in range(400)]
    end = T0 + timedelta(minutes=41)
    m = live_metrics(imps, [], end - timedelta(hours=1), end, catalog_items=10,
                     expected_shares={"champion": 0.5, "challenger": 0.5}, config=LiveConfig(),
                     last_retrain_at=None, checked_at=NOW)
    assert m.srm_ok is False and m.srm_p_value is not None and m.srm_p_value < 1e-6
    # one heavy user's many answers are one unit: a balanced split of users passes whatever the answer counts
    heavy = [*(_imp(i, "champion" if i % 2 else "challenger", 1, (1,), i * 0.1) for i in range(40)),
             *(Impression(T0 + timedelta(minutes=5), f"h{i}", 7, "champion", "champion", 1, False, (2,))
               for i in range(300))]
    balanced = live_metrics(heavy, [], end - timedelta(hours=1), end, catalog_items=10,
                            expected_shares={"champion": 0.5, "challenger": 0.5}, config=LiveConfig(),
                            last_retrain_at=None, checked_at=NOW)
    assert balanced.assignments["champion"] == 320 and balanced.srm_ok is True
    single = live_metrics(imps, [], end - timedelta(hours=1), end, catalog_items=10,
                          expected_shares={"champion": 1.0}, config=LiveConfig(), last_retrain_at=None,
                          checked_at=NOW)
    assert single.srm_p_value is None and single.srm_ok is None


def test_impressions_younger_than_the_attribution_window_are_served_but_not_rated() -> None:
    imps = [_imp(1, "champion", 1, (1,), 0), _imp(2, "champion", 1, (2,), 50)]
    end = T0 + timedelta(minutes=60)
    m = live_metrics(imps, [_click(2, 2, minutes=55)], end - timedelta(hours=1), end, catalog_items=10,
                     expected_shares={}, config=LiveConfig(), last_retrain_at=None, checked_at=NOW)
    assert m.impressions == 2 and m.served_items == 2  # both shown
    assert [(v.impressions, v.clicked) for v in m.variants] == [(1, 0)]  # the young one may still get clicks


def test_only_the_window_counts_and_a_bad_catalog_size_is_refused() -> None:
    imps = [_imp(1, "champion", 1, (1, 2), 0), _imp(2, "champion", 1, (3,), 120)]
    end = T0 + timedelta(minutes=121)
    m = live_metrics(imps, [], end - timedelta(hours=1), end, catalog_items=3, expected_shares={},
                     config=LiveConfig(), last_retrain_at=None, checked_at=NOW)
    assert m.impressions == 1 and m.served_items == 1
    with pytest.raises(ValueError, match="catalog_items"):
        live_metrics(imps, [], T0, end, catalog_items=0, expected_shares={}, config=LiveConfig(),
                     last_retrain_at=None, checked_at=NOW)


@pytest.mark.parametrize(("minutes", "label"), [(60, "1h"), (30, "30m"), (1.5, "90s"), (2880, "2d")])
def test_window_labels(minutes: float, label: str) -> None:
    assert window_label(timedelta(minutes=minutes)) == label


def test_the_gauges_carry_the_result() -> None:
    imps = [_imp(i, "champion", 7, (i,), i) for i in range(10)]
    end = T0 + timedelta(minutes=40)
    retrain = datetime(2026, 11, 30, tzinfo=UTC)
    m = live_metrics(imps, [_click(2, 2, minutes=3)], end - timedelta(hours=1), end, catalog_items=20,
                     expected_shares={"champion": 1.0}, config=LiveConfig(), last_retrain_at=retrain,
                     checked_at=NOW)
    registry = CollectorRegistry()
    LiveGauges(registry).set(m.model_dump(mode="json"))
    value = registry.get_sample_value
    assert value("recsys_catalog_coverage", {"window": "1h"}) == pytest.approx(0.5)
    assert value("recsys_variant_ctr", {"window": "1h", "variant": "champion", "version": "7"}) == pytest.approx(0.1)
    assert value("recsys_variant_impressions", {"window": "1h", "variant": "champion", "version": "7"}) == 10
    assert value("recsys_assignment_share", {"window": "1h", "variant": "champion"}) == 1.0
    assert value("recsys_srm_p_value", {"window": "1h"}) is None  # one variant: no test
    assert value("recsys_last_retrain_timestamp_seconds") == retrain.timestamp()
