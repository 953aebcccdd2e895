"""The drift check on the real data: the bundle keeps its reference (sha256-checked), the reference is what the
service serves, a window like the reference is no drift, shifted windows are, a thin window is insufficient data,
and the reports, result and gauges are written; the CLI over the same stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from recsys import schema as S
from recsys.cli import app
from recsys.config import DriftConfig
from recsys.data.replay import interactions_before
from recsys.monitoring.drift import HOUR_OFFSET
from recsys.monitoring.metrics import DriftGauges, export_latest
from recsys.monitoring.reference import (
    REFERENCE_FILE,
    ReferenceFileError,
    build_reference,
    load_reference,
    served_rows,
)
from recsys.monitoring.sample import REQUEST
from recsys.monitoring.window import write_traffic
from recsys.ranking.recommender import BundleError, Recommender
from recsys.settings import Settings
from recsys.stages.base import StageError
from recsys.stages.drift import DriftParams, DriftResult, drift, read_latest

runner = CliRunner()


def requests_of(events: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """One request per rating, as the replay sends them."""
    events = events.sort_values([S.TS, S.USER, S.ITEM], kind="stable")
    return pd.DataFrame({REQUEST: [f"{prefix}{i}" for i in range(len(events))],
                         S.USER: events[S.USER].to_numpy(np.int64), S.TS: events[S.TS].to_numpy(np.int64)})


@pytest.fixture(scope="module")
def checked(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The small model's bundle with the reference of weeks 16..19, and the requests of the weeks after its cut."""
    ml, clock, rec, week = small_model.ml, small_model.clock, small_model.result.recommender, small_model.as_of
    reference = build_reference(rec, interactions_before(ml.interactions, clock, week), ml.users,
                                clock.start(week - 4), clock.start(week))
    root = tmp_path_factory.mktemp("drift")
    bundle = root / "bundle"
    rec.save(bundle, frames={REFERENCE_FILE: reference})
    inter = ml.interactions
    span = inter[(inter[S.TS] >= clock.start(week - 4)) & (inter[S.TS] < clock.start(week))]
    after = inter[(inter[S.TS] >= clock.start(week)) & (inter[S.TS] < clock.start(week + 4))]
    return SimpleNamespace(ml=ml, clock=clock, rec=rec, week=week, reference=reference, bundle=bundle, root=root,
                           span=requests_of(span, "s"), after=requests_of(after, "a"))


def run_check(checked: SimpleNamespace, rows: pd.DataFrame, name: str, **params: object) -> DriftResult:
    traffic = checked.root / name / "traffic"
    shutil.rmtree(traffic, ignore_errors=True)
    write_traffic(rows, traffic, checked.rec.feature_names)
    settings = Settings(var_dir=checked.root / name / "var")
    since = pd.Timestamp(rows["ts"].min()).to_pydatetime()
    return drift(settings, DriftParams(bundle=checked.bundle, traffic_dir=traffic, since=since, **params))


def test_the_bundle_keeps_its_reference_under_the_manifest(checked: SimpleNamespace, tmp_path: Path) -> None:
    frame, manifest = load_reference(checked.bundle)
    assert frame is not None and manifest["files"][REFERENCE_FILE]
    pd.testing.assert_frame_equal(frame, checked.reference)
    assert Recommender.load(checked.bundle).feature_names == checked.rec.feature_names  # the model still loads
    tampered = tmp_path / "tampered"
    shutil.copytree(checked.bundle, tampered)
    checked.reference.head(10).to_parquet(tampered / REFERENCE_FILE, index=False)
    with pytest.raises(ReferenceFileError, match=REFERENCE_FILE):
        load_reference(tampered)
    with pytest.raises(BundleError, match=REFERENCE_FILE):
        Recommender.load(tampered)
    plain = tmp_path / "plain"
    checked.rec.save(plain)  # a bundle saved without a reference still loads; the check says what is missing
    assert load_reference(plain)[0] is None and Recommender.load(plain).ranked is not None
    with pytest.raises(StageError, match="no drift reference"):
        drift(Settings(var_dir=tmp_path / "var"), DriftParams(bundle=plain, traffic_dir=tmp_path / "traffic"))


def test_reference_rows_are_what_the_service_answers(checked: SimpleNamespace) -> None:
    ref, rec = checked.reference, checked.rec
    assert 0 < len(ref) <= DriftConfig().reference_rows
    assert set(ref.columns) >= {*rec.feature_names, "score", "rank", "fallback", "ctx_hour", "ctx_weekday"}
    assert (ref["fallback"] == (ref["user_is_cold"] == 1)).all() and 0 < ref["fallback"].mean() < 1
    assert ref["ts"].is_monotonic_increasing and ref["rank"].between(1, 10).all()
    ranked = rec.ranked
    rows = {int(u): i for i, u in enumerate(ranked.users)}
    for user, group in ref[~ref["fallback"]].groupby(S.USER):  # known users: the bundle's precomputed answer
        items = dict(zip(group[S.RANK], group[S.ITEM], strict=True))
        assert all(ranked.items[rows[int(user)], r - 1] == item for r, item in items.items())
    cold = ref[ref["fallback"]].iloc[0]  # unknown users: the cold-start ranking of their profile
    profile = checked.ml.users.set_index(S.USER).loc[int(cold[S.USER])][list(S.PROFILE_FIELDS)].to_dict()
    answer, _ = rec.rank(-1, 10, profile=profile)
    assert answer[int(cold[S.RANK]) - 1].item_id == cold[S.ITEM]
    assert answer[int(cold[S.RANK]) - 1].score == pytest.approx(cold[S.SCORE], abs=1e-9)


def test_a_window_like_the_reference_is_no_drift(checked: SimpleNamespace) -> None:
    """The reference weeks again, through a different seed's cap and sample: the same population."""
    first = checked.ml.interactions.groupby(S.USER)[S.TS].min()
    span = checked.span
    cold = first.reindex(span[S.USER]).to_numpy() >= checked.clock.start(checked.week - 4)
    rows = served_rows(checked.rec, span, checked.ml.users, cold=cold)
    result = run_check(checked, rows, "same", config=DriftConfig(seed=1))
    assert result.status == "ok" and not result.drift_detected, result.reason
    assert result.rows <= DriftConfig().max_rows and result.logged_rows == len(rows)
    assert result.users >= DriftConfig().min_users and result.skipped == {}
    assert result.report_html is not None and result.report_html.read_text().lstrip().lower().startswith("<!doctype")
    report = json.loads(result.report_json.read_text()) if result.report_json else {}
    assert len(report["metrics"]) == len(result.columns) + 1  # every column's ValueDrift and the drifted count
    assert read_latest(result.result_path.parent) == result
    assert json.loads((result.report_html.parent / "result.json").read_text())["status"] == "ok"
    registry = CollectorRegistry()
    assert export_latest(result.result_path, DriftGauges(registry))
    assert registry.get_sample_value("recsys_drift_detected") == 0.0
    assert registry.get_sample_value("recsys_drift_share") == pytest.approx(result.share)


def test_a_shifted_context_is_drift(checked: SimpleNamespace) -> None:
    """Every request's context hour 12 h off the request's clock: a market in another time zone."""
    rows = served_rows(checked.rec, checked.after, checked.ml.users)
    rows["ctx_hour"] = (rows["ctx_hour"] + 12) % 24
    result = run_check(checked, rows, "context")
    assert result.status == "drift" and result.drift_detected
    assert HOUR_OFFSET in [c.column for c in result.drifted]
    # the verdict is notified with its numbers (the default channels: outbox, log)
    outbox = checked.root / "context" / "var" / "notifications" / "outbox.jsonl"
    [note] = [json.loads(line) for line in outbox.read_text().splitlines()]
    facts = {f["label"]: f["value"] for f in note["facts"]}
    assert note["event"] == "drift_detected" and note["severity"] == "warning"
    assert facts["Drift share"] == f"{result.share:.2f} (threshold {result.share_threshold:.2f})"
    assert HOUR_OFFSET in facts["Drifted columns"]
    assert {link["label"]: link["url"] for link in note["links"]}["Drift report"] == str(result.report_html)


def test_a_window_of_students_only_is_drift(checked: SimpleNamespace) -> None:
    """The same requests, each user replaced by a student (known ones by known students)."""
    users = checked.ml.users
    students = users[users[S.OCCUPATION].astype(str) == "student"][S.USER].to_numpy(np.int64)
    known = np.array([checked.rec.is_known(int(u)) for u in students])
    rng = np.random.default_rng(0)
    after = checked.after.copy()
    mapping = {u: int(rng.choice(students[known] if checked.rec.is_known(int(u)) else students))
               for u in after[S.USER].unique()}
    cold = ~np.array([checked.rec.is_known(int(u)) for u in after[S.USER]])
    after[S.USER] = after[S.USER].map(mapping)
    rows = served_rows(checked.rec, after, users, cold=cold)
    result = run_check(checked, rows, "students")
    assert result.drift_detected, result.reason
    assert "occupation" in [c.column for c in result.drifted]


def test_a_thin_window_is_insufficient_data(checked: SimpleNamespace) -> None:
    rows = served_rows(checked.rec, checked.after.head(5), checked.ml.users)
    result = run_check(checked, rows, "thin")
    assert result.status == "insufficient_data" and not result.drift_detected and result.share is None
    assert "min_users" in result.reason and result.report_html is None
    assert read_latest(result.result_path.parent) == result


def test_a_monitor_checks_the_rows_since_its_last_verdict(checked: SimpleNamespace) -> None:
    """Too few rows: the next check starts where the insufficient one did; after a verdict, where it ended."""
    rows = served_rows(checked.rec, checked.after, checked.ml.users)
    traffic, settings = checked.root / "monitor" / "traffic", Settings(var_dir=checked.root / "monitor" / "var")
    params = DriftParams(bundle=checked.bundle, traffic_dir=traffic, since_last_verdict=True)
    first = rows[rows[REQUEST].isin(checked.after[REQUEST].head(5))]
    write_traffic(first, traffic, checked.rec.feature_names)
    thin = drift(settings, params)
    assert thin.status == "insufficient_data" and thin.logged_rows == len(first)
    write_traffic(rows.drop(first.index), traffic, checked.rec.feature_names)
    verdict = drift(settings, params)
    assert verdict.status != "insufficient_data" and verdict.window_start == thin.window_start
    assert verdict.logged_rows == len(rows)
    nothing_new = drift(settings, params)
    assert nothing_new.window_start == verdict.window_end and nothing_new.logged_rows == 0
    assert nothing_new.status == "insufficient_data"


def test_the_cli_prints_the_verdict_and_fails_on_drift_when_asked(checked: SimpleNamespace) -> None:
    rows = served_rows(checked.rec, checked.after, checked.ml.users)
    rows["ctx_hour"] = (rows["ctx_hour"] + 12) % 24
    traffic = checked.root / "cli" / "traffic"
    write_traffic(rows, traffic, checked.rec.feature_names)
    args = ["drift", "--bundle", str(checked.bundle), "--traffic-dir", str(traffic), "--last", "4w",
            "--out-dir", str(checked.root / "cli" / "out")]
    env = {"RECSYS_VAR_DIR": str(checked.root / "cli" / "var")}
    shown = runner.invoke(app, args, env=env)
    assert shown.exit_code == 0, shown.output
    assert "DRIFT" in shown.stdout and "report:" in shown.stdout
    as_json = runner.invoke(app, [*args, "--json", "--fail-on-drift"], env=env)
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["drift_detected"] is True
    bad = runner.invoke(app, [*args, "--last", "soon"], env=env)
    assert bad.exit_code == 1 and "--last must be" in bad.stderr
