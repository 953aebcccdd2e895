""".github/workflows/: schema, pinning, permissions, and that everything a workflow calls exists.

Offline: check-jsonschema's vendored GitHub-workflow schema, checkov's github_actions checks, the Makefile's targets,
the `recsys` CLI's own --help (every subcommand and option a workflow passes), and the repository's paths. Paths the
docker/ and k8s/ work creates in parallel are checked against the naming contract, and on disk where they exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess  # nosec B404: runs the pinned check tools and the project's own CLI
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("ci.yml", "cd.yml", "model-training.yml")
RECSYS = REPO / ".venv" / "bin" / "recsys"

# Every action a workflow uses, pinned to a commit SHA found in public repositories' workflows with this version
# comment (docs/cicd.md, "Pinned actions"). A bump changes this table and the workflows together.
PINNED = {
    "actions/checkout": ("11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "actions/setup-python": ("a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0"),
    "actions/upload-artifact": ("ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
    "aws-actions/configure-aws-credentials": ("e3dd6a429d7300a6a4c196c26e071d42e0343502", "v4.0.2"),
    "hashicorp/setup-terraform": ("b9cd54a3c349d3f38e8881555d616ced269862dd", "v3.1.2"),
}

# The naming contract's paths (docker/ and k8s/ land from other branches; see the module docstring).
CONTRACT_PATHS = {
    "docker/pipeline.Dockerfile",
    "docker/airflow.Dockerfile",
    "k8s/overlays/staging",
    "k8s/overlays/production",
    "k8s/overlays/blue-green",
    ".github/scripts/smoke-test.sh",
}
CONTRACT_IMAGES = {"recsys-pipeline", "recsys-airflow", "recsys-serving"}
ENVIRONMENTS = {"staging", "production", "model-training", "model-promotion"}


@cache
def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True
    if True in data:
        data["on"] = data.pop(True)
    return data


def _jobs(name: str) -> dict[str, dict[str, Any]]:
    return _load(name)["jobs"]


def _steps(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in _jobs(name).items():
        for step in job.get("steps", []):
            yield job_id, step


def _run_lines(name: str) -> Iterator[str]:
    """Every shell line of every run: step, continuation lines joined."""
    for _, step in _steps(name):
        script = step.get("run", "")
        for line in script.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def test_the_three_workflows_exist() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_schema(name: str, tool: Callable[[str], str]) -> None:
    proc = subprocess.run(  # nosec B603: fixed argv
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOWS / name)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_github_actions(tool: Callable[[str], str]) -> None:
    proc = subprocess.run(  # nosec B603: fixed argv
        [tool("checkov"), "-d", str(REPO / ".github"), "--framework", "github_actions", "--skip-download",
         "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report["results"]["failed_checks"]]
    assert report["summary"]["failed"] == 0, "\n".join(failed)
    assert report["summary"]["passed"] >= 100
    for check in report["results"]["skipped_checks"]:
        assert len((check["check_result"].get("suppress_comment") or "").strip()) >= 20, check["check_id"]


@pytest.mark.parametrize("name", NAMES)
def test_every_action_is_pinned_to_a_verified_sha(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", text, flags=re.MULTILINE)
    assert uses
    for ref, rest in uses:
        action, _, sha = ref.partition("@")
        assert action in PINNED, f"{name}: {action} is not in the verified table"
        want_sha, version = PINNED[action]
        assert sha == want_sha, f"{name}: {action}@{sha} (want the SHA of {version})"
        assert re.fullmatch(r"[0-9a-f]{40}", sha)
        assert f"# {version}" in rest, f"{name}: {action} lacks the '# {version}' comment"


@pytest.mark.parametrize("name", NAMES)
def test_permissions_concurrency_and_timeouts(name: str) -> None:
    wf = _load(name)
    top = wf.get("permissions")
    assert top is not None, f"{name}: no top-level permissions"
    assert top == {} or top == {"contents": "read"}, f"{name}: top-level permissions must be empty or read-only"
    assert "group" in wf["concurrency"]
    for job_id, job in _jobs(name).items():
        assert 0 < job["timeout-minutes"] <= 120, f"{name}:{job_id} timeout"
        perms = job.get("permissions", top)
        assert "write-all" not in str(perms)
        uses_aws = any("configure-aws-credentials" in s.get("uses", "") for s in job.get("steps", []))
        if uses_aws:
            assert perms.get("id-token") == "write", f"{name}:{job_id} assumes an AWS role without id-token: write"
        else:
            assert "id-token" not in perms, f"{name}:{job_id} asks for an OIDC token it does not use"
        for key, value in perms.items():
            if value == "write":
                assert key in {"id-token", "issues"}, f"{name}:{job_id} writes {key}"


@pytest.mark.parametrize("name", NAMES)
def test_no_long_lived_cloud_keys(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        assert forbidden not in text, f"{name} uses {forbidden}: use OIDC (role-to-assume)"
    for _, step in _steps(name):
        if "configure-aws-credentials" in step.get("uses", ""):
            assert step["with"]["role-to-assume"].startswith("${{ vars.")


# -- what the workflows call exists ------------------------------------------------------------------------------
@cache
def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][A-Za-z0-9_-]*):(?!=)", text, flags=re.MULTILINE))


def _make_calls() -> set[str]:
    calls: set[str] = set()
    for name in NAMES:
        for line in _run_lines(name):
            match = re.match(r"(?:sudo\s+)?make\s+(.*)", line)
            if match:
                calls |= {w for w in match.group(1).split() if not w.startswith("-") and "=" not in w}
    return calls


def test_make_targets_exist() -> None:
    calls = _make_calls()
    assert {"lint", "test", "test-slow", "setup", "tools-setup", "data", "bento"} <= calls
    assert calls <= _make_targets(), f"not Makefile targets: {sorted(calls - _make_targets())}"


def _recsys_calls() -> list[list[str]]:
    """The words after `.venv/bin/recsys` up to a redirection: command, subcommand, options (and shell words)."""
    calls = []
    for name in NAMES:
        for line in _run_lines(name):
            if ".venv/bin/recsys " in line:
                calls.append(line.split(".venv/bin/recsys ", 1)[1].split(" > ")[0].split())
    return calls


@cache
def _help(*command: str) -> tuple[int, str]:
    if not RECSYS.exists():
        pytest.skip("the library venv is missing (make setup)")
    proc = subprocess.run(  # nosec B603: the project's own CLI, fixed argv
        [str(RECSYS), *command, "--help"], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
    )
    return proc.returncode, proc.stdout


def test_recsys_commands_and_options_exist() -> None:
    calls = _recsys_calls()
    assert len(calls) >= 6
    seen = set()
    for words in calls:
        code, text = _help(words[0])
        assert code == 0, f"recsys {words[0]}: no such command"
        command = [words[0]]
        if "Commands" in text:  # a group (registry, data, schedule): the next word is its subcommand
            command.append(words[1])
            code, text = _help(*command)
            assert code == 0, f"recsys {' '.join(command)}: no such command"
        for flag in set(re.findall(r"(?<![\w-])--[a-z][\w-]*", " ".join(words))):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"recsys {' '.join(command)}: no {flag}"
        seen.add(" ".join(command))
    assert {"train", "registry gate", "registry approve", "schedule retrain", "validate", "data replay"} <= seen


def _referenced_paths() -> set[str]:
    refs: set[str] = set()
    for name in NAMES:
        text = (WORKFLOWS / name).read_text()
        refs |= set(re.findall(r"\b(docker/[\w.-]+\.Dockerfile)\b", text))
        refs |= set(re.findall(r"\b(k8s/overlays/[\w-]+)\b", text))
        refs |= set(re.findall(r"(\.github/scripts/[\w.-]+)", text))
    return refs


def test_referenced_paths_follow_the_naming_contract() -> None:
    refs = _referenced_paths()
    assert refs, "the workflows reference Dockerfiles and overlays"
    assert refs <= CONTRACT_PATHS, f"not in the naming contract: {sorted(refs - CONTRACT_PATHS)}"
    script = REPO / ".github" / "scripts" / "smoke-test.sh"
    assert script.is_file() and os.access(script, os.X_OK)


def test_referenced_paths_exist_where_they_have_landed() -> None:
    missing = sorted(p for p in _referenced_paths() if not (REPO / p).exists())
    if missing:
        pytest.skip(f"not in this checkout yet (created by the docker/ and k8s/ work): {', '.join(missing)}")


# -- the shape of each workflow ----------------------------------------------------------------------------------
def test_ci_runs_the_make_targets_with_postgres() -> None:
    jobs = _jobs("ci.yml")
    on = _load("ci.yml")["on"]
    assert "pull_request" in on and "push" in on
    runs = {job_id: " ".join(s.get("run", "") for s in job["steps"]) for job_id, job in jobs.items()}
    assert "make lint" in runs["lint"]
    assert "make test " in runs["test"] + " "
    assert "make test-slow" in runs["test-slow"]
    assert "tests/deploy" in runs["security-and-deploy-checks"]
    for job_id in ("test", "test-slow"):
        pg = jobs[job_id]["services"]["postgres"]
        assert pg["image"].startswith("postgres:") and "5432:5432" in pg["ports"]


def test_cd_builds_deploys_smoke_tests_and_rolls_back() -> None:
    jobs = _jobs("cd.yml")
    assert {m["image"] for m in jobs["build"]["strategy"]["matrix"]["include"]} == CONTRACT_IMAGES
    assert jobs["deploy-staging"]["needs"] == "build"
    assert jobs["promote-production"]["needs"] == "deploy-staging"
    env = jobs["promote-production"]["environment"]
    assert (env["name"] if isinstance(env, dict) else env) == "production", "the manual approval gate"
    text = (WORKFLOWS / "cd.yml").read_text()
    assert "kubectl apply -k k8s/overlays/staging" in text
    assert "kubectl apply -k k8s/overlays/blue-green" in text
    assert "kubectl argo rollouts promote recommender" in text
    assert "kubectl argo rollouts status recommender" in text
    assert "bentoml containerize recommender:latest" in text
    rollback = [s for s in jobs["promote-production"]["steps"] if s.get("if") == "failure()"]
    assert rollback and "argo rollouts abort recommender" in rollback[0]["run"]
    assert "argo rollouts undo recommender" in rollback[0]["run"]
    smoke = (REPO / ".github" / "scripts" / "smoke-test.sh").read_text()
    assert "/readyz" in smoke and "/predict" in smoke


def test_model_training_is_weekly_and_gated() -> None:
    wf = _load("model-training.yml")
    assert wf["on"]["schedule"] and "workflow_dispatch" in wf["on"]
    text = (WORKFLOWS / "model-training.yml").read_text()
    assert "make setup data" in text
    assert "--policy manual" in text, "a pass waits for approval instead of moving champion"
    assert "gh issue create" in text


def test_environments_match_terraform_oidc_trust() -> None:
    used = set()
    for name in NAMES:
        for job in _jobs(name).values():
            env = job.get("environment")
            if env:
                used.add(env["name"] if isinstance(env, dict) else env)
    assert used == ENVIRONMENTS
    for env in ("staging", "production"):
        main = (REPO / "terraform" / "envs" / env / "main.tf").read_text()
        assert f'github_environments = ["{env}"]' in main, f"the {env} deploy role trusts the {env} environment"
