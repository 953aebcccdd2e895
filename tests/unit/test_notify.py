"""The notification interface: channels from the environment, the outbox file, isolation of a failing channel."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from recsys.notify import (
    CHANNELS,
    Notification,
    OutboxChannel,
    channels,
    dispatch,
    register_channel,
    registry_hook,
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
