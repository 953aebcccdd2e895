"""The manual policy with the real scheduler: a gate pass waits in Airflow's "Required actions" (a
human-in-the-loop task) with the registry's approval request recorded; approving it there moves ``champion``
through the registry's audit path; nothing moves before."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.dags.harness import EmbeddedAirflow, library_env, recsys, validated_store
from tests.receivers import free_port


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_manual_gate_waits_for_approval_in_airflow_and_approving_promotes(
        tmp_path: Path, raw_data_dir: Callable[[Path], Path]) -> None:
    raw_data_dir(tmp_path)
    lib = library_env(tmp_path)
    validated_store(lib, tmp_path, 21)  # weeks 0..20
    extra = {**lib, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}  # only this test's runs
    with EmbeddedAirflow(tmp_path / "airflow", free_port(), extra) as airflow:
        run_id = airflow.trigger("retrain", {"policy": "manual", "week": 20})
        deadline = time.monotonic() + 900
        while (state := airflow.tasks("retrain", run_id).get("approval")) not in ("deferred", "awaiting_input"):
            assert state not in ("failed", "skipped", "upstream_failed"), f"approval {state}:\n{airflow.logs()}"
            assert time.monotonic() < deadline, f"no approval request:\n{airflow.logs()}"
            time.sleep(3)
        gate = airflow.api("GET", f"/dags/retrain/dagRuns/{run_id}/taskInstances/gate/xcomEntries/return_value",
                           params={"deserialize": True})["value"]
        assert gate["outcome"] == "pending" and gate["target"] == 1
        detail = airflow.api("GET", f"/dags/retrain/dagRuns/{run_id}/taskInstances/approval/-1/hitlDetails")
        assert detail["options"] == ["Approve", "Reject"] and "content-ranker v1" in detail["subject"]
        assert recsys(lib, "registry", "show", "--version", "1")["aliases"] == ["challenger"], "nothing moved yet"
        events = [r["event"] for r in recsys(lib, "registry", "history")["events"]]
        assert "approval_pending" in events and "promoted" not in events

        airflow.api("PATCH", f"/dags/retrain/dagRuns/{run_id}/taskInstances/approval/-1/hitlDetails",
                    json={"chosen_options": ["Approve"], "params_input": {}})
        assert airflow.wait_run("retrain", run_id, timeout=600) == "success"
        tasks = airflow.tasks("retrain", run_id)
        assert (tasks["approve"], tasks["reject"]) == ("success", "skipped")
    shown = recsys(lib, "registry", "show", "--version", "1")
    assert "champion" in shown["aliases"]
    records = recsys(lib, "registry", "history")["events"]
    assert any((r["event"], r["to_version"], r["actor"]) == ("approved", 1, "airflow") for r in records)
