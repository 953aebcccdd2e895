"""The off-request-path logs: batching, daily files, drops counted when the queue is full, close/flush."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recsys.serving.traffic import AssignmentLog, BackgroundLog, TrafficLog


def _lines(folder: Path, pattern: str) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(folder.glob(pattern)) for line in path.read_text().splitlines()]


def _predict(request_id: str, user_id: int = 7, variant: str = "champion", fallback: bool = False) -> dict[str, Any]:
    return {"request_id": request_id, "user_id": user_id, "variant": variant, "alias": "champion", "version": 3,
            "fallback": fallback, "items": [1, 2], "scores": [0.5, 0.1]}


class _Gated(BackgroundLog):
    """Entries are (ts, value); the writer blocks on ``gate`` once it holds an entry (to fill the queue)."""

    prefix = "gated"

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        super().__init__(folder, **kwargs)

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        self._offer((fields["ts"], fields["value"]))

    def rows(self, entry: tuple[Any, ...]) -> list[dict[str, Any]]:
        self.entered.set()
        assert self.gate.wait(10)
        if entry[1] == "bad":
            raise ValueError("unserialisable")
        return [{"value": entry[1]}]


def test_assignment_log_writes_every_predict_in_order(tmp_path: Path) -> None:
    log = AssignmentLog(tmp_path / "assignments", batch=7)
    for i in range(500):
        log("predict", _predict(f"r{i}", user_id=i, fallback=i % 2 == 1))
    log("shadow", {"request_id": "s", "overlap": 1.0})  # not an assignment
    log.close()
    lines = _lines(tmp_path / "assignments", "assignments-*.jsonl")
    assert [line["request_id"] for line in lines] == [f"r{i}" for i in range(500)]
    assert lines[3] == {"ts": lines[3]["ts"], "request_id": "r3", "user_id": 3, "variant": "champion",
                        "alias": "champion", "version": 3, "fallback": True, "items": [1, 2]}
    assert datetime.fromisoformat(lines[0]["ts"]).tzinfo is not None
    assert log.written == 500 and log.dropped == 0 and log.failed == 0


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    drops: list[int] = []
    log = _Gated(tmp_path, max_queue=2, on_drop=lambda: drops.append(1))
    log("x", {"ts": 0.0, "value": "a"})
    assert log.entered.wait(10)  # the writer holds "a" and waits: the queue is empty again
    for value in "bcde":
        log("x", {"ts": 0.0, "value": value})
    assert log.dropped == 2 and len(drops) == 2  # "b", "c" queued; "d", "e" dropped without blocking
    log.gate.set()
    log.close()
    assert [r["value"] for r in _lines(tmp_path, "gated-*.jsonl")] == ["a", "b", "c"]
    log("x", {"ts": 0.0, "value": "late"})  # after close: dropped and counted, never blocks
    assert log.dropped == 3 and len(drops) == 3 and log.written == 3


def test_a_bad_entry_is_skipped_and_days_get_their_own_file(tmp_path: Path) -> None:
    log = _Gated(tmp_path)
    log.gate.set()
    day1 = datetime(2024, 3, 1, 23, 59, tzinfo=UTC).timestamp()
    day2 = datetime(2024, 3, 2, 0, 1, tzinfo=UTC).timestamp()
    for ts, value in [(day1, "a"), (day1, "bad"), (day2, "b"), (day1, "c")]:
        log("x", {"ts": ts, "value": value})
    assert log.flush()
    assert [r["value"] for r in _lines(tmp_path, "gated-20240301.jsonl")] == ["a", "c"]
    assert [r["value"] for r in _lines(tmp_path, "gated-20240302.jsonl")] == ["b"]
    assert log.failed == 1 and log.written == 3
    log.close()
    log.close()  # idempotent


def test_traffic_log_samples_at_its_rate(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path, rate=0.25, seed=1)
    log.rows = lambda entry: [{"request_id": entry[1]["request_id"]}]  # type: ignore[method-assign]
    for i in range(2000):
        log("predict", _predict(f"r{i}"))
    log.close()
    written = _lines(tmp_path, "traffic-*.jsonl")
    assert 400 < log.sampled < 600 and len(written) == log.sampled and log.dropped == 0


@pytest.mark.parametrize("kwargs", [{"max_queue": 0}, {"batch": 0}])
def test_bad_sizes_are_rejected(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        AssignmentLog(tmp_path, **kwargs)
