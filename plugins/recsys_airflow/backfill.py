"""Replay the data's history through the embedded Airflow with two backfills (``make backfill``).

``python -m recsys_airflow.backfill --home var/backfill/airflow --port 8090 --from 1997-09-22 --to 1998-04-27``
(in the Airflow env, ``plugins/`` on the path; the library's ``RECSYS_*`` settings, e.g. ``RECSYS_DATA_DIR`` and
``RECSYS_VAR_DIR``, in the environment: the tasks' ``recsys`` subprocesses inherit them):

1. prepares and starts the embedded Airflow of :mod:`recsys_airflow.local` with every DAG paused at creation;
2. unpauses ``ingest_and_validate`` and creates its backfill over ``[--from, --to]`` (``airflow backfill create``,
   one run at a time, in date order), waits until the scheduler has finished it;
3. then the same for ``retrain``: each run trains on the weeks known at its date and gates against the champion
   of the time, so it must come after the ingest of its week and after the retrain of the week before;
4. runs ``recsys registry timeline --json`` (the champion week by week, under ``<var_dir>/reports/replay/``);
5. prints a summary (wall time of each backfill, runs per state, whether they ran in date order, the timeline's
   files) and stops Airflow.

The scheduler creates no cron or asset-triggered run (``AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False``) and the
other DAGs (``monitor``, ``ab_decision``, ``rollback``) stay paused: nothing but the backfills runs. The metadata
DB must not be SQLite (``RECSYS_AIRFLOW_DB_URL``, e.g. PostgreSQL): ``airflow backfill create`` fails there with
"database is locked" while the scheduler runs. Exit code 1 when a run failed or a backfill did not finish within
``--timeout``, 2 on SQLite. Rerunning with the same ``--home`` creates no run for a date that already has one.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from recsys_airflow.config import REPO
from recsys_airflow.local import (
    USER,
    airflow,
    airflow_env,
    components,
    password,
    prepared,
    start,
    stop,
    wait_healthy,
)

DAGS = ("ingest_and_validate", "retrain")
FINISHED = ("success", "failed")


class Api:
    """Airflow's REST API with the admin's JWT (renewed once on a 401)."""

    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home, self._token = url, home, ""

    def _login(self) -> str:
        body = json.dumps({"username": USER, "password": password(self.home)}).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:  # nosec B310: http URL of the local Airflow API this tool started
            return str(json.load(r)["access_token"])

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        for attempt in (0, 1):
            if not self._token:
                self._token = self._login()
            req = urllib.request.Request(f"{self.url}/api/v2{path}" + (f"?{query}" if query else ""),
                                         headers={"Authorization": f"Bearer {self._token}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:  # nosec B310: http URL of the local Airflow API this tool started
                    return json.load(r)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0:
                    self._token = ""  # nosec B105: clears the cached token, not a password
                    continue
                raise
        raise AssertionError("unreachable")


def wait_dags_parsed(api: Api, dags: tuple[str, ...], timeout: float = 300) -> None:
    """Wait until the dag-processor has serialized ``dags`` (a backfill needs the serialized DAG)."""
    deadline, missing = time.monotonic() + timeout, list(dags)
    while time.monotonic() < deadline:
        missing = []
        for dag_id in dags:
            try:
                api.get(f"/dags/{dag_id}/details")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
                missing.append(dag_id)
        if not missing:
            return
        time.sleep(2)
    raise TimeoutError(f"the dag-processor did not parse {', '.join(missing)} within {timeout:.0f} s "
                       "(see <home>/logs/dag-processor.log)")


def backfill_runs(api: Api, dag_id: str, start_day: date, end_day: date) -> list[dict[str, Any]]:
    """The backfill runs of ``dag_id`` with a logical date in ``[start_day, end_day]``, oldest first."""
    runs = api.get(f"/dags/{dag_id}/dagRuns", run_type="backfill", limit=1000, order_by="logical_date",
                   logical_date_gte=f"{start_day.isoformat()}T00:00:00Z",
                   logical_date_lte=f"{end_day.isoformat()}T23:59:59Z")["dag_runs"]
    return list(runs)


def run_backfill(env: dict[str, str], api: Api, dag_id: str, start_day: date, end_day: date, *,
                 max_active_runs: int, timeout: float, poll: float = 5) -> dict[str, Any]:
    """Unpause ``dag_id``, create its backfill, wait until the scheduler marks it complete; what happened."""
    airflow(env, "dags", "unpause", dag_id)
    t0 = time.monotonic()
    # the cron fires at 03:00: the window spans whole days, so --to 1998-04-27 includes that Monday's run
    created = airflow(env, "backfill", "create", "--dag-id", dag_id, "--from-date", f"{start_day}T00:00:00+00:00",
                      "--to-date", f"{end_day}T23:59:59+00:00", "--max-active-runs", str(max_active_runs),
                      check=False)
    if created.returncode != 0:
        raise RuntimeError(f"airflow backfill create --dag-id {dag_id} failed ({created.returncode}): "
                           f"{(created.stderr or created.stdout).strip()[-1500:]}")
    backfill = max(api.get("/backfills", dag_id=dag_id, limit=100)["backfills"], key=lambda b: b["id"])
    print(f"{dag_id}: backfill {backfill['id']} created ({start_day} … {end_day}, max_active_runs "
          f"{max_active_runs})", file=sys.stderr, flush=True)
    deadline, seen = t0 + timeout, Counter[str]()
    while True:
        backfill = api.get(f"/backfills/{backfill['id']}")
        runs = backfill_runs(api, dag_id, start_day, end_day)
        states = Counter(str(r["state"]) for r in runs)
        if states != seen:
            seen = states
            print(f"  {dag_id} after {time.monotonic() - t0:6.0f} s: "
                  + ", ".join(f"{n} {s}" for s, n in sorted(states.items())), file=sys.stderr, flush=True)
        if backfill["completed_at"] and all(r["state"] in FINISHED for r in runs):
            break
        if time.monotonic() > deadline:
            return {"dag_id": dag_id, "backfill_id": backfill["id"], "wall_s": time.monotonic() - t0,
                    "completed": False, "runs": runs, "states": dict(states)}
        time.sleep(poll)
    return {"dag_id": dag_id, "backfill_id": backfill["id"], "wall_s": time.monotonic() - t0, "completed": True,
            "runs": runs, "states": dict(states)}


def in_date_order(runs: list[dict[str, Any]]) -> bool:
    """The runs started in logical-date order, each after the one before had ended (none overlapped)."""
    runs = sorted(runs, key=lambda r: r["logical_date"])
    for before, after in pairwise(runs):
        if not (before["end_date"] and after["start_date"]):
            return False
        if datetime.fromisoformat(after["start_date"]) < datetime.fromisoformat(before["end_date"]):
            return False
    return True


def task_states(api: Api, dag_id: str, runs: list[dict[str, Any]], task_id: str) -> Counter[str]:
    """How often ``task_id`` ended in each state over ``runs`` (e.g. ``train`` skipped = too early)."""
    counts: Counter[str] = Counter()
    for run in runs:
        tis = api.get(f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'])}/taskInstances")
        counts.update(str(ti["state"]) for ti in tis["task_instances"] if ti["task_id"] == task_id)
    return counts


def timeline(env: dict[str, str]) -> dict[str, Any]:
    """``recsys registry timeline --json`` with the tasks' RECSYS_* settings, in the repository."""
    from recsys_airflow.runner import child_env

    out = subprocess.run([str(REPO / ".venv" / "bin" / "recsys"), "registry", "timeline", "--json"],  # nosec B603: the repo's recsys CLI, fixed argv, no shell
                         cwd=REPO, env=child_env(env, {}), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"recsys registry timeline failed ({out.returncode}): {out.stderr.strip()[-1500:]}")
    return dict(json.loads(out.stdout))


def _day(value: str) -> date:
    return date.fromisoformat(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_airflow.backfill", description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=REPO / "var" / "backfill" / "airflow", help="AIRFLOW_HOME")
    parser.add_argument("--port", type=int, default=8090,
                        help="the API server's port; the next three serve the scheduler's health check and logs")
    parser.add_argument("--from", dest="start", type=_day, default=date(1997, 9, 22),
                        help="first logical date (a Monday; 1997-09-22 ingests week 0)")
    parser.add_argument("--to", dest="end", type=_day, default=date(1998, 4, 27),
                        help="last logical date (1998-04-27 ingests week 31, the replay's last)")
    parser.add_argument("--ingest-max-active-runs", type=int, default=1,
                        help="concurrent runs of the ingest backfill")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds each backfill may take")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error(f"--to {args.end} is before --from {args.start}")

    try:
        env = airflow_env(args.home, args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
        print("error: a backfill needs a metadata DB other than SQLite: `airflow backfill create` fails with "
              "'database is locked' while the scheduler runs (the REST API's create too, apache/airflow#66726). "
              "Set RECSYS_AIRFLOW_DB_URL, e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/recsys_backfill "
              "(createdb first); see docs/airflow-backfill.md", file=sys.stderr)
        return 2
    # only the backfills run: no cron run, no asset-triggered run (queued backfill runs still start)
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
    url = env["AIRFLOW__API__BASE_URL"]
    print(f"preparing Airflow in {env['AIRFLOW_HOME']} (metadata DB: "
          f"{env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].split('://')[0]}; RECSYS_DATA_DIR="
          f"{env.get('RECSYS_DATA_DIR', 'data')}, RECSYS_VAR_DIR={env.get('RECSYS_VAR_DIR', 'var')}) …",
          file=sys.stderr, flush=True)
    if not prepared(env):
        return 1
    t0 = time.monotonic()
    procs = start(env, args.home / "logs")
    signal.signal(signal.SIGTERM, lambda *_: (stop(procs), sys.exit(143)))
    results: list[dict[str, Any]] = []
    try:
        wait_healthy(url, procs, components(env))
        api = Api(url, args.home)
        wait_dags_parsed(api, DAGS)
        print(f"Airflow UI       {url}   login: {USER} / {password(args.home)}  (logs: {args.home / 'logs'})",
              file=sys.stderr, flush=True)
        for dag_id, mar in zip(DAGS, (args.ingest_max_active_runs, 1), strict=True):
            result = run_backfill(env, api, dag_id, args.start, args.end, max_active_runs=mar,
                                  timeout=args.timeout)
            results.append(result)
            if not result["completed"] or result["states"].get("success", 0) != len(result["runs"]):
                break  # a retrain over weeks that were not ingested would only fail too
        trained = task_states(api, "retrain", results[1]["runs"], "train") if len(results) > 1 else Counter()
        gated = task_states(api, "retrain", results[1]["runs"], "gate") if len(results) > 1 else Counter()
    except (RuntimeError, TimeoutError, urllib.error.URLError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop(procs)

    ok = len(results) == len(DAGS) and all(
        r["completed"] and r["states"].get("success", 0) == len(r["runs"]) for r in results)
    summary: dict[str, Any] = {"from": args.start.isoformat(), "to": args.end.isoformat(),
                               "total_wall_s": round(time.monotonic() - t0, 1), "backfills": []}
    for r in results:
        summary["backfills"].append({
            "dag_id": r["dag_id"], "backfill_id": r["backfill_id"], "wall_s": round(r["wall_s"], 1),
            "completed": r["completed"], "runs": len(r["runs"]), "states": r["states"],
            "in_date_order": in_date_order(r["runs"]),
            "failed": [r2["logical_date"] for r2 in r["runs"] if r2["state"] == "failed"]})
    if len(results) > 1:
        summary["retrain_tasks"] = {"train": dict(trained), "gate": dict(gated)}
    if ok or len(results) > 1:
        try:
            tl = timeline(env)
            summary["timeline"] = {"paths": tl["paths"], "summary": tl["summary"], "rows": len(tl["rows"])}
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            ok = False
    for b in summary["backfills"]:
        print(f"{b['dag_id']:<20} {timedelta(seconds=round(b['wall_s']))}  {b['runs']} runs: "
              + ", ".join(f"{n} {s}" for s, n in sorted(b["states"].items()))
              + f"  (in date order: {b['in_date_order']})" + ("" if b["completed"] else "  NOT COMPLETE"),
              file=sys.stderr)
    if "timeline" in summary:
        print(f"timeline           {summary['timeline']['paths']['markdown']}", file=sys.stderr)
    print(f"total              {timedelta(seconds=round(summary['total_wall_s']))} (Airflow start included)",
          file=sys.stderr, flush=True)
    print(json.dumps(summary, default=str), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
