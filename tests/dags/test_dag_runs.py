"""The DAGs run for real with ``dag.test()`` in the Airflow env, their tasks calling the library env's ``recsys``
on the real MovieLens-100K: a bad batch fails the run and alerts Slack and e-mail through Airflow's notifiers;
``ingest_and_validate`` + ``retrain`` register and promote a version, and a rerun for the same logical date
registers nothing and moves no alias; the same DAGs on a PostgreSQL metadata database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.dags.harness import library_env, prepare, recsys, run_in_airflow, validated_store
from tests.receivers import SmtpReceiver, WebhookReceiver, free_port

WEEK0 = datetime(1997, 9, 15, tzinfo=UTC).timestamp()  # replay week 0 starts on this Monday
WEEK = 7 * 86400
def alert_env(root: Path, hook: WebhookReceiver, smtp: SmtpReceiver) -> dict[str, str]:
    """The library's channels and (through the launcher's mapping) Airflow's connections, to the receivers."""
    return library_env(root, RECSYS_NOTIFY="outbox,slack,email", RECSYS_SLACK_WEBHOOK_URL=hook.url,
                       RECSYS_SMTP_HOST="127.0.0.1", RECSYS_SMTP_PORT=str(smtp.port), RECSYS_SMTP_SECURITY="none",
                       RECSYS_SMTP_FROM="recsys@example.org", RECSYS_SMTP_TO="oncall@example.org")


@pytest.mark.timeout(600)
def test_a_bad_batch_fails_the_run_is_quarantined_and_alerts_slack_and_email(
        tmp_path: Path, raw_data_dir: Callable[[Path], Path], webhook_receiver: WebhookReceiver,
        smtp_receiver: SmtpReceiver) -> None:
    raw_data_dir(tmp_path)
    # upstream sends week 5's events twice: the raw file still loads, the batch's uniqueness check must catch it
    inter = tmp_path / "data" / "raw" / "ml-100k" / "ml-100k.inter"
    lines = inter.read_text().splitlines()
    week5 = [line for line in lines[1:] if WEEK0 + 5 * WEEK <= float(line.split("\t")[3]) < WEEK0 + 6 * WEEK]
    assert len(week5) > 100
    with inter.open("a") as f:
        f.write("\n".join(week5) + "\n")
    env = prepare(tmp_path / "airflow", free_port(), alert_env(tmp_path, webhook_receiver, smtp_receiver))

    run = run_in_airflow("run_dag.py", "ingest_and_validate", "--conf", json.dumps({"week": 5}), env=env)

    assert run["state"] == "failed"
    assert run["tasks"]["ingest"] == "success" and run["tasks"]["validate"] == "failed"
    assert run["tasks"]["publish"] == "upstream_failed" and run["asset_events"] == []
    quarantined = list((tmp_path / "data" / "quarantine").glob("week=05/*/summary.md"))
    assert quarantined, "the batch is kept, with its report"
    assert not (tmp_path / "data" / "store" / "week=05").exists(), "nothing joined the training store"
    posts = [p.json["text"] for p in webhook_receiver.wait_for(2, timeout=30)]
    mails = smtp_receiver.wait_for(2, timeout=30)
    # Airflow's SlackWebhookNotifier / SmtpNotifier on the task's failure, carrying the command's one-line error
    airflow_post = next(p for p in posts if p.startswith("recsys: task ingest_and_validate.validate failed"))
    assert "week 05 quarantined (rows.unique)" in airflow_post and "Log: http://127.0.0.1:" in airflow_post
    subjects = [m.message["Subject"] for m in mails]
    assert "[recsys] ingest_and_validate.validate failed" in subjects
    airflow_mail = next(m for m in mails if m.message["Subject"].startswith("[recsys] ingest_and_validate"))
    assert "week 05 quarantined" in airflow_mail.message.get_body(("html", "plain")).get_content()
    assert airflow_mail.rcpt_tos == ["oncall@example.org"]
    # and the library's own message about the quarantined batch (issue 8's template)
    assert any("week 05 batch quarantined" in p for p in posts)
    assert any("week 05 batch quarantined" in s for s in subjects)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ingest_and_retrain_register_and_promote_and_a_rerun_moves_nothing(
        tmp_path: Path, raw_data_dir: Callable[[Path], Path]) -> None:
    raw_data_dir(tmp_path)
    lib = library_env(tmp_path)
    validated_store(lib, tmp_path, 20)  # weeks 0..19, as the weekly runs before would have
    env = prepare(tmp_path / "airflow", free_port(), lib)
    monday = "1998-02-09T03:00:00+00:00"  # the Monday after replay week 20

    ingest = run_in_airflow("run_dag.py", "ingest_and_validate", "--logical-date", monday, env=env)
    assert ingest["state"] == "success" and ingest["xcom"]["replay_week"]["week"] == 20
    assert [e["asset"] for e in ingest["asset_events"]] == ["validated_interactions"]
    assert ingest["asset_events"][0]["extra"]["week"] == 20

    t0 = time.perf_counter()
    first = run_in_airflow("run_dag.py", "retrain", "--logical-date", monday, env=env, timeout=1200)
    seconds = time.perf_counter() - t0
    print(f"\nretrain via dag.test() on ML-100K: {seconds:.0f} s")
    assert first["state"] == "success", first["tasks"]
    plan, train, gate = (first["xcom"][t] for t in ("plan", "train", "gate"))
    assert (plan["now_week"], plan["as_of_week"], plan["through_week"], plan["trainable"]) == (21, 17, 20, True)
    assert train["created"] and not train["reused"] and train["version"] == 1
    assert gate["outcome"] == "promoted" and gate["target"] == 1
    assert first["tasks"]["reload"] == "skipped", "no recsys_service connection here"
    versions = recsys(lib, "registry", "list")
    history = recsys(lib, "registry", "history")

    again = run_in_airflow("run_dag.py", "retrain", "--logical-date", monday, env=env, timeout=1200)
    assert again["state"] == "success"
    assert again["xcom"]["train"]["reused"] and not again["xcom"]["train"]["created"]
    assert again["xcom"]["train"]["version"] == 1
    assert again["xcom"]["gate"]["outcome"] == "already gated"
    assert again["xcom"]["gate"]["previous_outcome"] == "promoted"
    assert recsys(lib, "registry", "list") == versions, "no second version"
    assert recsys(lib, "registry", "history") == history, "no alias moved, nothing recorded"


@pytest.mark.timeout(600)
def test_the_dags_run_on_a_postgresql_metadata_database(tmp_path: Path, raw_data_dir: Callable[[Path], Path],
                                                         postgres_db: str) -> None:
    raw_data_dir(tmp_path)
    env = prepare(tmp_path / "airflow", free_port(), library_env(tmp_path), db_url=postgres_db)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == postgres_db

    run = run_in_airflow("run_dag.py", "ingest_and_validate", "--conf", json.dumps({"week": 3}), env=env)

    assert run["state"] == "success", run["tasks"]
    assert run["xcom"]["validate"]["accepted"] == 1
    assert run["asset_events"] == [{"asset": "validated_interactions",
                                    "extra": {"week": 3, "rows": run["xcom"]["publish"]["rows"],
                                              "new_users": run["xcom"]["publish"]["new_users"],
                                              "new_items": run["xcom"]["publish"]["new_items"]}}]
    assert (tmp_path / "data" / "store" / "week=03").is_dir()


@pytest.mark.timeout(600)
def test_the_daily_ab_decision_skips_while_no_experiment_runs(tmp_path: Path) -> None:
    env = prepare(tmp_path / "airflow", free_port(), library_env(tmp_path))

    run = run_in_airflow("run_dag.py", "ab_decision", env=env)

    assert run["state"] == "success", run["tasks"]
    assert run["tasks"] == {"decide": "skipped", "promoted": "skipped", "reload": "skipped", "deliver": "skipped"}
