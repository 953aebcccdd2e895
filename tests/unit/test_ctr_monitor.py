"""The CTR check: a version's window against its own first impressions, with a minimum and a test."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recsys.experiments.attribution import Impression
from recsys.monitoring.ctr import CtrConfig, check_ctr
from recsys.serving.feedback import FeedbackRecord

T0 = datetime(1998, 4, 1, tzinfo=UTC)
CFG = CtrConfig(baseline_impressions=500, min_impressions=300, max_relative_drop=0.3, alpha=0.01)


def _traffic(rates: list[tuple[int, float]], version: int = 1, seed: int = 0) -> tuple[list[Impression],
                                                                                         list[FeedbackRecord]]:
    """``(count, ctr)`` blocks of impressions one minute apart, each clicked with probability ``ctr``."""
    rng = random.Random(seed)
    imps, events, k = [], [], 0
    for count, ctr in rates:
        for _ in range(count):
            ts = T0 + timedelta(minutes=k)
            imps.append(Impression(ts, f"r{version}-{k}", k, "champion", "champion", version, False, (1, 2, 3)))
            if rng.random() < ctr:
                events.append(FeedbackRecord(k, f"e{version}-{k}", f"r{version}-{k}", k, 2, "click", "champion",
                                             ts + timedelta(seconds=5), ts))
            k += 1
    return imps, events


def _window(imps: list[Impression], n: int) -> tuple[datetime, datetime]:
    return imps[-n].ts, imps[-1].ts + CFG.attribution_window + timedelta(minutes=1)


def test_a_steady_ctr_is_ok_and_a_halved_one_is_degraded() -> None:
    steady, ev = _traffic([(500, 0.1), (1000, 0.1)])
    (check,) = check_ctr(steady, ev, *_window(steady, 1000), CFG).versions
    assert check.status == "ok" and check.baseline_impressions == 500 and check.impressions == 1000
    halved, ev = _traffic([(500, 0.1), (1000, 0.05)])
    report = check_ctr(halved, ev, *_window(halved, 1000), CFG)
    (check,) = report.versions
    assert report.performance_degraded and check.status == "degraded"
    assert check.relative_drop is not None and check.relative_drop > 0.3 and check.p_value is not None


def test_too_few_impressions_or_no_baseline_give_no_verdict() -> None:
    imps, ev = _traffic([(500, 0.1), (100, 0.0)])
    report = check_ctr(imps, ev, *_window(imps, 100), CFG)
    assert report.versions[0].status == "insufficient_data" and not report.performance_degraded
    young, ev = _traffic([(200, 0.1)])
    assert check_ctr(young, ev, *_window(young, 100), CFG).versions[0].status == "insufficient_data"


def test_a_drop_within_the_noise_is_not_degraded() -> None:
    imps, ev = _traffic([(500, 0.1), (300, 0.07)], seed=4)  # a 30 % drop observed on 300 impressions
    (check,) = check_ctr(imps, ev, *_window(imps, 300), CFG).versions
    assert check.relative_drop is not None and check.relative_drop >= CFG.max_relative_drop
    assert check.p_value is not None and check.p_value > CFG.alpha and check.status == "ok"
    alone = CFG.model_copy(update={"alpha": 1.0})  # acting on the drop alone
    assert check_ctr(imps, ev, *_window(imps, 300), alone).versions[0].status == "degraded"


def test_immature_impressions_are_left_out() -> None:
    imps, ev = _traffic([(500, 0.1), (400, 0.1)])
    end = imps[-1].ts + timedelta(minutes=1)  # the last hour of impressions may still get clicks
    (check,) = check_ctr(imps, ev, imps[-400].ts, end, CFG).versions
    assert check.impressions == 400 - 60


def test_the_stage_notifies_a_degraded_version_once_per_dedup_period(tmp_path: Path) -> None:
    """``monitor_ctr`` over real files: the assignment log and the feedback store; the drop is notified with its
    numbers, and the same check again (a monitor running every few minutes) is suppressed, not sent twice."""
    from recsys.serving.feedback import FeedbackEvent, FeedbackStore
    from recsys.settings import ServingSettings
    from recsys.stages.monitor import CtrParams, monitor_ctr

    imps, events = _traffic([(500, 0.1), (1000, 0.05)], version=3)
    settings = ServingSettings(var_dir=tmp_path / "var", notify=["outbox"])
    folder = settings.assignment_path
    folder.mkdir(parents=True)
    with (folder / f"assignments-{T0:%Y%m%d}.jsonl").open("w") as fh:
        for imp in imps:
            fh.write(json.dumps({"ts": imp.ts.isoformat(), "request_id": imp.request_id, "user_id": imp.user_id,
                                 "variant": imp.variant, "alias": imp.alias, "version": imp.version,
                                 "fallback": imp.fallback, "items": list(imp.items)}) + "\n")
    store = FeedbackStore(settings.feedback_db_url)
    for ev in events:
        store.record(FeedbackEvent(event_id=ev.event_id, request_id=ev.request_id, user_id=ev.user_id,
                                   item_id=ev.item_id, event=ev.event, ts=ev.ts, variant=ev.variant))
    store.close()
    start, end = _window(imps, 1000)
    params = CtrParams(since=start, until=end, config=CFG)
    first, again = monitor_ctr(settings, params), monitor_ctr(settings, params)
    assert first.performance_degraded and again.performance_degraded
    [note] = [json.loads(line) for line in settings.outbox_path.read_text().splitlines()]
    (check,) = first.report.versions
    facts = {f["label"]: f["value"] for f in note["facts"]}
    assert note["event"] == "ctr_degraded" and note["version"] == 3 and note["severity"] == "warning"
    assert facts["CTR"] == f"{check.ctr:.1%}" and facts["Baseline CTR"] == f"{check.baseline_ctr:.1%}"
    assert facts["Relative drop"] == f"{check.relative_drop:.1%}" and facts["Variant / version"] == "champion / v3"
    from recsys.notify import NotificationStore

    stored = NotificationStore(settings.notify_db_url).recent()
    assert [n.suppressed_by for n in stored] == [note["id"], None]  # the repeat is recorded as suppressed
