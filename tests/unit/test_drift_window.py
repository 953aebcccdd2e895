"""The drift check's pure parts: the per-user cap and bounded sample, reading a window of the traffic log, the
context offsets, the params section, the typed result and the Prometheus gauges."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from recsys.config import DriftConfig
from recsys.monitoring.drift import HOUR_OFFSET, WEEKDAY_OFFSET, drift_columns, with_context_offsets
from recsys.monitoring.metrics import DriftGauges, export_latest
from recsys.monitoring.sample import bounded_sample, cap_per_user
from recsys.monitoring.window import latest_time, load_window, log_files, write_traffic
from recsys.params import ParamsError, drift_config
from recsys.stages.drift import DriftResult

FEATURES = ["item_pop", "age", "occupation", "user_is_cold"]
T0 = datetime(1998, 3, 30, 22, 0, tzinfo=UTC)  # a Monday, two hours before a day boundary


def served(requests: list[tuple[str, int, datetime]], n: int = 3, alias_hour: int | None = None) -> pd.DataFrame:
    """Rows as served_rows makes them: ``n`` items per (request id, user, time)."""
    rows = []
    for request_id, user, ts in requests:
        for rank in range(1, n + 1):
            rows.append({"ts": pd.Timestamp(ts), "request_id": request_id, "user_id": user, "item_id": 100 + rank,
                         "rank": rank, "score": 1.0 / rank, "fallback": user < 0, "item_pop": float(rank),
                         "age": float(20 + user % 40), "occupation": float(user % 5),
                         "user_is_cold": float(user < 0),
                         "ctx_hour": (ts.hour if alias_hour is None else alias_hour), "ctx_weekday": ts.weekday()})
    return pd.DataFrame(rows)


def test_the_cap_keeps_whole_requests_and_at_most_per_user_of_each_user() -> None:
    frame = served([(f"r{i}", i % 4, T0 + timedelta(minutes=i)) for i in range(40)])
    capped = cap_per_user(frame, 3, seed=0)
    per_user = capped.groupby("user_id")["request_id"].nunique()
    assert (per_user == 3).all() and len(per_user) == 4
    assert (capped.groupby("request_id").size() == 3).all()  # a request is kept whole
    assert capped.equals(cap_per_user(frame, 3, seed=0))  # seeded
    assert not capped.equals(cap_per_user(frame, 3, seed=1))
    assert cap_per_user(frame, 100, seed=0) is frame  # nothing to cap


def test_the_bounded_sample_keeps_the_order_and_is_seeded() -> None:
    frame = pd.DataFrame({"x": np.arange(1000)})
    sample = bounded_sample(frame, 100, seed=3)
    assert len(sample) == 100 and sample["x"].is_monotonic_increasing
    assert sample.equals(bounded_sample(frame, 100, seed=3))
    assert bounded_sample(frame, 5000, seed=3) is frame
    with pytest.raises(ValueError):
        bounded_sample(frame, 0, seed=0)


def test_log_files_are_the_days_that_overlap_the_window(tmp_path: Path) -> None:
    for day in ("19980329", "19980330", "19980331", "19980401"):
        (tmp_path / f"traffic-{day}.jsonl").write_text("")
    (tmp_path / "assignments-19980330.jsonl").write_text("")
    names = [p.name for p in log_files(tmp_path, T0, T0 + timedelta(hours=2))]  # ends at midnight, exclusive
    assert names == ["traffic-19980330.jsonl"]
    names = [p.name for p in log_files(tmp_path, T0, T0 + timedelta(hours=3))]
    assert names == ["traffic-19980330.jsonl", "traffic-19980331.jsonl"]
    assert len(log_files(tmp_path)) == 4 and log_files(tmp_path / "missing") == []


def test_a_window_reads_the_rows_in_range_of_the_checked_model(tmp_path: Path) -> None:
    requests = [(f"r{i}", i % 5, T0 + timedelta(minutes=10 * i)) for i in range(30)]  # 22:00 .. 02:50 next day
    write_traffic(served(requests), tmp_path, FEATURES, version=7)
    write_traffic(served([("x1", 1, T0 + timedelta(minutes=5))]), tmp_path, FEATURES, alias="challenger",
                  version=8, variant="challenger")
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=5)
    window = load_window(tmp_path, start, end, FEATURES, version=7, per_user=100, max_rows=10_000)
    assert [p.name for p in window.files] == ["traffic-19980330.jsonl", "traffic-19980331.jsonl"]
    assert window.logged_rows == window.capped_rows == window.rows == 24 * 3  # requests 6..29
    assert window.frame["ts"].min() >= pd.Timestamp(start) and window.frame["ts"].max() < pd.Timestamp(end)
    assert window.other_rows == 0 and window.users == 5 and window.requests == 24
    assert list(window.frame.columns[:7]) == ["ts", "request_id", "user_id", "item_id", "rank", "score", "fallback"]
    assert window.frame["occupation"].tolist()[:3] == [1.0, 1.0, 1.0]  # request r6: user 1
    everything = load_window(tmp_path, T0 - timedelta(hours=1), end, FEATURES, per_user=100)
    assert everything.other_rows == 0 and everything.logged_rows == 30 * 3 + 3  # any alias and version
    champion = load_window(tmp_path, T0 - timedelta(hours=1), end, FEATURES, alias="champion", per_user=100)
    assert champion.other_rows == 3
    capped = load_window(tmp_path, start, end, FEATURES, per_user=2, max_rows=20)
    assert capped.capped_rows == 5 * 2 * 3 and capped.rows == 20 and capped.logged_rows == 72


def test_a_window_skips_bad_lines_and_reads_missing_features_and_context_as_nan(tmp_path: Path) -> None:
    rows = served([("r1", 1, T0), ("r2", 2, T0 + timedelta(minutes=1))])
    rows.loc[rows["request_id"] == "r2", "ctx_hour"] = None
    write_traffic(rows, tmp_path, FEATURES)
    path = tmp_path / "traffic-19980330.jsonl"
    with path.open("a") as fh:
        fh.write(json.dumps({"ts": (T0 + timedelta(minutes=2)).isoformat(), "request_id": "r3", "alias": "champion",
                             "version": None, "user_id": 3, "fallback": True, "item_id": 5, "rank": 1,
                             "score": 0.1, "features": {}, "context": None}) + "\n")
        fh.write('{"ts": "1998-03-30T22:03:00+00:00", "request_id": "cut sh')  # a crash mid-line
    window = load_window(tmp_path, T0, T0 + timedelta(hours=1), FEATURES, per_user=10)
    assert window.bad_lines == 1 and window.logged_rows == 7
    last = window.frame[window.frame["request_id"] == "r3"].iloc[0]
    assert math.isnan(last["age"]) and math.isnan(last["ctx_hour"])
    assert window.frame[window.frame["request_id"] == "r2"]["ctx_hour"].isna().all()
    assert latest_time(tmp_path) == T0 + timedelta(minutes=2)
    assert latest_time(tmp_path / "none") is None


def test_an_empty_window_has_no_rows(tmp_path: Path) -> None:
    write_traffic(served([("r1", 1, T0)]), tmp_path, FEATURES)
    window = load_window(tmp_path, T0 + timedelta(days=2), T0 + timedelta(days=3), FEATURES)
    assert window.rows == window.logged_rows == window.users == 0 and window.files == []
    with pytest.raises(ValueError, match="start before it ends"):
        load_window(tmp_path, T0, T0, FEATURES)


def test_context_offsets_are_zero_when_the_context_is_the_request_clock() -> None:
    frame = with_context_offsets(pd.concat([served([("a", 1, T0)]), served([("b", 2, T0)], alias_hour=10)]))
    assert frame[HOUR_OFFSET].tolist() == [0, 0, 0, 12, 12, 12]  # 10 - 22 = -12 = 12 (mod 24)
    assert (frame[WEEKDAY_OFFSET] == 0).all()


def test_columns_have_the_method_of_their_type() -> None:
    cfg = DriftConfig()
    columns = {c.name: c for c in drift_columns(FEATURES, cfg)}
    assert columns["age"].method == cfg.num_method and columns["age"].threshold == cfg.num_threshold
    assert columns["occupation"].kind == "categorical" and columns["occupation"].method == cfg.cat_method
    assert columns["score"].role == "prediction" and columns[HOUR_OFFSET].role == "context"
    overridden = {c.name: c for c in drift_columns(FEATURES, DriftConfig(thresholds={"age": 9.0}))}
    assert overridden["age"].threshold == 9.0


def test_the_params_section_is_validated_with_the_field_named(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2] / "params.yaml"
    assert drift_config(repo) == DriftConfig()
    path = tmp_path / "params.yaml"
    path.write_text("drift:\n  min_users: lots\n")
    with pytest.raises(ParamsError, match=r"field drift\.min_users"):
        drift_config(path)
    path.write_text("drift:\n  share: 0.3\n")
    with pytest.raises(ParamsError, match=r"field drift\.share"):
        drift_config(path)
    path.write_text("ranker:\n  num_leaves: 15\n")
    assert drift_config(path) == DriftConfig()


def _result(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "status": "drift", "drift_detected": True, "reason": "2 of 45", "share": 0.2, "share_threshold": 0.1,
        "drifted": [{"column": "age", "role": "feature", "method": "wasserstein", "threshold": 0.5,
                     "score": 1.2, "drifted": True}],
        "score_drift": None, "columns": [], "skipped": {}, "window_start": T0.isoformat(),
        "window_end": (T0 + timedelta(days=1)).isoformat(), "logged_rows": 10, "capped_rows": 10, "rows": 10,
        "requests": 1, "users": 1, "other_rows": 0, "bad_lines": 0, "reference_rows": 5, "reference_users": 1,
        "model_name": "m", "model_version": 3, "model_alias": "champion", "bundle": "/b", "traffic_dir": "/t",
        "report_html": None, "report_json": None, "result_path": "/r/latest.json",
        "checked_at": "2026-12-01T10:00:00+00:00", "seconds": 1.0, "timings": {}}
    return {**base, **changes}


def test_the_result_is_typed_and_round_trips_through_json() -> None:
    result = DriftResult.model_validate(_result())
    again = DriftResult.model_validate_json(result.to_json())
    assert again == result and again.drifted[0].column == "age"
    with pytest.raises(ValueError):
        DriftResult.model_validate(_result(status="maybe"))
    with pytest.raises(ValueError):
        DriftResult.model_validate(_result(unexpected=1))


def test_the_gauges_follow_latest_json(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    gauges = DriftGauges(registry)
    path = tmp_path / "latest.json"
    assert not export_latest(path, gauges)  # no file yet: nothing set
    path.write_text(json.dumps(_result()))
    assert export_latest(path, gauges)
    assert registry.get_sample_value("recsys_drift_share") == 0.2
    assert registry.get_sample_value("recsys_drift_detected") == 1.0
    assert registry.get_sample_value("recsys_drift_checked_timestamp_seconds") == datetime(
        2026, 12, 1, 10, tzinfo=UTC).timestamp()
    assert not export_latest(path, gauges)  # unchanged file: not read again
    path.write_text(json.dumps(_result(status="insufficient_data", drift_detected=False, share=None, rows=3,
                                       checked_at="2026-12-01T11:00:00+00:00")))
    assert export_latest(path, gauges)
    assert math.isnan(registry.get_sample_value("recsys_drift_share") or 0.0)
    assert registry.get_sample_value("recsys_drift_detected") == 0.0
    assert registry.get_sample_value("recsys_drift_window_rows") == 3.0
    path.write_text("{not json")
    assert not export_latest(path, gauges)
    assert registry.get_sample_value("recsys_drift_detected") == 0.0
