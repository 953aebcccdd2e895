"""Offline checks of the deployment files (docker/, docker-compose.yml, k8s/, terraform/, .github/workflows/).

This machine runs no container engine and no cluster, so every check here reads the files: linters and schema
validators from the checks venv (`make tools-setup`, .venv-tools), cross-checks between the files, and the
project's own settings. A test whose tool is missing skips with the command that installs it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".venv-tools" / "bin"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """``tool(name)``: the path of a check tool (the checks venv first, then PATH), or skip saying how to get it."""

    def find(name: str) -> str:
        local = TOOLS_BIN / name
        if local.exists():
            return str(local)
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed (make tools-setup)")
        return found

    return find
