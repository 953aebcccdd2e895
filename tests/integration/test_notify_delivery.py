"""Notifications delivered to real receivers started by the tests (tests/receivers.py): an HTTP server standing in
for Slack's incoming webhook and an aiosmtpd SMTP server (plain, STARTTLS with AUTH, implicit TLS).

What is asserted is what arrived (recipients, subject, the numbers, the blocks, the notification id) and what the
store says, through faults: a receiver answering 500, hanging past the client's timeout, or down and back; a
permanent refusal; one channel down while the other is up; dedup within and after the period; the CLI.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recsys import notify
from recsys.cli import app
from recsys.notify import ID_HEADER, Notifier
from recsys.settings import Settings, SettingsError
from tests.receivers import SmtpReceiver, WebhookReceiver

MODEL = "content-ranker"
TIMEOUT = 0.5
DECISION = {
    "passed": False, "verdict": "reject", "mode": "vs_champion", "challenger": "v4", "reference": "v3",
    "reasons": ["NDCG@10: CI lower bound of challenger − champion 'v3' is -0.0123 (diff -0.0051, 95% CI "
                "[-0.0123, +0.0021], 412 users), below +0.0000"],
    "checks": {"ndcg": {"passed": False, "skipped": False, "diff": -0.0051, "ci_low": -0.0123, "ci_high": 0.0021,
                        "confidence": 0.95, "n": 412, "threshold": 0.0},
               "latency": {"passed": True, "skipped": False, "value": 3.2, "threshold": 50.0}},
}


def make_settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = dict(var_dir=tmp_path / "var", notify_backoff=0.01, notify_timeout=TIMEOUT,
                                notify_retries=3, mlflow_ui_url="http://mlflow.test:5000")
    return Settings(**{**base, **kw})


def slack(tmp_path: Path, hook: WebhookReceiver, **kw: Any) -> Settings:
    return make_settings(tmp_path, notify=["slack"], slack_webhook_url=f"{hook.url}/services/T0/B0/x", **kw)


def email_settings(smtp: SmtpReceiver, **kw: Any) -> dict[str, Any]:
    return dict(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security=smtp.security,
                smtp_from="recsys alerts <alerts@recsys.test>", smtp_to=["oncall@recsys.test", "ml@recsys.test"],
                **kw)


def ids_of(hook: WebhookReceiver) -> Counter[str]:
    return Counter(p.headers[ID_HEADER.lower()] for p in hook.posts)


def status(sender: Notifier, nid: str) -> dict[str, tuple[str, int]]:
    assert sender.store is not None
    [row] = [n for n in sender.store.recent(limit=1000) if n.id == nid]
    return {d.channel: (d.status, d.attempts) for d in row.deliveries}


# -- what is delivered ---------------------------------------------------------------------------------------
def test_slack_gets_text_blocks_the_numbers_and_the_id(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    sender = notify.notifier(slack(tmp_path, webhook_receiver))
    out = sender.event("gate_rejected", {"decision": DECISION, "policy": "auto", "run_id": "abc123"},
                       model_name=MODEL, version=4)
    assert out is not None and [c.status for c in out.channels] == ["sent"]
    [post] = webhook_receiver.posts
    assert post.path == "/services/T0/B0/x" and post.headers[ID_HEADER.lower()] == out.id
    body = post.json
    assert "content-ranker: v4 rejected by the promotion gate" in body["text"]
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds[0] == "header" and "section" in kinds and kinds[-1] == "context"
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n", 1)[1]
              for b in body["blocks"] if "fields" in b for f in b["fields"]}
    assert fields["Delta"] == "-0.0051" and fields["95% CI"].startswith("[-0.0123, +0.0021]")
    assert fields["Decision"] == "reject" and fields["Failed checks"] == "ndcg" and fields["Version"] == "v4"
    context = body["blocks"][-1]["elements"][0]["text"]
    assert "<http://mlflow.test:5000/#/runs/abc123|MLflow run>" in context
    assert "docs/runbooks/gate-rejected.md" in context and out.id in context
    assert body["metadata"]["event_payload"]["notification_id"] == out.id


def test_email_over_starttls_with_login(tmp_path: Path, tls_cert: tuple[Path, Path]) -> None:
    cert, key = tls_cert
    with SmtpReceiver(security="starttls", cert=cert, key=key, user="bot", password="s3cret") as smtp:
        settings = make_settings(tmp_path, notify=["email"], smtp_user="bot", smtp_password="s3cret",
                                 smtp_ca_file=cert, **email_settings(smtp))
        out = notify.notifier(settings).event(
            "batch_quarantined", {"week": 7, "rows": 1234, "failed_checks": ["rating.range", "volume.band"],
                                  "quarantine_path": "data/quarantine/week=07/x", "data_docs": "var/dd/index.html"},
            body="| table | check |")
        assert out is not None and out.channels[0].status == "sent", out
        [mail] = smtp.mails
    assert mail.tls and mail.authenticated_as == "bot"
    assert mail.mail_from == "alerts@recsys.test" and mail.rcpt_tos == ["oncall@recsys.test", "ml@recsys.test"]
    assert mail.subject == "[warning] week 07 batch quarantined: rating.range, volume.band"
    assert mail.message["Message-ID"] == f"<{out.id}@recsys.test>" and mail.message[ID_HEADER] == out.id
    for part in (mail.text, mail.html):
        assert "1234" in part and "2: rating.range, volume.band" in part and "batch-quarantined.md" in part
    assert "<table" in mail.html and "&lt;" not in mail.text  # the HTML part is HTML, the text part is text


@pytest.mark.parametrize("security", ["ssl", "none"])
def test_email_over_implicit_tls_and_plain(tmp_path: Path, tls_cert: tuple[Path, Path], security: str) -> None:
    cert, key = tls_cert
    with SmtpReceiver(security=security, cert=cert, key=key) as smtp:
        settings = make_settings(tmp_path, notify=["email"], smtp_ca_file=cert, **email_settings(smtp))
        out = notify.notifier(settings).event("drift_detected", {
            "share": 0.4286, "share_threshold": 0.3, "reason": "3 of 7 columns drifted",
            "drifted": [{"column": "ctx_hour_offset", "score": 0.61, "threshold": 0.2}]}, model_name=MODEL, version=3)
        assert out is not None and out.channels[0].status == "sent", out
        [mail] = smtp.mails
    assert mail.tls is (security == "ssl")
    assert "0.43 (threshold 0.30)" in mail.text and "ctx_hour_offset (0.61/0.20)" in mail.text


def test_a_tls_server_whose_certificate_is_not_trusted_is_refused(tmp_path: Path,
                                                                  tls_cert: tuple[Path, Path]) -> None:
    cert, key = tls_cert
    with SmtpReceiver(security="starttls", cert=cert, key=key) as smtp:
        sender = notify.notifier(make_settings(tmp_path, notify=["email"], **email_settings(smtp)))  # no CA file
        out = sender.event("test", {"nonce": "x"})
        assert out is not None and out.channels[0].status == "pending" and "CERTIFICATE" in str(out.channels[0].error)
        assert smtp.mails == []


# -- faults --------------------------------------------------------------------------------------------------
def test_a_500_is_retried_then_delivered(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_next(2)
    sender = notify.notifier(slack(tmp_path, webhook_receiver))
    out = sender.event("test", {"nonce": "a"})
    assert out is not None and (out.channels[0].status, out.channels[0].attempts) == ("sent", 3)
    assert [p.status for p in webhook_receiver.requests] == [500, 500, 200]
    assert status(sender, out.id) == {"slack": ("sent", 3)}


def test_a_receiver_that_keeps_failing_leaves_the_message_pending_for_replay(
        tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_next(3)
    sender = notify.notifier(slack(tmp_path, webhook_receiver))
    out = sender.event("test", {"nonce": "b"})
    assert out is not None and out.channels[0].status == "pending" and "500" in str(out.channels[0].error)
    assert webhook_receiver.posts == [] and len(webhook_receiver.requests) == 3
    replay = sender.replay()
    assert (replay.claimed, replay.sent, replay.pending) == (1, 1, 0)
    assert ids_of(webhook_receiver) == {out.id: 1} and status(sender, out.id) == {"slack": ("sent", 4)}
    assert sender.replay().claimed == 0  # nothing left: a second replay sends nothing


def test_a_timeout_leaves_it_pending_and_replay_delivers_it(tmp_path: Path,
                                                           webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.hang_next(3, seconds=TIMEOUT * 3)
    sender = notify.notifier(slack(tmp_path, webhook_receiver))
    out = sender.event("test", {"nonce": "c"})
    assert out is not None and out.channels[0].status == "pending"
    assert "Timeout" in str(out.channels[0].error) and out.channels[0].attempts == 3
    assert sender.replay().sent == 1
    assert ids_of(webhook_receiver) == {out.id: 1}


def test_a_permanent_refusal_is_failed_not_retried(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_next(1, status=404)
    sender = notify.notifier(slack(tmp_path, webhook_receiver))
    out = sender.event("test", {"nonce": "d"})
    assert out is not None and (out.channels[0].status, out.channels[0].attempts) == ("failed", 1)
    assert sender.replay().claimed == 0  # a replay leaves refused messages alone ...
    assert sender.replay(include_failed=True).sent == 1  # ... unless told to retry them
    assert ids_of(webhook_receiver) == {out.id: 1}


def test_smtp_transient_and_permanent_answers(tmp_path: Path, smtp_receiver: SmtpReceiver) -> None:
    sender = notify.notifier(make_settings(tmp_path, notify=["email"], **email_settings(smtp_receiver)))
    smtp_receiver.fail_next(1, 451)
    first = sender.event("test", {"nonce": "e"})
    assert first is not None and (first.channels[0].status, first.channels[0].attempts) == ("sent", 2)
    smtp_receiver.fail_next(1, 554, "5.7.1 rejected")
    second = sender.event("test", {"nonce": "f"})
    assert second is not None and second.channels[0].status == "failed" and "554" in str(second.channels[0].error)
    assert [m.message[ID_HEADER] for m in smtp_receiver.mails] == [first.id]


def test_messages_sent_while_the_receiver_is_down_are_all_delivered_once_after_replay(
        tmp_path: Path, webhook_receiver: WebhookReceiver, smtp_receiver: SmtpReceiver) -> None:
    """The receiver stops; N messages are sent (e-mail, up, gets each at once); it starts again on the same port;
    two replays race: every message arrives exactly once, counted by notification id."""
    n = 20
    settings = make_settings(tmp_path, notify=["slack", "email"], notify_retries=2,
                             slack_webhook_url=webhook_receiver.url, **email_settings(smtp_receiver))
    sender = notify.notifier(settings)
    webhook_receiver.stop()
    sent = [sender.event("drift_detected", {"share": 0.5, "share_threshold": 0.3}, model_name=MODEL, version=v)
            for v in range(1, n + 1)]
    ids = [o.id for o in sent if o is not None]
    assert len(ids) == n
    assert all({c.channel: c.status for c in o.channels} == {"slack": "pending", "email": "sent"}
               for o in sent if o is not None)  # one channel down never blocks the other
    assert sorted(m.message[ID_HEADER] for m in smtp_receiver.mails) == sorted(ids)
    assert len(sender.store.recent(pending=True, limit=100)) == n  # type: ignore[union-attr]

    webhook_receiver.start()
    results: list[Any] = []
    racers = [threading.Thread(target=lambda: results.append(notify.notifier(settings).replay()))
              for _ in range(2)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert sum(r.sent for r in results) == n and sum(r.pending for r in results) == 0
    assert ids_of(webhook_receiver) == dict.fromkeys(ids, 1)  # nothing lost, nothing sent twice
    assert sender.replay().claimed == 0 and len(webhook_receiver.posts) == n
    assert len(smtp_receiver.mails) == n  # the replay did not resend what e-mail had delivered
    print(f"\n{n} messages sent while the receiver was down, {len(ids_of(webhook_receiver))} delivered once "
          "after it came back")


def test_dedup_suppresses_a_repeat_within_the_period_and_sends_it_after(
        tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    sender = notify.notifier(slack(tmp_path, webhook_receiver, notify_dedup_seconds=3600))
    details = {"variant": "champion", "ctr": 0.031, "baseline_ctr": 0.062, "relative_drop": 0.5, "impressions": 900}
    first = sender.send(sender.build("ctr_degraded", details, model_name=MODEL, version=5))
    repeat_n = sender.build("ctr_degraded", details, model_name=MODEL, version=5)
    repeat = sender.send(repeat_n)
    other = sender.send(sender.build("ctr_degraded", {**details, "variant": "challenger"}, model_name=MODEL,
                                     version=5))
    later_n = sender.build("ctr_degraded", details, model_name=MODEL, version=5)
    later = sender.send(later_n.model_copy(update={"ts": repeat_n.ts + timedelta(seconds=3601)}))
    assert repeat.suppressed_by == first.id and repeat.channels[0].status == "suppressed"
    assert other.suppressed_by is None and later.suppressed_by is None
    assert list(ids_of(webhook_receiver)) == [first.id, other.id, later.id]
    assert status(sender, repeat.id) == {"slack": ("suppressed", 0)}  # recorded, visible in `notify list`
    fields = " ".join(f["text"] for b in webhook_receiver.posts[0].json["blocks"] if "fields" in b
                      for f in b["fields"])
    assert "3.1%" in fields and "6.2%" in fields and "50.0%" in fields and "champion / v5" in fields


# -- configuration and the CLI -------------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "variable"), [
    ({"notify": ["slack"]}, "RECSYS_SLACK_WEBHOOK_URL"),
    ({"notify": ["email"], "smtp_from": "a@b.c", "smtp_to": ["x@y.z"]}, "RECSYS_SMTP_HOST"),
    ({"notify": ["email"], "smtp_host": "h", "smtp_to": ["x@y.z"]}, "RECSYS_SMTP_FROM"),
    ({"notify": ["email"], "smtp_host": "h", "smtp_from": "a@b.c"}, "RECSYS_SMTP_TO"),
    ({"notify": ["email"], "smtp_host": "h", "smtp_from": "a@b.c", "smtp_to": ["x@y.z"], "smtp_user": "u"},
     "RECSYS_SMTP_PASSWORD"),
])
def test_a_channel_without_its_settings_names_the_variable(tmp_path: Path, kw: dict[str, Any],
                                                           variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        notify.notifier(make_settings(tmp_path, **kw))
    assert notify.notify(make_settings(tmp_path, **kw), "model_swap_failed", version=3) is None  # never raises


def test_the_public_call_never_raises_and_sends(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    settings = slack(tmp_path, webhook_receiver, model_name=MODEL)
    out = notify.notify(settings, "model_swap_failed", version=7, details={"error": "bundle sha256 mismatch",
                                                                          "serving": 6})
    assert out is not None and out.channels[0].status == "sent"
    body = webhook_receiver.posts[0].json
    assert "could not swap to v7" in body["text"] and "model-swap-failed.md" in str(body["blocks"])


def test_recsys_notify_test_replay_and_list_through_the_cli(tmp_path: Path, webhook_receiver: WebhookReceiver,
                                                             smtp_receiver: SmtpReceiver,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"RECSYS_VAR_DIR": str(tmp_path / "var"), "RECSYS_NOTIFY": "outbox,slack,email",
           "RECSYS_SLACK_WEBHOOK_URL": webhook_receiver.url, "RECSYS_SMTP_HOST": "127.0.0.1",
           "RECSYS_SMTP_PORT": str(smtp_receiver.port), "RECSYS_SMTP_SECURITY": "none",
           "RECSYS_SMTP_FROM": "alerts@recsys.test", "RECSYS_SMTP_TO": "oncall@recsys.test",
           "RECSYS_NOTIFY_TIMEOUT": str(TIMEOUT), "RECSYS_NOTIFY_BACKOFF": "0.01"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    ok = runner.invoke(app, ["notify", "test"])
    assert ok.exit_code == 0, ok.output
    assert "every channel delivered it" in ok.stdout and len(webhook_receiver.posts) == len(smtp_receiver.mails) == 1

    webhook_receiver.stop()
    down = runner.invoke(app, ["notify", "test", "--json"])
    assert down.exit_code == 1
    import json

    result = json.loads(down.stdout)
    assert {c["channel"]: c["status"] for c in result["channels"]} == {"outbox": "sent", "slack": "pending",
                                                                       "email": "sent"}
    listed = json.loads(runner.invoke(app, ["notify", "list", "--pending", "--json"]).stdout)
    assert [n["id"] for n in listed["notifications"]] == [result["id"]]

    webhook_receiver.start()
    replayed = runner.invoke(app, ["notify", "replay"])
    assert replayed.exit_code == 0, replayed.output
    assert "1 sent" in replayed.stdout and ids_of(webhook_receiver)[result["id"]] == 1
    assert json.loads(runner.invoke(app, ["notify", "list", "--pending", "--json"]).stdout)["notifications"] == []

    monkeypatch.delenv("RECSYS_SLACK_WEBHOOK_URL")
    broken = runner.invoke(app, ["notify", "test"])
    assert broken.exit_code == 1 and "RECSYS_SLACK_WEBHOOK_URL is not set" in broken.stderr


def test_a_replay_stops_trying_a_channel_that_still_fails(tmp_path: Path, webhook_receiver: WebhookReceiver,
                                                          smtp_receiver: SmtpReceiver) -> None:
    """A receiver still down costs a replay one message's retries, not every message's; the other channel's
    pending messages are sent all the same."""
    settings = make_settings(tmp_path, notify=["slack", "email"], slack_webhook_url=webhook_receiver.url,
                             **email_settings(smtp_receiver))
    sender = notify.notifier(settings)
    webhook_receiver.stop()
    smtp_receiver.fail_next(3 * 3)  # every attempt of the first three e-mails: all pending on both channels
    ids = [o.id for o in (sender.event("test", {"nonce": str(i)}) for i in range(3)) if o is not None]
    assert all(set(status(sender, i).values()) == {("pending", 3)} for i in ids)
    replay = sender.replay()
    assert replay.channels["slack"] == {"pending": 1} and replay.channels["email"] == {"sent": 3}
    assert [status(sender, i)["slack"] for i in ids] == [("pending", 6), ("pending", 3), ("pending", 3)]
    webhook_receiver.start()
    assert sender.replay().sent == 3 and ids_of(webhook_receiver) == dict.fromkeys(ids, 1)
