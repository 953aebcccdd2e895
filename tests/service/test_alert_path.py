"""The alert path end to end, with real programs only: ``bentoml serve`` on a real MLflow registry, scraped by
Prometheus (Debian's package) evaluating the repository's rules, a real fault (the service's processes killed),
Alertmanager routing the alert with the repository's configuration to the test's SMTP server and Slack-style
webhook receiver, and the resolved notice once the service is back. Then the monitoring stages run on the traffic
the service logged, and every panel of every dashboard is asked for data from what Prometheus scraped.

Only timings are the test's own: Prometheus scrapes and evaluates every second, the alert's ``for:`` is 2 s
(its expression is the repository's), Alertmanager groups for 1 s. The measured delays are printed and written to
``<tmp>/alert-path.json``. With ``RECSYS_RENDER_DASHBOARDS=DIR`` the dashboards are also drawn from this run's
Prometheus into ``DIR/<uid>.png`` (the pictures in docs/monitoring.md come from there).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil
import pytest

from recsys.monitoring import stack
from tests.receivers import SmtpReceiver, WebhookReceiver, free_port
from tests.service.conftest import BentoServer, BentoServerFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(not all(map(stack.has_binary, ("prometheus", "alertmanager"))),
                                 reason="Prometheus and Alertmanager are not installed (make monitoring-tools)")]

MODEL = "content-ranker"
DOWN = "RecsysServiceDown"
SHADOW = {"name": "shadowing", "salt": "e2e", "variants": {"champion": 1.0}, "shadow": "challenger",
          "shadow_share": 1.0}
AB = {"name": "alert-path-ab", "salt": "e2e", "variants": {"champion": 0.5, "challenger": 0.5}}


def _with_seed(result: Any, seed: int) -> Any:
    ranker = result.config.ranker.model_copy(update={"seed": seed})
    return result.with_config(result.config.model_copy(update={"ranker": ranker}))


@pytest.fixture(scope="module")
def registry(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """v1 (champion) and v2 (challenger): the small model with its drift reference, two seeds."""
    from recsys.data.replay import interactions_before
    from recsys.monitoring.reference import REFERENCE_FILE, build_reference
    from recsys.registry.tracking import log_training, register

    ml, clock, rec, week = small_model.ml, small_model.clock, small_model.result.recommender, small_model.as_of
    reference = build_reference(rec, interactions_before(ml.interactions, clock, week), ml.users,
                                clock.start(week - 4), clock.start(week))
    root = tmp_path_factory.mktemp("alert-path-registry")
    uri = f"sqlite:///{root}/mlflow.db"
    bundle = root / "bundle"
    rec.save(bundle, frames={REFERENCE_FILE: reference})
    for seed in (1, 2):
        register(log_training(_with_seed(small_model.result, seed), bundle, tracking_uri=uri), MODEL,
                 tracking_uri=uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.set_registered_model_alias(MODEL, "challenger", "2")
    return SimpleNamespace(uri=uri, root=root)


@contextlib.contextmanager
def alertmanager(tmp: Path, smtp: SmtpReceiver, slack: WebhookReceiver) -> Iterator[stack.Daemon]:
    """Alertmanager with the repository's routing, delivering to the test's receivers."""
    url_file = tmp / "slack_webhook_url"
    url_file.write_text(f"{slack.url}/slack", encoding="utf-8")
    delivery = stack.Delivery(smarthost=f"127.0.0.1:{smtp.port}", require_tls=False, to="oncall@example.org",
                              slack_url_file=url_file)
    config = stack.alertmanager_config(delivery, group_wait="1s", group_interval="1s", repeat_interval="1h")
    with stack.running(stack.start_alertmanager(config, tmp / "alertmanager", free_port())) as (manager,):
        yield manager


def prometheus(tmp: Path, target: str, manager: stack.Daemon) -> stack.Daemon:
    """Prometheus with the repository's rules (only the alert under test waits 2 s instead of its ``for:``)."""
    config = stack.prometheus_config([target], rule_files=[], alertmanager=manager.url.removeprefix("http://"),
                                     scrape_interval="1s", evaluation_interval="1s")
    return stack.start_prometheus(config, tmp / "prometheus", free_port(),
                                  rules=stack.load_rules(for_overrides={DOWN: "2s"}))


def _traffic(server: BentoServer, users: list[int], rounds: int, seed: int) -> int:
    """Predictions for known users (several each, so the drift check has its rows) and unknown ones, and feedback
    on some answers (clicks and watches tied to their request); returns the answers."""
    import random

    rng = random.Random(seed)
    answered = 0
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for r in range(rounds):
            for user in [*users, *(10_000 + seed * 1000 + r * 50 + i for i in range(10))]:
                resp = client.post("/predict", json={"user_id": user, "n": 10})
                assert resp.status_code == 200, resp.text
                answered += 1
                body = resp.json()
                if rng.random() < 0.3:
                    kind = "watch" if rng.random() < 0.3 else "click"
                    ack = client.post("/feedback", json={
                        "event_id": uuid.uuid4().hex, "request_id": body["request_id"], "user_id": user,
                        "item_id": body["items"][rng.randrange(3)]["item_id"], "event": kind,
                        "variant": body["model"]["variant"]})
                    assert ack.status_code == 202, ack.text
    return answered


def _kill(server: BentoServer) -> None:
    """The fault: every process of the service dies at once (a crash, not a shutdown)."""
    for proc in server.tree():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=30)


def _notices(smtp: SmtpReceiver, slack: WebhookReceiver, alert: str, status: str) -> tuple[list[Any], list[Any]]:
    """The e-mails and Slack posts about ``alert`` in ``status`` (``firing`` or ``resolved``)."""
    mails = [m for m in smtp.mails if alert in m.subject and status.upper() in m.subject.upper()]
    posts = [p for p in slack.posts if alert in p.body.decode() and status.upper() in p.body.decode().upper()]
    return mails, posts


def _wait_notices(smtp: SmtpReceiver, slack: WebhookReceiver, alert: str, status: str, since: float
                  ) -> dict[str, float]:
    """Seconds from ``since`` until the first e-mail and the first Slack post about ``alert`` in ``status``."""
    got: dict[str, float] = {}
    while len(got) < 2:
        mails, posts = _notices(smtp, slack, alert, status)
        now = time.perf_counter() - since
        if mails and "email" not in got:
            got["email"] = round(now, 2)
        if posts and "slack" not in got:
            got["slack"] = round(now, 2)
        time.sleep(0.1)
    return got


def test_a_dead_service_pages_by_email_and_slack_resolves_and_every_panel_has_data(
        small_model: SimpleNamespace, registry: SimpleNamespace, bento_server: BentoServerFactory,
        tmp_path: Path) -> None:
    from recsys.monitoring.ctr import CtrConfig
    from recsys.monitoring.live import LiveConfig
    from recsys.monitoring.panels import panel_queries, render_panels, run_queries
    from recsys.settings import ServingSettings
    from recsys.stages.drift import DriftParams, drift
    from recsys.stages.live import LiveParams, monitor_live
    from recsys.stages.monitor import CtrParams, monitor_ctr

    users = [int(u) for u in small_model.result.recommender.profiles.index[:60]]
    var = tmp_path / "var"
    env = {"MLFLOW_TRACKING_URI": registry.uri, "RECSYS_BUNDLE_DIR": "", "RECSYS_WATCH_INTERVAL": "1",
           "RECSYS_VAR_DIR": str(var), "RECSYS_FEEDBACK_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
           "RECSYS_COMPILE_TREES": "false"}
    port = free_port()
    report: dict[str, Any] = {}
    began = datetime.now(UTC)
    with SmtpReceiver() as smtp, WebhookReceiver() as slack, alertmanager(tmp_path, smtp, slack) as manager, \
            contextlib.ExitStack() as later:
        # phase 1: the champion serves, the challenger is scored in the shadow
        with bento_server(port=port, RECSYS_EXPERIMENT=json.dumps(SHADOW), **env) as server:
            # Prometheus once the service answers: scraping a service still starting would page before the fault
            prom = later.enter_context(stack.running(prometheus(tmp_path, f"127.0.0.1:{port}", manager)))[0]
            while not stack.query(prom.url, 'up{job="recsys"} == 1'):
                time.sleep(0.2)
            report["answers_before_fault"] = _traffic(server, users, 2, seed=1)
            # scraped before and after: this phase's increase is seen (the shadow is scored in this phase only)
            while not stack.query(prom.url, "sum(increase(recsys_shadow_overlap_count[1m])) > 0"):
                time.sleep(0.2)
            assert not _notices(smtp, slack, DOWN, "firing")[0]  # healthy: nothing said
            fault = time.perf_counter()
            _kill(server)
            report["fault_to_firing_s"] = _wait_notices(smtp, slack, DOWN, "firing", fault)
        mails, posts = _notices(smtp, slack, DOWN, "firing")
        mail, post = mails[0], posts[0]
        assert mail.rcpt_tos == ["oncall@example.org"]
        assert f"127.0.0.1:{port}" in mail.text + mail.html  # the instance that is down
        assert "runbooks/" in mail.text + mail.html and "runbooks/" in post.body.decode()
        assert post.path == "/slack" and (post.json.get("attachments") or post.json.get("blocks"))

        # phase 2: the service is back (as an A/B test of champion and challenger) and the alert resolves
        restart = time.perf_counter()
        with bento_server(port=port, RECSYS_EXPERIMENT=json.dumps(AB), **env) as server:
            report["restart_to_ready_s"] = round(time.perf_counter() - restart, 2)
            # from the restart (Prometheus sees the target up as soon as /metrics answers, maybe before /readyz)
            report["restart_to_resolved_s"] = _wait_notices(smtp, slack, DOWN, "resolved", restart)
            report["answers_after_restart"] = _traffic(server, users, 3, seed=2)
            assert len(_notices(smtp, slack, DOWN, "firing")[0]) == 1  # paged once, not repeated

            # the monitoring stages on what the service logged; the service exports their verdicts
            settings = ServingSettings(var_dir=var, tracking_uri=registry.uri,
                                       feedback_url=env["RECSYS_FEEDBACK_URL"], experiment=json.dumps(AB))
            answered = report["answers_before_fault"] + report["answers_after_restart"]

            def live_metrics() -> Any:
                return monitor_live(settings, LiveParams(config=LiveConfig(window=timedelta(hours=1),
                                                                           attribution_window=timedelta(seconds=1))))

            # the assignment log is written off the request path: the live server's last answers may still be
            # queued, so wait (bounded) for them; what the killed server had answered was drained long before
            deadline = time.monotonic() + 10.0
            live = live_metrics()
            while live.metrics.impressions < answered and time.monotonic() < deadline:
                time.sleep(0.2)
                live = live_metrics()
            assert live.metrics.impressions == answered
            assert live.metrics.srm_ok is not None
            # short attribution windows: the traffic is seconds old (the defaults are an hour and 30 minutes)
            ctr = monitor_ctr(settings, CtrParams(config=CtrConfig(attribution_minutes=0.02, baseline_impressions=100,
                                                                   min_impressions=50)))
            assert any(v.ctr is not None for v in ctr.report.versions), ctr.report
            checked = drift(settings, DriftParams(last=timedelta(hours=1)))
            assert checked.share is not None, checked.reason  # a verdict, so the drift panels have a number
            time.sleep(8)  # the service's metrics loop (5 s) and a scrape
            dashboards = Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "dashboards"
            queries = panel_queries(dashboards)
            outcomes = run_queries(prom.url, queries, substitutions={"__rate_interval": "5m", "__range": "15m"})
            if os.environ.get("RECSYS_RENDER_DASHBOARDS"):
                render_panels(prom.url, dashboards, Path(os.environ["RECSYS_RENDER_DASHBOARDS"]), start=began,
                              end=datetime.now(UTC), step=2, substitutions={"__rate_interval": "20s"})
        empty = [f"{o.query.dashboard} / {o.query.panel} [{o.query.ref_id}]: {o.error or 'no data'} ({o.sent})"
                 for o in outcomes if not o.has_data]
        report["panels"] = len({(o.query.dashboard_uid, o.query.panel_id) for o in outcomes})
        report["queries"] = len(outcomes)
        report["queries_with_data"] = sum(o.has_data for o in outcomes)
        report["alertmanager_alerts"] = httpx.get(f"{manager.url}/api/v2/alerts", timeout=10).json()
    (tmp_path / "alert-path.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "alertmanager_alerts"}, indent=2))
    assert not empty, "panels without data:\n" + "\n".join(empty)
