"""The notification interface: channels from the environment, the outbox file, isolation of a failing channel,
the templates, and the store's claims and dedup (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from recsys.notify import (
    CHANNELS,
    RUNBOOKS,
    Bases,
    Notification,
    NotificationStore,
    Notifier,
    OutboxChannel,
    build,
    channels,
    dispatch,
    register_channel,
    registry_hook,
    templates,
)
from recsys.settings import Settings


class Broken:
    name = "broken"

    def send(self, notification: Notification) -> None:
        raise ConnectionError("smtp down")


class Memory:
    name = "memory"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", var_dir=tmp_path / "var")


def test_outbox_appends_one_json_line_per_notification(settings: Settings) -> None:
    channel = OutboxChannel(settings.outbox_path)
    for i in range(3):
        channel.send(Notification(event="promoted", title=f"t{i}", details={"to_version": i}))
    lines = settings.outbox_path.read_text().splitlines()
    assert [json.loads(line)["details"]["to_version"] for line in lines] == [0, 1, 2]
    assert json.loads(lines[0])["ts"].endswith("Z") or "+00:00" in json.loads(lines[0])["ts"]


def test_default_channels_and_unknown_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_NOTIFY", raising=False)
    assert [c.name for c in channels(Settings(var_dir=tmp_path))] == ["outbox", "log"]
    monkeypatch.setenv("RECSYS_NOTIFY", "")
    assert channels(Settings(var_dir=tmp_path)) == []
    monkeypatch.setenv("RECSYS_NOTIFY", " outbox , pager")
    with pytest.raises(ValueError, match=r"unknown channel\(s\) \['pager'\]"):
        channels(Settings(var_dir=tmp_path))


def test_a_failing_channel_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    memory = Memory()
    with caplog.at_level(logging.WARNING, logger="recsys.notify"):
        failed = dispatch(Notification(event="rolled_back", title="x"), [Broken(), memory])
    assert failed == ["broken"] and len(memory.sent) == 1
    assert "via broken failed" in caplog.text


def test_registered_channels_are_selectable(settings: Settings) -> None:
    memory = Memory()
    register_channel("memory", lambda s: memory)
    try:
        [channel] = channels(settings, ["memory"])
        assert channel is memory
    finally:
        CHANNELS.pop("memory")


def test_registry_hook_turns_an_audit_record_into_a_notification() -> None:
    memory = Memory()
    registry_hook([memory])({"event": "rolled_back", "model_name": "content-ranker", "from_version": 3,
                             "to_version": 1, "actor": "alice", "reason": "canary alert"})
    [sent] = memory.sent
    assert sent.severity == "warning" and sent.title == "content-ranker: rolled back (v3 → v1)"
    assert "alice" in sent.body and "canary alert" in sent.body and sent.details["to_version"] == 1


def test_notification_rejects_unknown_severity() -> None:
    with pytest.raises(ValueError, match="severity"):
        Notification(event="x", title="y", severity="panic")  # type: ignore[arg-type]


# -- templates -----------------------------------------------------------------------------------------------
SAMPLES: dict[str, dict[str, object]] = {
    "promoted": {"from_version": 2, "actor": "alice", "reason": "ok", "run_id": "r1", "id": 7},
    "rolled_back": {"from_version": 3, "actor": "bob", "reason": "canary", "id": 8},
    "rejected": {"actor": "carol", "reason": "no", "id": 9},
    "gate_rejected": {"decision": {"verdict": "reject", "reasons": ["too slow"],
                                   "checks": {"ndcg": {"diff": 0.01, "ci_low": -0.002, "ci_high": 0.02,
                                                       "confidence": 0.9, "n": 50, "threshold": 0.0, "passed": True},
                                              "latency": {"passed": False}}}},
    "approval_requested": {"decision": {"verdict": "promote", "checks": {}}, "evaluated_version": 2},
    "batch_quarantined": {"week": 31, "rows": 10, "failed_checks": ["rating.range"], "quarantine_path": "q"},
    "drift_detected": {"share": 0.5, "share_threshold": 0.3, "drifted": []},
    "ctr_degraded": {"variant": "champion", "ctr": 0.02, "baseline_ctr": 0.04, "relative_drop": 0.5},
    "model_swap_failed": {"error": "sha256 mismatch", "serving": 2},
}


@pytest.mark.parametrize("event", sorted(SAMPLES))
def test_every_event_has_a_template_with_its_runbook(event: str) -> None:
    n = build(event, SAMPLES[event], model_name="m", version=3, bases=Bases(mlflow_ui="http://ui", runbooks="rb/"))
    assert n.title and n.dedup_key and n.dedup_key.startswith(f"{event}:m:3:")
    runbooks = [link.url for link in n.links if link.label == "Runbook"]
    assert runbooks == [f"rb/{RUNBOOKS[event]}.md"]
    assert all(f.value for f in n.facts)  # empty facts are left out


def test_the_numbers_are_in_the_facts() -> None:
    gate = build("gate_rejected", SAMPLES["gate_rejected"], model_name="m", version=4)
    facts = {f.label: f.value for f in gate.facts}
    assert facts["Delta"] == "+0.0100" and facts["90% CI"].startswith("[-0.0020, +0.0200] (margin +0.0000, n=50")
    assert facts["Failed checks"] == "latency" and gate.body == "- too slow"
    week = build("batch_quarantined", SAMPLES["batch_quarantined"])
    assert week.title == "week 31 batch quarantined: rating.range"
    assert week.dedup_key == "batch_quarantined:::week=31:rating.range"
    test = build("test", {"nonce": "n"})
    assert [link.label for link in test.links] == []  # a test notification has no runbook


def test_the_html_part_escapes_what_it_shows() -> None:
    n = build("model_swap_failed", {"error": "<script>alert(1)</script>"}, model_name="m", version=2)
    assert "<script>" not in templates.html(n) and "&lt;script&gt;" in templates.html(n)
    assert "<script>alert(1)</script>" in templates.text(n)


# -- the store: claims, dedup, an unreachable store -----------------------------------------------------------
def check_claims(store: NotificationStore) -> None:
    n = Notification(event="e", title="t", dedup_key="e:m:1:")
    claim, holder = store.add(n, ["a", "b"], dedup_seconds=60)
    assert claim and holder is None
    assert store.claimable() == []  # a sender holds them: no replay may take them
    assert store.claim(n.id, "a") is None
    assert store.settle(n.id, "a", claim, "pending", attempts=3, error="down")
    assert not store.settle(n.id, "a", claim, "sent", attempts=1)  # the claim was given back
    assert store.settle(n.id, "b", claim, "sent", attempts=1)
    assert store.claimable() == [(n.id, "a")]
    first, second = store.claim(n.id, "a"), store.claim(n.id, "a")
    assert first and second is None  # exactly one sender wins
    assert store.settle(n.id, "a", first, "sent", attempts=1)
    assert store.counts() == {"sent": 2}
    [row] = store.recent()
    assert {d.channel: (d.status, d.attempts) for d in row.deliveries} == {"a": ("sent", 4), "b": ("sent", 1)}
    # dedup: a repeat within the period is suppressed, one after it takes the key
    repeat = Notification(event="e", title="t", dedup_key="e:m:1:", ts=n.ts + timedelta(seconds=30))
    assert store.add(repeat, ["a"], dedup_seconds=60) == (None, n.id)
    later = Notification(event="e", title="t", dedup_key="e:m:1:", ts=n.ts + timedelta(seconds=61))
    claim_later, holder_later = store.add(later, ["a"], dedup_seconds=60)
    assert claim_later and holder_later is None
    assert store.get(later.id) == later


def test_store_claims_and_dedup_on_sqlite(tmp_path: Path) -> None:
    store = NotificationStore(f"sqlite:///{tmp_path / 'n' / 'notifications.db'}")
    assert not (tmp_path / "n").exists()  # nothing at construction
    try:
        check_claims(store)
    finally:
        store.close()


def test_store_claims_and_dedup_on_postgres(postgres_db: str) -> None:
    store = NotificationStore(postgres_db)
    try:
        check_claims(store)
    finally:
        store.close()


def test_a_dead_senders_claim_is_taken_over_after_the_lease(tmp_path: Path) -> None:
    from sqlalchemy import update

    from recsys.notify.store import LEASE, DeliveryRow

    store = NotificationStore(f"sqlite:///{tmp_path / 'n.db'}")
    n = Notification(event="e", title="t")
    store.add(n, ["a"])  # the sender dies here: the row stays `sending`
    assert store.claimable() == []
    with store.engine.begin() as conn:
        conn.execute(update(DeliveryRow).values(claimed_at=n.ts - LEASE - timedelta(seconds=1)))
    assert store.claimable() == [(n.id, "a")] and store.claim(n.id, "a") is not None
    store.close()


def test_an_unreachable_store_does_not_stop_delivery(tmp_path: Path) -> None:
    memory = Memory()
    sender = Notifier([memory], NotificationStore("postgresql+psycopg2://nobody@127.0.0.1:1/none"))
    out = sender.event("test", {"nonce": "x"})
    assert out is not None and not out.stored and [c.status for c in out.channels] == ["sent"]
    assert len(memory.sent) == 1


def test_a_channel_that_raises_anything_is_left_pending_and_the_others_are_sent(tmp_path: Path) -> None:
    memory = Memory()
    sender = Notifier([Broken(), memory], NotificationStore(f"sqlite:///{tmp_path / 'n.db'}"), retries=2,
                      backoff=0)
    out = sender.event("test", {"nonce": "y"})
    assert out is not None and {c.channel: (c.status, c.attempts) for c in out.channels} == {
        "broken": ("pending", 2), "memory": ("sent", 1)}
    assert "smtp down" in str(out.channels[0].error) and len(memory.sent) == 1


def test_sending_the_same_notification_twice_sends_it_once(tmp_path: Path) -> None:
    memory = Memory()
    sender = Notifier([memory], NotificationStore(f"sqlite:///{tmp_path / 'n.db'}"))
    n = sender.build("test", {"nonce": "z"})
    first, again = sender.send(n), sender.send(n)
    assert first.channels[0].status == "sent" and again.suppressed_by == n.id and len(memory.sent) == 1
