"""The retrain triggers: a fresh raised signal fires once per cooldown, after enough new traffic, and is recorded."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.monitoring.ctr import CtrReport, VersionCheck
from recsys.monitoring.signals import SIGNALS_DIR, SignalConfig
from recsys.settings import ServingSettings
from recsys.stages.base import StageError
from recsys.stages.drift import DriftResult
from recsys.stages.signals import HISTORY, LOCK, STATE, SignalParams, SignalsResult, signals

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
"""The wall clock the decisions are made at."""
LOG0 = datetime(1998, 3, 1, tzinfo=UTC)
"""The logs' clock (a replay's)."""
CFG = SignalConfig(cooldown_hours=24, min_impressions=500, max_age_minutes=60)


@pytest.fixture
def settings(tmp_path: Path) -> ServingSettings:
    return ServingSettings(var_dir=tmp_path / "var", params_file=tmp_path / "params.yaml")


def write_drift(s: ServingSettings, detected: bool = True, checked: datetime = NOW,
                start: datetime = LOG0, end: datetime = LOG0 + timedelta(days=1)) -> None:
    path = s.var_dir / "monitoring" / "drift" / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = DriftResult(
        status="drift" if detected else "ok", drift_detected=detected, reason="3 of 10 columns drifted",
        share=0.3 if detected else 0.1, share_threshold=0.25, drifted=[], score_drift=None, columns=[], skipped={},
        window_start=start, window_end=end, logged_rows=900, capped_rows=900, rows=900, requests=100, users=50,
        other_rows=0, bad_lines=0, reference_rows=1000, reference_users=90, model_name="content-ranker",
        model_version=2, model_alias="champion", bundle=Path("b"), traffic_dir=Path("t"), report_html=None,
        report_json=None, result_path=path, checked_at=checked, seconds=1.0, timings={})
    path.write_text(result.to_json())


def write_ctr(s: ServingSettings, degraded: bool = True, checked: datetime | None = NOW) -> None:
    path = s.var_dir / "monitoring" / "ctr" / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    check = VersionCheck(variant="champion", version=2, status="degraded" if degraded else "ok",
                         baseline_impressions=500, baseline_ctr=0.1, impressions=800, ctr=0.04 if degraded else 0.1,
                         relative_drop=0.6 if degraded else 0.0, p_value=1e-6 if degraded else 0.5)
    report = CtrReport(start=LOG0, end=LOG0 + timedelta(days=1), attribution_minutes=60,
                       performance_degraded=degraded, versions=[check], checked_at=checked)
    path.write_text(report.model_dump_json())


def log_impressions(s: ServingSettings, n: int, start: datetime = LOG0 + timedelta(hours=1)) -> datetime:
    """``n`` impressions a minute apart from ``start`` (logs' clock); returns the time after the last."""
    folder = s.assignment_path
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        ts = start + timedelta(minutes=k)
        with (folder / f"assignments-{ts:%Y%m%d}.jsonl").open("a") as fh:
            fh.write(json.dumps({"ts": ts.isoformat(), "request_id": f"r{ts.timestamp()}", "user_id": k,
                                 "variant": "champion", "alias": "champion", "version": 2, "fallback": False,
                                 "items": [1, 2]}) + "\n")
    return start + timedelta(minutes=n)


def decide(s: ServingSettings, now: datetime = NOW, **kw: object) -> SignalsResult:
    return signals(s, SignalParams(config=CFG, now=now, **kw))


def history(s: ServingSettings) -> list[dict[str, object]]:
    path = s.var_dir / SIGNALS_DIR / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_no_data_fires_nothing(settings: ServingSettings) -> None:
    res = decide(settings)
    assert not (res.fired or res.fire_drift or res.fire_performance or res.drift.raised)
    assert res.drift.reason.startswith("no data") and res.performance.reason.startswith("no data")
    assert res.recorded is None and res.new_impressions == 0 and history(settings) == []


def test_fresh_drift_with_enough_traffic_fires_and_is_recorded(settings: ServingSettings) -> None:
    write_drift(settings)
    write_ctr(settings, degraded=False)
    log_impressions(settings, 600)
    res = decide(settings, run_id="scheduled__1")
    assert res.fire_drift and res.fired and not res.fire_performance and not res.performance.raised
    assert res.new_impressions == 600 and res.cooldown_until == NOW + timedelta(hours=24)
    assert res.recorded == settings.var_dir / SIGNALS_DIR / HISTORY
    [line] = history(settings)
    assert line["signals"] == ["drift"] and line["run_id"] == "scheduled__1"
    assert line["facts"]["drift"]["share"] == 0.3  # type: ignore[index]
    state = json.loads((settings.var_dir / SIGNALS_DIR / STATE).read_text())
    assert state["triggers"] == 1 and state["last_trigger"] == line


def test_inside_the_cooldown_a_raised_signal_is_suppressed_and_after_it_fires_again(
        settings: ServingSettings) -> None:
    write_drift(settings)
    end = log_impressions(settings, 600)
    assert decide(settings).fired
    later = NOW + timedelta(hours=23)
    write_drift(settings, checked=later)
    write_ctr(settings, checked=later)  # the CTR signal shares the one cooldown
    log_impressions(settings, 600, start=end)
    res = decide(settings, now=later)
    assert res.drift.raised and res.drift.suppressed and not res.fired and res.performance.suppressed
    assert res.cooldown_until == NOW + timedelta(hours=24) and res.recorded is None
    assert str(NOW + timedelta(hours=24)) in res.drift.reason.replace("T", " ")
    assert len(history(settings)) == 1
    after = NOW + timedelta(hours=25)
    write_drift(settings, checked=after)
    write_ctr(settings, checked=after)
    res = decide(settings, now=after)
    assert res.fire_drift and res.fire_performance and res.new_impressions == 600  # only those after the trigger
    [_, second] = history(settings)
    assert second["signals"] == ["drift", "performance"]
    assert second["facts"]["performance"]["degraded"][0]["relative_drop"] == 0.6  # type: ignore[index]


def test_too_little_traffic_holds_a_raised_signal_back(settings: ServingSettings) -> None:
    write_drift(settings)
    end = log_impressions(settings, 100)
    res = decide(settings)
    assert res.drift.raised and not res.fired and res.new_impressions == 100
    assert res.drift.reason.startswith("too little traffic: 100 new impressions in the checked window < "
                                       "min_impressions 500")
    log_impressions(settings, 400, start=end)
    assert decide(settings).fired  # 500 now
    after = NOW + timedelta(hours=25)
    write_drift(settings, checked=after)
    res = decide(settings, now=after)  # no impression since the trigger
    assert not res.fired and res.new_impressions == 0 and "since the last trigger" in res.drift.reason


def test_a_stale_result_fires_nothing(settings: ServingSettings) -> None:
    write_drift(settings, checked=NOW - timedelta(hours=2))
    write_ctr(settings, checked=None)  # an old CtrReport without a check time: its age is unknown
    log_impressions(settings, 600)
    res = decide(settings)
    assert not res.fired and not res.drift.raised and res.drift.stale and res.performance.stale
    assert res.drift.reason == "stale: the drift check ran 2 h 0 min ago (max_age_minutes 60)"
    assert decide(settings, now=NOW - timedelta(hours=1, minutes=30)).fire_drift  # fresh at that time


def test_a_dry_run_decides_but_records_nothing(settings: ServingSettings) -> None:
    write_drift(settings)
    write_ctr(settings)
    log_impressions(settings, 600)
    res = decide(settings, dry_run=True)
    assert res.fire_drift and res.fire_performance and res.recorded is None and res.dry_run
    assert not (settings.var_dir / SIGNALS_DIR).exists()
    assert decide(settings).fired  # the dry run did not start a cooldown


def test_a_corrupt_result_is_an_error_naming_the_file(settings: ServingSettings) -> None:
    path = settings.var_dir / "monitoring" / "ctr" / "latest.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"start": "1998-')
    with pytest.raises(StageError, match=str(path)):
        decide(settings)
    write_ctr(settings)
    drift = settings.var_dir / "monitoring" / "drift" / "latest.json"
    drift.parent.mkdir(parents=True)
    drift.write_text('{"status": "drift"}')
    with pytest.raises(StageError, match=f"{drift}: not a readable drift result"):
        decide(settings)


def test_two_concurrent_calls_do_not_both_fire(settings: ServingSettings) -> None:
    write_drift(settings)
    log_impressions(settings, 600)
    folder = settings.var_dir / SIGNALS_DIR
    folder.mkdir(parents=True)
    results: list[SignalsResult] = []
    with (folder / LOCK).open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a third call holds the lock: both wait for it
        threads = [threading.Thread(target=lambda: results.append(decide(settings))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(0.3)
        assert all(t.is_alive() for t in threads) and results == []
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    for t in threads:
        t.join()
    assert sorted(r.fired for r in results) == [False, True] and len(history(settings)) == 1


def test_the_cli_prints_the_decision_as_json_and_rejects_a_bad_option(
        settings: ServingSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli import app
    from recsys.stages import signals as stage

    for name in list(os.environ):
        if name.startswith("RECSYS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RECSYS_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("RECSYS_PARAMS_FILE", str(settings.params_file))
    monkeypatch.setattr(stage, "clock", lambda: NOW)
    write_drift(settings)
    log_impressions(settings, 50)
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", "signals", "--json", "--min-impressions", "10", "--run-id", "r1",
                                 "--dry-run"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["fire_drift"] is True and out["fired"] is True and out["fire_performance"] is False
    assert out["recorded"] is None and out["min_impressions"] == 10 and out["new_impressions"] == 50
    assert {"raised", "fired", "reason", "facts"} <= set(out["drift"])
    result = runner.invoke(app, ["monitor", "signals", "--json"])  # the default minimum: 500
    assert result.exit_code == 0 and json.loads(result.stdout)["fired"] is False
    bad = runner.invoke(app, ["monitor", "signals", "--min-impressions", "-1"])
    assert bad.exit_code == 2 and "Invalid value" in bad.output and "--min-impressions" in bad.output
    settings.params_file.write_text("signals:\n  cooldown_hours: -3\n")
    bad = runner.invoke(app, ["monitor", "signals", "--json"])
    assert bad.exit_code == 1 and "signals.cooldown_hours" in bad.stderr and str(settings.params_file) in bad.stderr
    settings.params_file.write_text("signals:\n  cooldown_hour: 3\n")
    bad = runner.invoke(app, ["monitor", "signals"])
    assert bad.exit_code == 1 and "cooldown_hour" in bad.stderr
