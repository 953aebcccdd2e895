"""``recsys registry timeline``: the champion week by week from GateReport decision records written in tmp_path.

The replay below: week 8 promotes the first model v1; week 9 rejects v2 (v1 stays); week 10 is gated twice, the
rerun promoting the refit v4 of v3; week 11 leaves v5 pending; alice rolls back to v1 by hand; week 12 rejects v6.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from recsys.cli import app
from recsys.registry.audit import AuditEvent, AuditRecord
from recsys.registry.gate import GateConfig, GateDecision
from recsys.registry.release import LatencyStats
from recsys.registry.timeline import DecisionRecord, build_timeline, markdown_table, summarize
from recsys.settings import Settings
from recsys.stages.base import StageError
from recsys.stages.gate import ChampionInfo, GateReport, RefitInfo, VersionInfo, WindowInfo
from recsys.stages.timeline import EXPERIMENT, TimelineParams, timeline

MODEL = "content-ranker"
H = 2
T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
GEN = "popularity"
runner = CliRunner()


def report(week: int, version: int, outcome: str, ndcg: dict[str, float], *, champion: tuple[int, int] | None,
           minutes: int, refit: int | None = None) -> GateReport:
    """A decision record as the gate writes it; ``champion`` is (version, compared_version)."""
    passed = outcome != "rejected by gate"
    decision = GateDecision(passed=passed, verdict="promote" if passed else "reject", reasons=["test"], checks={},
                            mode="first_model" if champion is None else "vs_champion", challenger=f"v{version}",
                            reference=GEN if champion is None else f"v{champion[1]}")
    return GateReport(
        model=MODEL, challenger=VersionInfo(version=version, run_id=None, as_of_week=week - H),
        champion=None if champion is None else ChampionInfo(version=champion[0], compared_version=champion[1],
                                                            run_id=None, as_of_week=week - H - 1),
        best_generator=GEN,
        window=WindowInfo(name=f"weeks {week - H}-{week - 1}", start_week=week - H, end_week=week, users=50 + week,
                          cold_users=3),
        means={label: {"ndcg@10": v, "ndcg@10_warm": v, "ndcg@10_cold": None, "coverage": 0.2}
               for label, v in ndcg.items()},
        latency=LatencyStats(n=10, p50_ms=1.0, p95_ms=2.0, p99_ms=3.0, mean_ms=1.2), schema_problems=[],
        gate_config=GateConfig(), policy="auto", decision=decision, seconds=1.0,
        decided_at=T0 + timedelta(minutes=minutes),
        refit=None if refit is None else RefitInfo(version=refit, as_of_week=week, run_key="k"), outcome=outcome)


def replay() -> list[GateReport]:
    return [
        report(8, 1, "promoted", {"v1": 0.12, GEN: 0.10}, champion=None, minutes=0),
        report(9, 2, "rejected by gate", {"v2": 0.11, "v1": 0.125, GEN: 0.10}, champion=(1, 1), minutes=10),
        report(10, 3, "rejected by gate", {"v3": 0.13, "v1": 0.13, GEN: 0.11}, champion=(1, 1), minutes=20),
        report(10, 3, "promoted", {"v3": 0.14, "v1": 0.12, GEN: 0.11}, champion=(1, 1), minutes=25, refit=4),
        report(11, 5, "pending", {"v5": 0.16, "v3": 0.15, GEN: 0.12}, champion=(4, 3), minutes=30),
        report(12, 6, "rejected by gate", {"v6": 0.09, "v1": 0.13, GEN: 0.12}, champion=(1, 1), minutes=40),
    ]


def audit_event(event: AuditEvent, frm: int | None, to: int, minutes: int, actor: str = "airflow") -> AuditRecord:
    return AuditRecord(id=minutes, ts=T0 + timedelta(minutes=minutes), event=event, model_name=MODEL,
                       from_version=frm, to_version=to, actor=actor, reason=None, run_id=None, data_hash=None,
                       git_sha=None)


def records(reports: list[GateReport]) -> list[DecisionRecord]:
    return [DecisionRecord.model_validate(json.loads(r.model_dump_json())) for r in reports]


def write_decisions(var: Path, reports: list[GateReport]) -> Path:
    folder = var / "registry" / "decisions"
    folder.mkdir(parents=True, exist_ok=True)
    for r in reports:
        stamp = r.decided_at.strftime("%Y%m%dT%H%M%S%fZ")
        (folder / f"{r.model}-v{r.challenger.version}-{stamp}.json").write_text(r.model_dump_json(indent=2))
    return folder


# -- the pure timeline -----------------------------------------------------------------------------------------
def test_one_row_per_gated_week_with_the_champion_carried_over_on_rejection() -> None:
    rows = build_timeline(records(replay()))
    assert [r.week for r in rows] == [8, 9, 10, 11, 12]
    assert [r.champion_before for r in rows] == [None, 1, 1, 4, 1]
    assert [r.champion_after for r in rows] == [1, 1, 4, 4, 1]
    # promoted: the challenger's score; otherwise the champion's evaluated model's (v3 stands for its refit v4)
    assert [r.champion_ndcg for r in rows] == [0.12, 0.125, 0.14, 0.15, 0.13]
    assert [r.challenger_ndcg for r in rows] == [0.12, 0.11, 0.14, 0.16, 0.09]
    assert [r.promoted_version for r in rows] == [1, None, 4, None, None]
    assert rows[3].champion_evaluated == 3 and rows[3].outcome == "pending"
    assert rows[0].best_generator == GEN and rows[2].best_generator_ndcg == 0.11
    assert [(r.window_start, r.users) for r in rows[:2]] == [(6, 58), (7, 59)]
    assert [r.moves_before for r in rows] == [None] * 5  # no audit log given: unknown


def test_a_rerun_week_keeps_its_last_decision_and_counts_the_others() -> None:
    reports = replay()
    rows = build_timeline(records(reports[::-1]))  # file order does not matter, decided_at does
    week10 = next(r for r in rows if r.week == 10)
    assert (week10.outcome, week10.reruns, week10.champion_after) == ("promoted", 1, 4)
    assert [r.reruns for r in rows] == [0, 0, 1, 0, 0]


def test_a_champion_moved_between_gates_is_flagged_and_the_audit_log_names_the_move() -> None:
    audit = [audit_event(AuditEvent.PROMOTED, None, 1, 1),         # week 8's own auto-promotion
             audit_event(AuditEvent.PROMOTED, 1, 4, 26),           # week 10's (the refit)
             audit_event(AuditEvent.ROLLED_BACK, 4, 1, 35, "alice")]  # by hand, after week 11's gate
    rows = build_timeline(records(replay()), audit)
    assert [r.champion_moved for r in rows] == [False, False, False, False, True]
    assert [r.moves_before for r in rows] == [[], [], [], [], ["rolled back v4 → v1 by alice"]]


def test_audit_moves_are_unknown_where_a_rerun_broke_the_week_order() -> None:
    reports = replay()
    late = report(9, 2, "rejected by gate", {"v2": 0.1, "v1": 0.125, GEN: 0.1}, champion=(1, 1), minutes=90)
    rows = build_timeline(records([*reports, late]), [audit_event(AuditEvent.PROMOTED, None, 1, 1)])
    assert rows[1].week == 9 and rows[1].reruns == 1
    assert rows[2].moves_before is None  # week 9's kept decision is after week 10's
    assert rows[1].moves_before == []


def test_the_summary_and_the_markdown_table() -> None:
    rows = build_timeline(records(replay()))
    summary = summarize(rows)
    assert (summary.weeks_gated, summary.first_week, summary.last_week) == (5, 8, 12)
    assert (summary.promotions, summary.reruns) == (2, 1)
    assert (summary.first_champion, summary.last_champion, summary.champion_versions) == (1, 1, [1, 4])
    assert summary.mean_champion_ndcg == pytest.approx((0.12 + 0.125 + 0.14 + 0.15 + 0.13) / 5)
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 2 + 5
    assert lines[0].startswith("| week | challenger (trained to) | champion before | outcome | champion after |")
    assert lines[4] == ("| 10 | v3 (wk 8) | v1 | promoted | v4 | 0.1400 | 0.1400 | popularity 0.1100 | 60 | 1 |")
    assert lines[2].startswith("| 8 | v1 (wk 6) | – | promoted | v1 | 0.1200 |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_no_champion_and_no_score_is_none_not_zero() -> None:
    rows = build_timeline(records([report(8, 1, "rejected by gate", {"v1": 0.05, GEN: 0.1}, champion=None,
                                          minutes=0)]))
    assert (rows[0].champion_after, rows[0].champion_ndcg) == (None, None)
    assert summarize(rows).mean_champion_ndcg is None


# -- the stage and the CLI -------------------------------------------------------------------------------------
def test_the_stage_writes_the_four_files(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", data_dir=tmp_path / "data")
    write_decisions(settings.var_dir, replay())
    result = timeline(settings, TimelineParams(log_mlflow=False))
    out = settings.var_dir / "reports" / "replay"
    assert result.paths.json_path == out / "timeline.json" and result.mlflow_run_id is None
    assert (result.records, len(result.rows), result.summary.promotions) == (6, 5, 2)
    saved = json.loads(result.paths.json_path.read_text())
    assert [r["champion_after"] for r in saved["rows"]] == [1, 1, 4, 4, 1]
    assert saved["summary"]["last_champion"] == 1
    csv_lines = result.paths.csv.read_text().splitlines()
    assert csv_lines[0].startswith("week,challenger_version,") and len(csv_lines) == 6
    assert "| 12 | v6 (wk 10) | v1 | rejected by gate | v1 | 0.1300 |" in result.paths.markdown.read_text()
    png = result.paths.plot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_out_dir_overrides_and_other_models_records_are_ignored(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    folder = write_decisions(settings.var_dir, replay()[:2])
    other = replay()[2].model_copy(update={"model": f"{MODEL}-v9"})
    (folder / f"{MODEL}-v9-v3-x.json").write_text(other.model_dump_json())
    result = timeline(settings, TimelineParams(out_dir=tmp_path / "elsewhere", log_mlflow=False))
    assert result.records == 2 and [r.week for r in result.rows] == [8, 9]
    assert result.paths.plot == tmp_path / "elsewhere" / "timeline.png" and result.paths.plot.stat().st_size > 0


def test_no_records_is_a_stage_error_that_says_to_run_the_gate(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"no gate decision records.*run the gate first"):
        timeline(Settings(var_dir=tmp_path / "var"), TimelineParams(log_mlflow=False))


def test_a_broken_record_is_named(tmp_path: Path) -> None:
    folder = write_decisions(tmp_path / "var", replay()[:1])
    (folder / f"{MODEL}-v7-broken.json").write_text("{not json")
    with pytest.raises(StageError, match=r"v7-broken\.json is not a gate decision record"):
        timeline(Settings(var_dir=tmp_path / "var"), TimelineParams(log_mlflow=False))


def test_the_run_is_logged_to_mlflow_with_metrics_per_week(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    settings = Settings(var_dir=tmp_path / "var", tracking_uri=uri)
    write_decisions(settings.var_dir, replay())
    result = timeline(settings, TimelineParams())
    assert result.mlflow_run_id is not None
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.mlflow_run_id)
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == EXPERIMENT and run.info.status == "FINISHED"
    ndcg = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "champion_ndcg_at_10")}
    assert ndcg == pytest.approx({8: 0.12, 9: 0.125, 10: 0.14, 11: 0.15, 12: 0.13})
    versions = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "champion_version")}
    assert versions == {8: 1, 9: 1, 10: 4, 11: 4, 12: 1}
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "timeline")}
    assert logged == {f"timeline/timeline.{ext}" for ext in ("json", "csv", "md", "png")}


def test_the_cli_prints_the_table_and_fails_cleanly_without_records(tmp_path: Path) -> None:
    env = {"RECSYS_VAR_DIR": str(tmp_path / "var"), "MLFLOW_TRACKING_URI": "", "COLUMNS": "160"}
    empty = runner.invoke(app, ["registry", "timeline", "--no-mlflow"], env=env)
    assert empty.exit_code != 0 and "Traceback" not in empty.output
    assert "no gate decision records" in empty.stderr and "run the gate first" in empty.stderr
    write_decisions(tmp_path / "var", replay())
    shown = runner.invoke(app, ["registry", "timeline", "--no-mlflow", "--out", str(tmp_path / "out")], env=env)
    assert shown.exit_code == 0, shown.output
    assert "the champion week by week" in shown.stdout
    week10 = next(line for line in shown.stdout.splitlines() if line.strip().startswith("10 "))
    assert week10.split()[:6] == ["10", "v3", "(8)", "v1", "→", "v4"] and "promoted" in week10
    assert "5 weeks gated (8–12), 2 promotion(s), 1 rerun(s); champions v1 → v4" in shown.stdout
    as_json = runner.invoke(app, ["registry", "timeline", "--no-mlflow", "--json", "--out", str(tmp_path / "out")],
                            env=env)
    payload = json.loads(as_json.stdout)
    assert [r["champion_after"] for r in payload["rows"]] == [1, 1, 4, 4, 1] and payload["mlflow_run_id"] is None
    assert (tmp_path / "out" / "timeline.md").exists()
