"""The library's shape: layers import one way, private names stay private, settings are read in one place."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WIRING = ("recsys", "bentos", "dags", "plugins")
"""The library and the code that only wires it."""
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def python_files(*roots: str) -> list[Path]:
    return sorted(p for root in roots if (REPO / root).is_dir() for p in (REPO / root).rglob("*.py"))


def lint_imports(cwd: Path, *args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(pythonpath or cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed in this environment")
def test_layers_run_one_way() -> None:
    """data -> candidates/features -> ranking -> evaluation -> registry -> serving -> stages -> cli (pyproject)."""
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed in this environment")
def test_the_layer_check_fails_on_an_upward_import(tmp_path: Path) -> None:
    """The same contract type on a toy package whose lower layer imports the higher one must be reported."""
    package = tmp_path / "toy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("from toy import high\n")
    (package / "high.py").write_text("X = 1\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = toy\n\n[importlinter:contract:layers]\nname = toy layers\n"
        "type = layers\nlayers =\n    toy.high\n    toy.low\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "toy.low is not allowed to import toy.high" in result.stdout
    shutil.rmtree(package)


def test_no_private_names_are_imported_across_modules() -> None:
    offenders = []
    for path in python_files(*WIRING):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "recsys":
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {private} from {node.module}")
    assert offenders == []


def test_the_environment_is_read_only_by_the_settings_and_the_runtime() -> None:
    # the library's settings and process set-up; on the Airflow side (its own env) its settings module
    allowed = {REPO / "recsys" / "settings.py", REPO / "recsys" / "runtime.py",
               REPO / "plugins" / "recsys_airflow" / "config.py"}
    offenders = []
    for path in python_files(*WIRING):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                    and node.attr in ("environ", "getenv", "putenv", "unsetenv"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} os.{node.attr}")
    assert offenders == []


def test_cli_modules_stay_thin() -> None:
    """One module per command group, each a thin wrapper over a stage."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in python_files("recsys/cli")}
    assert {"data.py", "validate.py", "train.py", "registry.py", "evaluate.py", "serve.py", "tune.py"} <= set(sizes)
    assert max(sizes.values()) < 300, sizes
