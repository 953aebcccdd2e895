"""The closed loop end to end, with real components only: a champion served by a real ``bentoml serve`` on a real
MLflow (SQLite) registry, the simulator's replayed users with a drift injected from a simulated time, the embedded
Airflow (api-server, scheduler, dag-processor, triggerer) running the repository's DAGs: ``monitor`` every minute
flags the drift and emits the ``drift_detected`` Asset, which schedules ``retrain`` (plan, train, gate, route,
reload, deliver); the gate promotes the newer challenger, the reload makes the service serve it, and the test's
Slack-style webhook and SMTP receivers hold the drift alert and the promotion.

The data: the validated store holds weeks 0..23, so the asset-triggered retrain's "now" is week 24: it trains as of
week 20 and gates on weeks 20..23, where the champion (trained as of week 12) is beaten. The simulator replays the
weeks from the champion's cut (12) with every request's context hour shifted by 12 h from the start of week 13.
The service's registry watcher is off: only the DAG's reload can make it serve the new champion.

Only the test's own knobs differ from the repository's: a params file with the tests' small training config, a
``signals`` section (100 new impressions suffice) and smaller drift windows (min_rows 100, min_users 20). Times are
reported (printed and written to ``$RECSYS_TEST_ARTIFACTS/closed_loop.json``, default the test's tmp dir), never
asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from recsys.monitoring.drift import HOUR_OFFSET
from tests.conftest import SMALL_CONFIG
from tests.dags.harness import REPO, EmbeddedAirflow, library_env, require_airflow
from tests.receivers import SmtpReceiver, WebhookReceiver, free_port
from tests.service.conftest import ADMIN_TOKEN, BentoServerFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

MODEL = "content-ranker"
CHAMPION_CUT, NEWEST_WEEK, HORIZON = 12, 23, 4
INJECT_AT = datetime(1997, 12, 15, tzinfo=UTC)  # the start of replay week 13 (week 0 starts 1997-09-15)
RATE = 20.0
WAIT_DRIFT, WAIT_RETRAIN = 900.0, 1200.0
RECSYS = str(Path(sys.executable).with_name("recsys"))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Unused: this module's service loads its champion from the registry (no ``small_model`` training)."""
    return tmp_path_factory.mktemp("no-bundle")


def _params(path: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in SMALL_CONFIG.items():
        params[section].update(values)
    params["backtest"]["horizon"] = HORIZON
    params["drift"].update(min_rows=100, min_users=20)
    params["signals"] = {"cooldown_hours": 24.0, "min_impressions": 100, "max_age_minutes": 60.0}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> Any:
    out = subprocess.run([RECSYS, *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"recsys {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}"
    return json.loads(out.stdout)


def _task_logs(home: Path, dag_id: str, run_id: str | None = None, tail: int = 4000) -> str:
    """The task logs of a DAG run (every run of the DAG without ``run_id``), newest attempt last."""
    base = home / "logs" / f"dag_id={dag_id}"
    pattern = f"run_id={run_id}/**/*.log" if run_id else "**/*.log"
    parts = [f"--- {p.relative_to(home / 'logs')}\n{p.read_text(errors='replace')[-tail:]}"
             for p in sorted(base.glob(pattern), key=lambda p: p.stat().st_mtime)]
    return "\n".join(parts[-12:]) or f"(no task logs under {base})"


def _xcom(af: EmbeddedAirflow, dag_id: str, run_id: str, task_id: str) -> Any:
    entry = af.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                   params={"deserialize": "true", "stringify": "false"})
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


class FirstSeen(threading.Thread):
    """Polls conditions twice a second and records the wall-clock time each first held (the measured delays), and
    the simulated time the service's traffic log had reached then (``clock``)."""

    def __init__(self, clock: Callable[[], datetime | None], **checks: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.clock, self.checks = clock, checks
        self.seen: dict[str, float] = {}
        self.simulated: dict[str, datetime | None] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set() and len(self.seen) < len(self.checks):
            for name, check in self.checks.items():
                if name not in self.seen:
                    try:
                        if check():
                            self.seen[name] = time.time()
                            self.simulated[name] = self.clock()
                    except Exception:  # a log file being written, a receiver list growing: look again
                        pass
            self.halt.wait(0.5)


def _newest(traffic: Path) -> datetime | None:
    """The simulated time of the newest row of the service's traffic log."""
    from recsys.monitoring.window import latest_time

    newest = latest_time(traffic) if traffic.exists() else None
    return None if newest is None else newest.astimezone(UTC)


def _mails_about(smtp: SmtpReceiver, *words: str) -> list[Any]:
    return [m for m in smtp.mails if all(w in f"{m.subject}\n{m.text}" for w in words)]


def _posts_about(slack: WebhookReceiver, *words: str) -> list[Any]:
    return [p for p in slack.posts if all(w in p.body.decode(errors="replace") for w in words)]


def test_drift_retrains_promotes_and_serves_the_new_champion(
        raw_data_dir: Any, bento_server: BentoServerFactory, webhook_receiver: WebhookReceiver,
        smtp_receiver: SmtpReceiver, tmp_path: Path) -> None:
    require_airflow()
    t_start = time.time()
    root = tmp_path
    raw_data_dir(root)
    var = root / "var"
    uri = f"sqlite:///{var / 'mlflow' / 'mlflow.db'}"
    (var / "mlflow").mkdir(parents=True)
    notify = {"RECSYS_NOTIFY": "outbox,slack,email", "RECSYS_SLACK_WEBHOOK_URL": f"{webhook_receiver.url}/slack",
              "RECSYS_SMTP_HOST": "127.0.0.1", "RECSYS_SMTP_PORT": str(smtp_receiver.port),
              "RECSYS_SMTP_SECURITY": "none", "RECSYS_SMTP_FROM": "recsys@example.org",
              "RECSYS_SMTP_TO": "oncall@example.org"}
    lib = library_env(root, RECSYS_PARAMS_FILE=str(_params(root / "params.yaml")), MLFLOW_TRACKING_URI=uri,
                      RECSYS_MODEL_NAME=MODEL)
    setup_env = {**os.environ, **lib, "RECSYS_NOTIFY": "outbox"}  # the setup's own promotion reaches no receiver
    setup_env.pop("RECSYS_EXPERIMENT", None)

    # 1. the store holds weeks 0..23; the champion is trained as of week 12 and promoted
    replay = _cli(setup_env, "data", "replay", "--all")
    later = root / "later-batches"
    later.mkdir()
    for batch in replay["batches"]:
        if batch["week"] > NEWEST_WEEK:
            Path(batch["path"]).parent.rename(later / Path(batch["path"]).parent.name)
    _cli(setup_env, "validate", "--all")
    plan = _cli(setup_env, "schedule", "retrain")
    assert (plan["now_week"], plan["as_of_week"], plan["gate_week"]) == (NEWEST_WEEK + 1, NEWEST_WEEK + 1 - HORIZON,
                                                                         NEWEST_WEEK + 1), plan
    trained = _cli(setup_env, "train", "--as-of-week", str(CHAMPION_CUT))
    champion = int(trained["version"])
    _cli(setup_env, "registry", "promote", "--version", str(champion), "--by", "test", "--reason",
         "the closed loop's initial champion")
    setup_s = time.time() - t_start

    service_env = {**lib, "RECSYS_BUNDLE_DIR": "", "RECSYS_WATCH_INTERVAL": "0", "RECSYS_TRAFFIC_RATE": "1",
                   "RECSYS_FEEDBACK_URL": f"sqlite:///{root / 'feedback.db'}", "RECSYS_COMPILE_TREES": "false",
                   "RECSYS_ADMIN_TOKEN": ADMIN_TOKEN, "RECSYS_NOTIFY": "outbox"}
    with bento_server(**service_env) as server:
        served = httpx.get(f"{server.base}/model", timeout=10).json()
        assert served["models"]["champion"]["version"] == champion, served

        # 2. the embedded Airflow: monitor every minute, the service's connection and the receivers
        port = free_port()
        airflow_env = {**lib, **notify, "RECSYS_SERVICE_URL": server.base, "RECSYS_ADMIN_TOKEN": ADMIN_TOKEN,
                       "RECSYS_AIRFLOW_MONITOR_SCHEDULE": "* * * * *", "RECSYS_AIRFLOW_RETRIES": "0",
                       "RECSYS_AIRFLOW_WORKDIR": str(root), "RECSYS_AIRFLOW_GATE_POLICY": "auto"}
        home = root / "airflow"
        with EmbeddedAirflow(home, port, airflow_env) as af:
            def failure(what: str, dag_id: str, run_id: str | None = None) -> str:
                return (f"{what}\n=== task logs ({dag_id}) ===\n{_task_logs(home, dag_id, run_id)}\n"
                        f"=== Airflow components ===\n{af.logs()}\n=== service ===\n{server.log_tail(2000)}")

            # 3. the simulator: the weeks from the champion's cut, the context shifted from INJECT_AT on
            def serving_other() -> bool:
                model = httpx.get(f"{server.base}/model", timeout=5).json()["models"]["champion"]
                return model["version"] != champion

            traffic = var / "serving" / "traffic"
            watch = FirstSeen(
                lambda: _newest(traffic),
                onset=lambda: (_newest(traffic) or INJECT_AT - timedelta(days=1)) >= INJECT_AT,
                drift_slack=lambda: _posts_about(webhook_receiver, "drift detected", MODEL),
                drift_mail=lambda: _mails_about(smtp_receiver, "drift detected", MODEL),
                promoted_slack=lambda: _posts_about(webhook_receiver, "promoted", MODEL),
                new_champion_serving=serving_other)
            watch.start()
            sim_log = (root / "simulate.log").open("w")
            sim = subprocess.Popen(
                [RECSYS, "simulate", "--url", server.base, "--from-week", str(CHAMPION_CUT), "--to-week",
                 str(NEWEST_WEEK), "--rate", str(RATE), "--duration", "1800", "--inject", "context",
                 "--hour-shift", "12", "--inject-at", INJECT_AT.isoformat(), "--seed", "0", "--wait", "30",
                 "--json"], env=setup_env, stdout=subprocess.PIPE, stderr=sim_log, text=True)
            sim_start = time.time()
            try:
                # 4a. the monitor run whose signals fire the drift (and emit the Asset)
                fired_run, signals = None, None
                deadline = time.monotonic() + WAIT_DRIFT
                while fired_run is None:
                    assert sim.poll() is None or sim.returncode == 0, failure(
                        f"the simulator exited with {sim.returncode}: "
                        f"{(root / 'simulate.log').read_text()[-2000:]}", "monitor")
                    assert time.monotonic() < deadline, failure(f"no monitor run fired the drift within "
                                                                f"{WAIT_DRIFT:.0f} s", "monitor")
                    for run in af.runs("monitor"):
                        if af.tasks("monitor", run["dag_run_id"]).get("emit_drift") == "success":
                            fired_run = run["dag_run_id"]
                            signals = _xcom(af, "monitor", fired_run, "signals")
                            break
                    time.sleep(5)
                fired_wall = time.time()
            finally:
                if sim.poll() is None:
                    sim.terminate()  # the loop needs no more traffic: leave the 2 cores to the retrain
                sim_out, _ = sim.communicate(timeout=60)
                sim_log.close()
                sim_stopped = _newest(traffic)
            assert signals is not None and signals["fire_drift"] is True, signals
            facts = signals["drift"]["facts"]
            assert facts["status"] == "drift" and facts["model_version"] == champion, facts
            assert facts["share"] >= facts["share_threshold"] and HOUR_OFFSET in facts["drifted"], facts
            assert datetime.fromisoformat(facts["window_end"]) > INJECT_AT, facts  # the injected traffic drifted
            assert "onset" in watch.seen, "the traffic log never reached the injection's simulated time"

            # 4b. the Asset-triggered retrain: plan, train, gate (promoted), route, reload, deliver
            deadline = time.monotonic() + WAIT_RETRAIN
            retrain_run = None
            while retrain_run is None:
                assert time.monotonic() < deadline, failure("no asset-triggered retrain run", "retrain")
                runs = [r for r in af.runs("retrain") if r["run_type"] == "asset_triggered"]
                retrain_run = runs[0]["dag_run_id"] if runs else None
                time.sleep(3)
            state = af.wait_run("retrain", retrain_run, timeout=WAIT_RETRAIN)
            tasks = af.tasks("retrain", retrain_run)
            steps = ("plan", "trainable", "train", "gate", "route", "reload", "deliver")
            assert state == "success" and {t: tasks.get(t) for t in steps} == dict.fromkeys(steps, "success"), \
                failure(f"retrain {retrain_run}: {state} {tasks}", "retrain", retrain_run)
            assert tasks.get("approval") == "skipped", tasks
            for other in af.runs("retrain"):  # catchup=False still runs the last weekly tick: beyond the data
                if other["dag_run_id"] != retrain_run:
                    assert other["run_type"] == "scheduled", other
                    assert af.tasks("retrain", other["dag_run_id"]).get("train") != "success", other
            run_plan = _xcom(af, "retrain", retrain_run, "plan")
            assert (run_plan["as_of_week"], run_plan["gate_week"]) == (NEWEST_WEEK + 1 - HORIZON, NEWEST_WEEK + 1)
            new = _xcom(af, "retrain", retrain_run, "train")
            gate = _xcom(af, "retrain", retrain_run, "gate")
            new_version = int(new["version"])
            assert new_version > champion and new["as_of_week"] == NEWEST_WEEK + 1 - HORIZON, new
            assert gate["outcome"] == "promoted" and gate["target"] == new_version, gate
            reload = _xcom(af, "retrain", retrain_run, "reload")
            assert reload["versions"]["champion"] == new_version, reload  # the reload proved what it serves

            # 4c. the service serves the new champion (its watcher is off: the DAG's reload did it)
            answer = httpx.post(f"{server.base}/predict", json={"user_id": 1, "n": 10}, timeout=30).json()
            assert answer["model"]["version"] == new_version, answer["model"]
            watch.join(timeout=30)

            # 4d. the receivers: the drift alert (Slack + e-mail) and the promotion (Slack + e-mail)
            drift_posts = _posts_about(webhook_receiver, "drift detected", MODEL)
            drift_mails = _mails_about(smtp_receiver, "drift detected", MODEL)
            promo_posts = _posts_about(webhook_receiver, "promoted", MODEL, f"v{champion} → v{new_version}")
            promo_mails = _mails_about(smtp_receiver, "promoted", MODEL, f"v{new_version}")
            seen = (f"slack: {[p.body.decode()[:400] for p in webhook_receiver.posts]}\n"
                    f"mails: {[m.subject for m in smtp_receiver.mails]}")
            assert drift_posts and drift_mails, seen
            share = f"{facts['share']:.2f}"
            assert share in drift_posts[0].body.decode() and share in drift_mails[0].text, seen
            assert f"v{champion}" in drift_posts[0].body.decode(), seen
            assert promo_posts and promo_mails, seen
            watch.halt.set()

    simulation = json.loads(sim_out) if sim_out.strip() else {}  # empty: stopped (SIGTERM) before its summary
    onset_wall = watch.seen["onset"]
    alert = min(watch.seen["drift_slack"], watch.seen["drift_mail"])

    def sim_days(t: datetime | None) -> float | None:
        return None if t is None else round((t - INJECT_AT).total_seconds() / 86400, 2)

    report = {
        "simulated": {"replay_from_week": CHAMPION_CUT, "inject": "context +12 h", "inject_at": INJECT_AT.isoformat(),
                      "at_drift_alert": str(watch.simulated.get("drift_slack")),
                      "at_simulator_stop": str(sim_stopped),
                      "days_onset_to_drift_alert": sim_days(watch.simulated.get("drift_slack")),
                      "days_onset_to_simulator_stop": sim_days(sim_stopped), "summary": simulation or None},
        "setup_s": round(setup_s, 1),
        "sim_start_to_onset_s": round(onset_wall - sim_start, 1),
        "onset_to_drift_alert_received_s": round(alert - onset_wall, 1),
        "onset_to_drift_slack_s": round(watch.seen["drift_slack"] - onset_wall, 1),
        "onset_to_drift_mail_s": round(watch.seen["drift_mail"] - onset_wall, 1),
        "onset_to_monitor_fired_seen_s": round(fired_wall - onset_wall, 1),
        "onset_to_promoted_slack_s": round(watch.seen["promoted_slack"] - onset_wall, 1)
        if "promoted_slack" in watch.seen else None,
        "onset_to_new_champion_serving_s": round(watch.seen["new_champion_serving"] - onset_wall, 1),
        "monitor_run": fired_run, "retrain_run": retrain_run, "champion": champion, "new_champion": new_version,
        "drift_share": facts["share"], "drifted": facts["drifted"], "drift_window": [facts["window_start"],
                                                                                     facts["window_end"]],
        "reload": reload, "total_s": round(time.time() - t_start, 1),
    }
    out = Path(os.environ.get("RECSYS_TEST_ARTIFACTS") or tmp_path) / "closed_loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"closed loop ({out}):\n{json.dumps(report, indent=2, default=str)}")
