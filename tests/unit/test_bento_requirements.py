"""The Bento's Python packages (bentos/requirements.txt) are the project's lock, restricted to what serving needs.

``make bento-lock`` compiles ``bentos/requirements.in`` with ``requirements.txt`` as constraints; these tests fail
when the result drifts from the lock (a pin that differs, e.g. after ``make lock`` without ``make bento-lock``),
when a package that ``bentos/service.py`` or a recsys module it loads imports is missing, or when a listed package's
own requirements are not all listed (a hand-edited file). The imports are read from the source (every ``import``
of every recsys module reachable from the service, inside functions too: ``lleaves`` and ``mlflow`` are imported
on first use), so nothing is imported or installed here.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.txt"
BENTO_LOCK = ROOT / "bentos" / "requirements.txt"
SERVICE = ROOT / "bentos" / "service.py"
# Training-only modules the static walk reaches through function bodies (the ranker's training dispatches to the
# Dask engine, ALS's fit to implicit) but a serving process never imports: their packages (dask, distributed,
# implicit) stay out of the Bento; test_the_service_s_modules_do_not_load_training_engines checks it at run time.
TRAINING_ONLY = {"recsys/ranking/distributed.py", "recsys/candidates/als_training.py"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a compiled requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        if m := PIN.match(line):
            found[normalize(m.group(1))] = m.group(2)
    return found


def module_file(name: str) -> Path | None:
    """The source file of a first-party module (``recsys.x.y``), None when ``name`` is not a module (an attribute)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def imported_top_levels(entry: Path) -> dict[str, set[str]]:
    """Third-party top-level module -> the first-party files importing it, over every recsys module reachable
    from ``entry`` (the service) through imports at any depth, function bodies included."""
    todo, seen = [entry], set()
    found: dict[str, set[str]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "recsys":
                    parts = name.split(".")
                    todo.extend(f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i]))))
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.fixture(scope="module")
def bento_pins() -> dict[str, str]:
    return pins(BENTO_LOCK)


def test_every_pin_is_the_lock_s(bento_pins: dict[str, str]) -> None:
    lock = pins(LOCK)
    assert bento_pins, f"no pins in {BENTO_LOCK}"
    differ = {name: (version, lock.get(name)) for name, version in bento_pins.items() if lock.get(name) != version}
    assert not differ, f"bentos/requirements.txt pins (bento, lock) differ from requirements.txt: {differ}; " \
                       "run `make bento-lock`"


def test_every_package_the_service_imports_is_listed(bento_pins: dict[str, str]) -> None:
    owners = metadata.packages_distributions()
    missing, unknown = {}, {}
    for top, files in sorted(imported_top_levels(SERVICE).items()):
        if files <= TRAINING_ONLY:
            continue
        dists = owners.get(top)
        if not dists:
            unknown[top] = sorted(files)
            continue
        if not any(normalize(d) in bento_pins for d in dists):
            missing[f"{top} ({', '.join(dists)})"] = sorted(files)
    assert not unknown, f"imported by the service but installed by no distribution: {unknown}"
    assert not missing, f"imported by the service but not in bentos/requirements.txt: {missing}; add them to " \
                        "bentos/requirements.in and run `make bento-lock`"


def test_the_list_is_closed_under_requirements(bento_pins: dict[str, str]) -> None:
    """Every requirement (for this platform, no extras) of every listed package is listed too."""
    missing: dict[str, list[str]] = {}
    for name in bento_pins:
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:  # pinned for another platform: nothing to read here
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if normalize(req.name) not in bento_pins:
                missing.setdefault(name, []).append(req.name)
    assert not missing, f"requirements of listed packages missing from bentos/requirements.txt: {missing}"


def test_bentofile_installs_the_compiled_file() -> None:
    python = yaml.safe_load((ROOT / "bentos" / "bentofile.yaml").read_text())["python"]
    assert (ROOT / "bentos" / python["requirements_txt"]).resolve() == BENTO_LOCK
    assert "packages" not in python, "bentofile.yaml lists packages by hand beside requirements_txt"
    assert python.get("lock_packages") is False, "BentoML would re-resolve the pins at build time"


def test_the_service_s_modules_do_not_load_training_engines() -> None:
    import subprocess

    code = ("import sys, recsys.ranking.recommender, recsys.ranking.ranker, recsys.ranking.train; "
            "print(sorted(m for m in ('dask', 'distributed', 'recsys.ranking.distributed', 'implicit', "
            "'recsys.candidates.als_training') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
