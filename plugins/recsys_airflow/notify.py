"""Airflow's own Slack-webhook and SMTP notifiers on task and DAG failures (the library's notifications of
promotions, rollbacks, approval requests and drift come from the commands themselves: issue 8's templates).

Each notifier is wrapped so that a connection nobody configured turns it off with one log line instead of an
error in every failure callback: ``recsys_slack`` (``AIRFLOW_CONN_RECSYS_SLACK='{"conn_type": "slackwebhook",
"password": "https://hooks.slack.com/services/..."}'``) and ``recsys_smtp`` with ``RECSYS_SMTP_TO`` recipients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from recsys_airflow.config import SLACK_CONN, SMTP_CONN

if TYPE_CHECKING:
    from recsys_airflow.config import RunnerConfig

TASK_FAILED = ("recsys: task {{ ti.dag_id }}.{{ ti.task_id }} failed (try {{ ti.try_number }}, run "
               "{{ run_id }}): {{ exception }}")
DAG_FAILED = "recsys: DAG {{ dag.dag_id }} run {{ run_id }} failed: {{ reason }}"
LINK = "Log: {{ ti.log_url }}"


class IfConnected(BaseNotifier):
    """Send through ``notifier`` when connection ``conn_id`` exists; otherwise log that it is off."""

    template_fields = ()

    def __init__(self, notifier: BaseNotifier, conn_id: str) -> None:
        super().__init__()
        self.notifier = notifier
        self.conn_id = conn_id

    def notify(self, context: Any) -> None:
        from recsys_airflow.runner import find_connection

        if find_connection(self.conn_id) is None:
            self.log.info("connection %s is not configured: %s is off", self.conn_id,
                          type(self.notifier).__name__)
            return
        self.notifier(context)


def _notifiers(config: RunnerConfig, text: str, subject: str) -> list[BaseNotifier]:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    notifiers: list[BaseNotifier] = [IfConnected(SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN, text=text),
                                                 SLACK_CONN)]
    if config.alert_to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        html = "<p>" + text.replace("\n", "<br>") + "</p>"
        notifiers.append(IfConnected(SmtpNotifier(to=config.alert_to, from_email=config.alert_from,
                                                  smtp_conn_id=SMTP_CONN, subject=subject, html_content=html),
                                     SMTP_CONN))
    return notifiers


def failure_notifiers(config: RunnerConfig) -> list[BaseNotifier]:
    """A task's final failure (after its retries): Slack and e-mail, with the command's one-line error."""
    return _notifiers(config, f"{TASK_FAILED}\n{LINK}", "[recsys] {{ ti.dag_id }}.{{ ti.task_id }} failed")


def dag_failure_notifiers(config: RunnerConfig) -> list[BaseNotifier]:
    """A DAG run's failure."""
    return _notifiers(config, DAG_FAILED, "[recsys] DAG {{ dag.dag_id }} failed")
