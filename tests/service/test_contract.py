"""The served OpenAPI document against the real service: schemathesis, every check, zero failures; and the body
limit over a raw socket (the answer comes before the body is sent).

One ``bentoml serve`` of the service (``conftest.bento_server``: the small bundle, no MLflow, an admin token) for
the module. Schemathesis runs as its CLI with ``--checks all`` (server errors, status codes, content types,
response headers and schemas, negative data rejected, positive data accepted, missing headers, unsupported
methods, ignored auth, ...) over every phase (examples, coverage, fuzzing, stateful), one worker, a fixed seed
(``RECSYS_CONTRACT_SEED`` picks another) and ``RECSYS_CONTRACT_EXAMPLES`` (default 100) examples per operation;
its JSON and NDJSON reports give the figures printed and asserted on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from recsys.serving.schemas import ErrorBody

ADMIN_TOKEN = "test-admin-token"  # conftest's service_env
MAX_BODY = 256 * 1024
SEED = int(os.environ.get("RECSYS_CONTRACT_SEED", "20240501"))
EXAMPLES = int(os.environ.get("RECSYS_CONTRACT_EXAMPLES", "100"))
REQUIRED_CHECKS = {"not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
                   "positive_data_acceptance", "missing_required_header", "unsupported_method", "ignored_auth"}


@pytest.fixture(scope="module")
def server(bento_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    feedback_db = tmp_path_factory.mktemp("contract") / "feedback.db"
    # no tree compilation and no traffic sampling: CPU the contract does not depend on (2 shared cores)
    with bento_server(RECSYS_MAX_BODY_BYTES=str(MAX_BODY), RECSYS_TRAFFIC_RATE="0", RECSYS_COMPILE_TREES="0",
                      RECSYS_FEEDBACK_URL=f"sqlite:///{feedback_db.as_posix()}") as running:
        yield running


def _figures(ndjson: Path) -> tuple[dict[str, Counter[str]], dict[str, Counter[int]], Counter[str], Counter[str]]:
    """Per operation: test cases by generation mode and answers by status; checks run and checks failed."""
    cases: dict[str, Counter[str]] = defaultdict(Counter)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    checks: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    seen: set[str] = set()
    for line in ndjson.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished["recorder"]
        for case_id, case in recorder.get("cases", {}).items():
            value = case["value"]
            if case_id not in seen:
                seen.add(case_id)
                cases[f"{value['method']} {value['path']}"][value["meta"]["generation"]["mode"]] += 1
            interaction = recorder.get("interactions", {}).get(case_id)
            if interaction and interaction.get("response"):
                statuses[f"{value['method']} {value['path']}"][interaction["response"]["status_code"]] += 1
        for results in recorder.get("checks", {}).values():
            for check in results:
                checks[check["name"]] += 1
                if check["status"] != "success":
                    failed[check["name"]] += 1
    return cases, statuses, checks, failed


@pytest.mark.timeout(240)
def test_schemathesis_finds_nothing(server: Any, tmp_path: Path) -> None:
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    report, events = tmp_path / "report.json", tmp_path / "events.ndjson"
    out = subprocess.run(
        [schemathesis, "run", f"{server.base}/docs.json", "--checks", "all", "--max-examples", str(EXAMPLES),
         "--workers", "1", "--seed", str(SEED), "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
         "--report", "json,ndjson", "--report-json-path", str(report), "--report-ndjson-path", str(events)],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})  # cwd: its caches
    summary = json.loads(report.read_text())
    cases, statuses, checks, failed = _figures(events)
    documented = {f"{m.upper()} {p}" for p, item in httpx.get(f"{server.base}/docs.json").json()["paths"].items()
                  for m in item}
    lines = [f"schemathesis {summary['schemathesis_version']}, seed {SEED}, --max-examples {EXAMPLES}: "
             f"{summary['operations']['tested']} operations tested, {summary['test_cases']['generated']} test cases, "
             f"{len(summary['failures'])} failures, {len(summary['errors'])} errors, "
             f"{summary['running_time']:.1f} s"]
    for operation in sorted(documented):
        lines.append(f"  {operation:<22} {sum(cases[operation].values()):>5} cases "
                     f"({cases[operation]['positive']} positive, {cases[operation]['negative']} negative), "
                     f"statuses {dict(sorted(statuses[operation].items()))}")
    other = sum(sum(c.values()) for op, c in cases.items() if op not in documented)
    lines.append(f"  undocumented methods/paths: {other} cases (expected 405)")
    lines.append(f"  checks run: {dict(sorted(checks.items()))}; failed: {dict(failed)}")
    print("\n".join(lines))

    assert out.returncode == 0 and summary["exit_code"] == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert summary["failures"] == [] and summary["errors"] == [] and not failed
    assert summary["operations"]["tested"] == len(documented) == 8
    assert set(checks) >= REQUIRED_CHECKS, set(checks)
    for operation in ("POST /predict", "POST /feedback"):
        assert cases[operation]["positive"] >= EXAMPLES and cases[operation]["negative"] >= 1, cases[operation]
        assert statuses[operation][400] > 0 and not any(s >= 500 for s in statuses[operation])
    assert statuses["POST /predict"][200] > 0 and statuses["POST /feedback"][202] > 0
    assert statuses["POST /admin/reload"][401] > 0 and statuses["POST /admin/reload"][200] > 0  # ignored_auth ran


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.timeout(60)
def test_a_content_length_over_the_limit_is_answered_before_the_body_is_sent(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n{\"user_id\": 1" % (MAX_BODY + 1))  # 13 of MAX_BODY + 1 bytes
        status, headers, body = _parse(_read_to_eof(sock))  # EOF: the server closed without waiting for more
    assert status == 413 and headers["connection"] == "close"
    assert ErrorBody.model_validate_json(body).error == f"body over {MAX_BODY} bytes"
    assert httpx.post(f"{server.base}/predict", json={"user_id": 1, "n": 2}).status_code == 200  # still serving


@pytest.mark.timeout(60)
def test_a_chunked_body_is_refused_once_it_passes_the_limit(server: Any) -> None:
    """The chunks passing the limit are sent, never the final empty chunk: a server reading to the end would wait
    for it forever (and this test time out)."""
    chunk = b" " * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 1))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /feedback HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        status, headers, body = _parse(_read_to_eof(sock))
    assert status == 413 and headers["connection"] == "close"
    assert ErrorBody.model_validate_json(body).detail is None
    resp = httpx.post(f"{server.base}/predict", content=iter([b'{"user_id": 1,', b' "n": 3}']),  # chunked
                      headers={"Content-Type": "application/json"})
    assert resp.status_code == 200 and len(resp.json()["items"]) == 3, resp.text  # under the limit: served
