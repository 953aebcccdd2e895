"""terraform/: formatting, parsing, module wiring, checkov and the secure defaults, all offline.

`terraform validate` needs the AWS provider and the registry modules, which `terraform init` downloads: it runs when
the registry is reachable and otherwise skips saying so. Everything else reads the files: hcl2 (checkov's
bc-python-hcl2, only in the checks venv, so it runs in a subprocess of `.venv-tools/bin/python`) and checkov.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess  # nosec B404: runs the pinned check tools on the repo's own files
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import REPO, TOOLS_BIN

TF = REPO / "terraform"
ENVS = ("staging", "production")
# Arguments of a module block that are Terraform's, not the module's inputs.
META_ARGS = {"source", "version", "count", "for_each", "providers", "depends_on"}

# Parses every .tf file under terraform/ and prints {relative path: parsed} (python-hcl2 lives in the checks venv).
_PARSE = """
import json, sys, pathlib, hcl2
root = pathlib.Path(sys.argv[1])
out = {}
for path in sorted(root.rglob("*.tf")):
    if ".terraform" in path.parts:
        continue
    with path.open() as fh:
        out[str(path.relative_to(root))] = hcl2.load(fh)
print(json.dumps(out))
"""


def _one(value: Any) -> Any:
    """python-hcl2 wraps each attribute's value in a one-element list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@cache
def _parsed() -> dict[str, dict[str, Any]]:
    python = TOOLS_BIN / "python"
    if not python.exists():
        pytest.skip("python-hcl2 is not installed (make tools-setup)")
    proc = subprocess.run(  # nosec B603: fixed argv, the checks venv's python on the repo's files
        [str(python), "-c", _PARSE, str(TF)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"a .tf file does not parse:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def _blocks(kind: str, directory: str) -> dict[str, dict[str, Any]]:
    """The ``kind`` blocks (variable, output, module) of one directory, by name."""
    found: dict[str, dict[str, Any]] = {}
    for rel, doc in _parsed().items():
        if str(Path(rel).parent) != directory:
            continue
        for block in doc.get(kind, []):
            for name, body in block.items():
                assert name not in found, f"{kind} {name} declared twice in {directory}"
                found[name] = body
    return found


def _dirs() -> list[str]:
    return sorted({str(Path(rel).parent) for rel in _parsed()})


def _module_calls() -> list[tuple[str, str, dict[str, Any]]]:
    """(directory, module name, body) of every module block."""
    return [(d, name, body) for d in _dirs() for name, body in _blocks("module", d).items()]


def _local_target(directory: str, source: str) -> str | None:
    if not source.startswith(("./", "../")):
        return None  # a registry module: its interface is only known after `terraform init`
    return str((TF / directory / source).resolve().relative_to(TF))


def _text(directory: str) -> str:
    return "\n".join(p.read_text() for p in sorted((TF / directory).glob("*.tf")))


# -- formatting and parsing --------------------------------------------------------------------------------------
def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed")
    proc = subprocess.run(  # nosec B603: fixed argv
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}"


def test_every_tf_file_parses() -> None:
    on_disk = {str(p.relative_to(TF)) for p in TF.rglob("*.tf") if ".terraform" not in p.parts}
    assert set(_parsed()) == on_disk
    assert len(on_disk) >= 40, "the modules and both environments"


def test_layout() -> None:
    modules = {"kms", "network", "eks", "storage", "s3-bucket", "database", "ecr", "irsa", "secrets", "github-oidc"}
    assert modules <= {p.name for p in (TF / "modules").iterdir() if p.is_dir()}
    for d in [f"modules/{m}" for m in modules] + [f"envs/{e}" for e in ENVS]:
        for f in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (TF / d / f).is_file(), f"{d}/{f}"


# -- module wiring -----------------------------------------------------------------------------------------------
def test_module_calls_pass_declared_and_required_inputs() -> None:
    checked = 0
    for directory, name, body in _module_calls():
        target = _local_target(directory, _one(body["source"]))
        if target is None:
            assert "version" in body, f"{directory}: registry module {name} has no version pin"
            continue
        declared = _blocks("variable", target)
        assert declared, f"{directory}: module {name} -> {target} declares no variables"
        passed = {k for k in body if not k.startswith("__") and k not in META_ARGS}
        unknown = passed - set(declared)
        assert not unknown, f"{directory}: module {name} passes {sorted(unknown)}, not variables of {target}"
        required = {v for v, spec in declared.items() if "default" not in spec}
        missing = required - passed
        assert not missing, f"{directory}: module {name} lacks the required {sorted(missing)} of {target}"
        checked += 1
    assert checked >= 13, "the platform calls every local module, each environment calls the platform"
    # One wiring for both environments: each env root calls modules/platform, which calls every other module.
    for env in ENVS:
        calls = {_local_target(f"envs/{env}", _one(b["source"])) for b in _blocks("module", f"envs/{env}").values()}
        assert calls == {"modules/platform"}, f"envs/{env} calls {sorted(map(str, calls))}"
    wired = {_local_target("modules/platform", _one(b["source"]))
             for b in _blocks("module", "modules/platform").values()}
    assert wired == {f"modules/{m}" for m in ("kms", "network", "ecr", "github-oidc", "eks", "storage", "database",
                                            "secrets", "irsa")}


def test_module_output_references_exist() -> None:
    checked = 0
    for directory in _dirs():
        calls = _blocks("module", directory)
        for mod, out in re.findall(r"\bmodule\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)", _text(directory)):
            assert mod in calls, f"{directory}: module.{mod} is not a module of this directory"
            target = _local_target(directory, _one(calls[mod]["source"]))
            if target is None:
                continue  # registry module outputs: checked by `terraform validate` where it can run
            assert out in _blocks("output", target), f"{directory}: module.{mod}.{out}: {target} has no such output"
            checked += 1
    assert checked >= 30


def test_variable_references_are_declared() -> None:
    for directory in _dirs():
        declared = set(_blocks("variable", directory))
        used = set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", _text(directory)))
        assert used <= declared, f"{directory}: undeclared {sorted(used - declared)}"


def test_variables_are_described_and_validated() -> None:
    for directory in _dirs():
        variables = _blocks("variable", directory)
        for name, spec in variables.items():
            assert _one(spec.get("description", "")), f"{directory}: variable {name} has no description"
            assert "type" in spec, f"{directory}: variable {name} has no type"
        validated = [n for n, spec in variables.items() if "validation" in spec]
        assert validated, f"{directory}: no variable has a validation block"
        for name, spec in _blocks("output", directory).items():
            assert _one(spec.get("description", "")), f"{directory}: output {name} has no description"


def test_environments_expose_the_same_outputs() -> None:
    staging, production = (set(_blocks("output", f"envs/{e}")) for e in ENVS)
    assert staging == production
    assert {"cluster_name", "ecr_repository_urls", "mlflow_artifacts_bucket", "dvc_remote_bucket", "db_address",
            "irsa_role_arns", "github_deploy_role_arn", "recsys_secret_name"} <= staging


# -- secure defaults (also where checkov cannot look: inside the registry modules) -------------------------------
def _resource(directory: str, rtype: str, name: str) -> dict[str, Any]:
    for rel, doc in _parsed().items():
        if str(Path(rel).parent) == directory:
            for block in doc.get("resource", []):
                if rtype in block and name in block[rtype]:
                    return block[rtype][name]
    raise AssertionError(f"{directory}: no resource {rtype}.{name}")


def test_remote_state_is_a_partial_s3_backend_with_a_lock() -> None:
    for env in ENVS:
        doc = _parsed()[f"envs/{env}/backend.tf"]
        s3 = _one(_one(doc["terraform"])["backend"])["s3"]
        assert _one(s3["encrypt"]) is True and _one(s3["use_lockfile"]) is True
        assert "bucket" not in s3, "the bucket comes from -backend-config (partial configuration)"
        assert (TF / "envs" / env / "backend.hcl.example").is_file()


def test_production_database_is_protected() -> None:
    platform = _blocks("module", "envs/production")["platform"]
    assert _one(platform["db_deletion_protection"]) is True
    assert _one(platform["db_multi_az"]) is True
    assert _one(platform["db_skip_final_snapshot"]) is False
    assert _one(platform["db_backup_retention_days"]) >= 14
    # ... and the platform hands them to the database module unchanged
    db = _blocks("module", "modules/platform")["database"]
    for arg in ("deletion_protection", "multi_az", "skip_final_snapshot", "backup_retention_days"):
        assert _one(db[arg]) == f"${{var.db_{arg}}}", f"modules/platform: database {arg} = {_one(db[arg])}"
    instance = _resource("modules/database", "aws_db_instance", "this")
    assert _one(instance["storage_encrypted"]) is True
    assert _one(instance["publicly_accessible"]) is False
    assert _one(instance["manage_master_user_password"]) is True, "the password stays out of state"
    assert "password" not in instance


def test_ecr_is_immutable_and_scanned_with_the_contract_names() -> None:
    repo = _resource("modules/ecr", "aws_ecr_repository", "this")
    assert _one(repo["image_tag_mutability"]) == "IMMUTABLE"
    assert _one(_one(repo["image_scanning_configuration"])["scan_on_push"]) is True
    default = _one(_blocks("variable", "modules/ecr")["repositories"]["default"])
    assert set(default) == {"recsys-pipeline", "recsys-airflow", "recsys-serving"}


def test_eks_endpoint_private_and_logging_on() -> None:
    eks = _blocks("module", "modules/eks")["eks"]
    assert _one(eks["cluster_endpoint_private_access"]) is True
    assert _one(_blocks("variable", "modules/eks")["endpoint_public_access"]["default"]) is False
    assert set(_one(eks["cluster_enabled_log_types"])) >= {"api", "audit", "authenticator"}
    assert _one(eks["cluster_encryption_config"])["resources"] == ["secrets"]


def test_irsa_covers_the_contract_service_accounts() -> None:
    text = _text("modules/irsa")
    for sa in ("recommender", "recsys-pipeline", "mlflow"):
        assert f":{sa}\"" in text, sa
    assert _one(_blocks("variable", "modules/irsa")["namespace"]["default"]) == "recsys"


# -- checkov -----------------------------------------------------------------------------------------------------
def _checkov(tool: Callable[[str], str]) -> dict[str, Any]:
    proc = subprocess.run(  # nosec B603: fixed argv, the checks venv's checkov on terraform/
        [tool("checkov"), "-d", str(TF), "--framework", "terraform", "--skip-download", "--compact",
         "-o", "json"],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    return report


def test_checkov_finds_no_failed_check_and_every_skip_is_justified(tool: Callable[[str], str]) -> None:
    report = _checkov(tool)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 200
    for check in report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= 20, f"{check['check_id']} on {check['resource']}: skip without a reason"
    # every inline skip names a real reason in the file itself
    for path in TF.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV2?_[A-Z0-9]+_\d+:.{20,}", line), f"{path}: {line.strip()}"


# -- terraform validate (needs the registry) ---------------------------------------------------------------------
@cache
def _init(env_dir: str, data_dir: str) -> subprocess.CompletedProcess[str]:
    terraform = shutil.which("terraform")
    assert terraform is not None
    return subprocess.run(  # nosec B603: fixed argv on a copy of terraform/
        [terraform, "init", "-backend=false", "-input=false", "-no-color"],
        capture_output=True, text=True, timeout=300, check=False, cwd=env_dir,
        env={**os.environ, "TF_DATA_DIR": data_dir, "TF_IN_AUTOMATION": "1"},
    )


@pytest.mark.parametrize("env", ENVS)
def test_terraform_validate(env: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    copy = tmp_path_factory.mktemp("tf") / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    env_dir = copy / "envs" / env
    init = _init(str(env_dir), str(copy / f".tf-{env}"))
    if init.returncode != 0:
        unreachable = ("could not connect to registry", "no such host", "Failed to query available provider",
                       "Failed to resolve", "i/o timeout", "connection refused", "registry.terraform.io")
        if any(marker in init.stdout + init.stderr for marker in unreachable):
            first = next((ln for ln in (init.stdout + init.stderr).splitlines() if "registry" in ln), "")
            pytest.skip(f"terraform init cannot reach the registry here (no providers/modules): {first.strip()}")
        pytest.fail(f"terraform init failed:\n{init.stdout}\n{init.stderr}")
    proc = subprocess.run(  # nosec B603: fixed argv
        [shutil.which("terraform") or "terraform", "validate", "-no-color"],
        capture_output=True, text=True, timeout=300, check=False, cwd=env_dir,
        env={**os.environ, "TF_DATA_DIR": str(copy / f".tf-{env}")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
