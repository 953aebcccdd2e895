"""Security scans: bandit over the code, detect-secrets over the tracked files, and the .env rules.

bandit: every finding must be justified inline (``# nosec BXXX: <reason>``) except two kinds the policy below
accepts wholesale, each for a stated reason. detect-secrets: every finding must be in the committed
``.secrets.baseline`` and audited as a false positive; a planted secret proves the scanner still catches one.
"""

from __future__ import annotations

import json
import random
import re
import string
import subprocess  # nosec B404: runs the pinned scanners on the repo's own files
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import REPO

BANDIT_TARGETS = ("recsys", "bentos", "plugins", "dags", "benchmarks")
BASELINE = REPO / ".secrets.baseline"

# Accepted without an inline comment, because the finding carries no risk by itself:
#  - B404 / B403: importing subprocess / pickle. Each call is reported on its own (B603/B607, B301) and must be
#    justified there, so the import-level note adds nothing.
#  - B101: `assert x is not None`, which narrows an Optional for mypy; only that exact form is accepted (an assert
#    that checks input or permissions would vanish under `python -O` and must be a real check instead).
IMPORT_ONLY = {"B404", "B403"}
NARROWING_ASSERT = re.compile(r"^\s*assert [\w.\[\]()]+ is not None( and [\w.\[\]()]+ is not None)*\s*(#.*)?$")
NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")
JUSTIFIED_NOSEC = re.compile(r"^ B\d{3}(, B\d{3})*: \S.{8,}$")


def _run(argv: list[str], cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # nosec B603: fixed argv of the checks venv's scanners
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


# -- bandit ------------------------------------------------------------------------------------------------------
def _bandit(tool: Callable[[str], str]) -> dict[str, Any]:
    proc = _run([tool("bandit"), "-r", *BANDIT_TARGETS, "-f", "json", "-q"])
    assert proc.stdout.strip(), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert not report["errors"], report["errors"]
    return report


def test_bandit_reports_no_unjustified_finding(tool: Callable[[str], str]) -> None:
    report = _bandit(tool)
    unjustified = []
    for finding in report["results"]:
        line = (REPO / finding["filename"]).read_text().splitlines()[finding["line_number"] - 1]
        if finding["test_id"] in IMPORT_ONLY:
            continue
        if finding["test_id"] == "B101" and NARROWING_ASSERT.match(line):
            continue
        unjustified.append(f"{finding['filename']}:{finding['line_number']} {finding['test_id']} "
                           f"{finding['issue_text']}\n    {line.strip()}")
    assert not unjustified, "justify inline (# nosec BXXX: <reason>) or fix:\n" + "\n".join(unjustified)
    assert report["metrics"]["_totals"]["loc"] > 10_000, "bandit scanned the code"


def test_every_nosec_names_its_check_and_a_reason() -> None:
    bare = []
    for target in BANDIT_TARGETS:
        for path in sorted((REPO / target).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                match = NOSEC.search(line)
                if match and not JUSTIFIED_NOSEC.match(match.group("rest")):
                    bare.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bare, "a nosec must name the check and why it is safe:\n" + "\n".join(bare)


# -- detect-secrets ----------------------------------------------------------------------------------------------
def _keys(results: dict[str, list[dict[str, Any]]]) -> set[tuple[str, str, str]]:
    """(file, type, hashed secret): stable when lines move, unlike the line numbers."""
    return {(f, s["type"], s["hashed_secret"]) for f, items in results.items() for s in items}


def _scan(tool: Callable[[str], str], *paths: str, cwd: Path = REPO) -> dict[str, Any]:
    # Without paths, detect-secrets scans the files git tracks (git ls-files) in cwd.
    proc = _run([tool("detect-secrets"), "scan", *paths], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _baseline_filters() -> list[str]:
    """The baseline's own regex filters as scan options, so the baseline is the one place they are configured
    (`detect-secrets scan --baseline .secrets.baseline` keeps them): the baseline file itself (it holds the hashes
    it lists) and boolean literals (`automountServiceAccountToken: false` is no secret)."""
    options = {"should_exclude_file": "--exclude-files", "should_exclude_secret": "--exclude-secrets",
               "should_exclude_line": "--exclude-lines"}
    args = []
    for flt in json.loads(BASELINE.read_text())["filters_used"]:
        option = options.get(flt["path"].rsplit(".", 1)[-1])
        if option and flt["path"].startswith("detect_secrets.filters.regex."):
            for pattern in flt["pattern"]:
                args += [option, pattern]
    return args


def test_baseline_filters_are_narrow() -> None:
    assert _baseline_filters() == ["--exclude-files", r"^\.secrets\.baseline$", "--exclude-secrets", "^(true|false)$"]


def test_baseline_entries_are_all_audited_false_positives() -> None:
    baseline = json.loads(BASELINE.read_text())
    entries = [(f, s) for f, items in baseline["results"].items() for s in items]
    assert entries, "the baseline lists the known false positives"
    for f, s in entries:
        assert s.get("is_secret") is False, f"{f}:{s['line_number']} {s['type']} is not audited as a false positive"


def test_no_secret_in_the_tracked_files_beyond_the_audited_baseline(tool: Callable[[str], str]) -> None:
    scan = _scan(tool, *_baseline_filters())
    tracked = _run(["git", "ls-files"]).stdout.split()
    assert len(tracked) > 100, "the scan ran over the tracked files"
    new = _keys(scan["results"]) - _keys(json.loads(BASELINE.read_text())["results"])
    assert not new, ("possible secrets not in .secrets.baseline (remove them, or if they are false positives: "
                     "detect-secrets scan --baseline .secrets.baseline && detect-secrets audit .secrets.baseline):\n"
                     + "\n".join(f"{f}: {t}" for f, t, _ in sorted(new)))


def _planted_aws_key() -> str:
    # Built at run time so that no key-shaped literal is committed (the scanner would flag this file).
    rng = random.Random()  # nosec B311: test data, not a credential
    return "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))


def test_the_scanner_catches_a_planted_secret(tool: Callable[[str], str], tmp_path: Path) -> None:
    planted = tmp_path / "settings.py"
    planted.write_text(f'AWS_ACCESS_KEY_ID = "{_planted_aws_key()}"\n'
                       f'SLACK = "https://hooks.slack.com/services/T{"0" * 8}/B{"1" * 8}/{"x" * 24}"\n')
    # with the baseline's filters: they must not hide a real key
    scan = _scan(tool, *_baseline_filters(), str(planted), cwd=tmp_path)
    types = {s["type"] for items in scan["results"].values() for s in items}
    assert "AWS Access Key" in types, scan["results"]
    # and the comparison above would flag it: it is in no baseline
    assert _keys(scan["results"]) - _keys(json.loads(BASELINE.read_text())["results"])
    # the hook CI-style runs fail on it too
    hook = _run([tool("detect-secrets-hook"), "--baseline", str(BASELINE), str(planted)], cwd=tmp_path)
    assert hook.returncode != 0, hook.stdout


# -- .env --------------------------------------------------------------------------------------------------------
def test_no_env_file_is_committed() -> None:
    tracked = _run(["git", "ls-files"]).stdout.split()
    envs = [f for f in tracked if re.search(r"(^|/)\.env($|\.)", f) and not f.endswith(".env.example")]
    assert not envs, f"committed environment files: {envs}"


SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|_KEY|WEBHOOK|CREDENTIAL)", re.IGNORECASE)
# empty, <placeholder>, ${VAR}, or a CHANGE_ME marker (the compose work's convention: CHANGE_ME_<what>)
PLACEHOLDER = re.compile(r"^$|^<[^>]+>$|^\$\{[^}]+\}$|^change[-_]?me([-_]\w*)?$|^x{3,}$|^\*+$", re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?P<password>[^@\s]+)@")


def env_example_problems(path: Path) -> list[str]:
    """Lines of an .env.example whose secret-named variable holds a value, or whose URL carries a password."""
    problems = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.split(" #")[0].strip().strip("'\"")
        if SECRET_NAME.search(name) and not PLACEHOLDER.match(value):
            problems.append(f"{path.name}:{n}: {name} must be empty or a placeholder, not {value!r}")
        for match in URL_PASSWORD.finditer(value):
            if not PLACEHOLDER.match(match.group("password")):
                problems.append(f"{path.name}:{n}: {name} carries a password in a URL")
    return problems


def test_env_example_check_rejects_real_values(tmp_path: Path) -> None:
    bad = tmp_path / ".env.example"
    # the URL is assembled so that no credential-shaped literal sits in this file (the scanner reads it too)
    url = "postgresql://recsys:" + "s3cr3t" + "@db/recsys"
    bad.write_text(f"POSTGRES_PASSWORD=hunter2\nRECSYS_FEEDBACK_URL={url}\n"
                   "RECSYS_ADMIN_TOKEN=CHANGE_ME_admin\nAIRFLOW_FERNET_KEY=\nIMAGE_TAG=0.1.0\n")
    assert len(env_example_problems(bad)) == 2


def test_env_example_holds_no_real_values(tool: Callable[[str], str]) -> None:
    example = REPO / ".env.example"
    if not example.exists():
        pytest.skip(".env.example is not in this checkout yet (the compose work adds it)")
    assert not env_example_problems(example)
    scan = _scan(tool, str(example))
    assert not scan["results"], f"detect-secrets flags .env.example: {scan['results']}"

