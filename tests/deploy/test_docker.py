"""The images' Dockerfiles (docker/*.Dockerfile) and .dockerignore, checked without a container engine.

hadolint lints them; the rest reads them: every COPY source exists in the build context and survives
.dockerignore (Docker's own pattern rules, re-implemented below), bases are pinned, the final stage runs as a
numeric non-root user and has a HEALTHCHECK, and each image holds what the stack relies on (the recsys venv, the
environment variables, the Airflow pins). Nothing here builds an image: that needs Docker (docs/deploy-compose.md).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
PIPELINE = DOCKER / "pipeline.Dockerfile"
AIRFLOW = DOCKER / "airflow.Dockerfile"


# -- a small Dockerfile reader ------------------------------------------------------------------------------------
@dataclass
class Instruction:
    line: int
    keyword: str
    args: str
    comments: list[str] = field(default_factory=list)
    """The comment lines directly above it (its justification, its hadolint pragmas)."""

    def flags(self) -> dict[str, str]:
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.args))

    def words(self) -> list[str]:
        """The arguments without the ``--flag=value`` options (shell form; JSON form as its list)."""
        if self.args.startswith("["):
            return list(json.loads(self.args))
        return [w for w in self.args.split() if not w.startswith("--")]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined; comment lines (also inside a continuation) dropped."""
    out: list[Instruction] = []
    comments: list[str] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            if pending is None:
                comments.append(stripped)
            continue
        if not stripped:
            if pending is None:
                comments = []
            continue
        start, text = pending if pending is not None else (number, "")
        text += " " + stripped.rstrip("\\").strip()
        if stripped.endswith("\\"):
            pending = (start, text)
            continue
        pending = None
        keyword, _, args = text.strip().partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip(), comments))
        comments = []
    assert pending is None, f"{path.name}: a continuation runs off the end"
    return out


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for ins in parse(path):
        if ins.keyword == "FROM":
            words = ins.words()
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            found.append(Stage(words[0], name, []))
        elif found:
            found[-1].instructions.append(ins)
    return found


# -- .dockerignore, as Docker reads it (moby/patternmatcher) --------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i:end + 1]
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore(path: Path) -> Callable[[str], bool]:
    """``excluded(relative_path)``: the last pattern matching the path or one of its parents decides."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern_regex(line)))

    def excluded(relative: str) -> bool:
        parts = Path(relative).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negated, rx in rules:
            if any(rx.match(p) for p in prefixes):
                result = not negated
        return result

    return excluded


EXCLUDED = dockerignore(REPO / ".dockerignore")


def copy_sources() -> Iterator[tuple[str, int, str]]:
    """(Dockerfile, line, source) of every COPY/ADD from the build context (not ``--from`` a stage)."""
    for path in DOCKERFILES:
        for ins in parse(path):
            if ins.keyword in ("COPY", "ADD") and "from" not in ins.flags():
                for source in ins.words()[:-1]:
                    yield path.name, ins.line, source


def load_script(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- tests -------------------------------------------------------------------------------------------------------------
def test_the_images_are_there() -> None:
    assert {p.name for p in DOCKERFILES} == {"pipeline.Dockerfile", "airflow.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path, tool: Callable[[str], str]) -> None:
    out = subprocess.run([tool("hadolint"), "--format", "json", str(dockerfile)], capture_output=True, text=True,
                         timeout=60)
    findings = json.loads(out.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_ignored_rule_is_justified(dockerfile: Path) -> None:
    """A ``# hadolint ignore=RULE`` pragma sits under a comment that names the rule and says why."""
    for ins in parse(dockerfile):
        for pragma in (c for c in ins.comments if c.startswith("# hadolint ignore=")):
            rules = pragma.split("=", 1)[1].split(",")
            why = [c for c in ins.comments if c != pragma]
            for rule in rules:
                assert any(rule.strip() in c for c in why), f"{dockerfile.name}:{ins.line}: {rule} ignored unexplained"
            assert sum(len(c) for c in why) > 60, f"{dockerfile.name}:{ins.line}: the justification is too thin"


@pytest.mark.parametrize(("dockerfile", "line", "source"), list(copy_sources()))
def test_copy_sources_exist_and_pass_dockerignore(dockerfile: str, line: int, source: str) -> None:
    path = REPO / source
    assert path.exists(), f"{dockerfile}:{line}: COPY {source}: not in the build context"
    assert not EXCLUDED(source), f"{dockerfile}:{line}: COPY {source}: excluded by .dockerignore"
    if path.is_dir():
        files = [p.relative_to(REPO).as_posix() for p in path.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
        assert files, f"{source} is empty"
        dropped = [f for f in files if EXCLUDED(f)]
        assert dropped == [], f"{dockerfile}:{line}: COPY {source} would lose {dropped[:5]}"


@pytest.mark.parametrize("path", [".venv", ".venv-tools", ".venv-airflow", "data", "data/raw/ml-100k/u.data",
                                  "var", "var/mlflow/mlflow.db", "mlruns", ".git", "tests", "tests/conftest.py",
                                  "bentos/bundle", "dist", ".env", "recsys/__pycache__/settings.cpython-311.pyc",
                                  "dags/__pycache__", ".pytest_cache", "k8s", "terraform"])
def test_dockerignore_keeps_out(path: str) -> None:
    assert EXCLUDED(path)


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """The matcher itself: a parent's pattern covers its files, the last match wins, ``**`` spans folders."""
    assert not EXCLUDED("recsys/settings.py")
    assert not EXCLUDED("plugins/recsys_airflow/config.py")
    assert EXCLUDED("plugins/recsys_airflow/__pycache__/config.cpython-311.pyc")
    assert EXCLUDED("docker/pipeline.Dockerfile")  # only the one script of docker/ is sent
    assert not EXCLUDED("docker/airflow-providers.py")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_bases_are_pinned(dockerfile: Path) -> None:
    names = set()
    for stage in stages(dockerfile):
        if stage.base in names:
            continue  # FROM an earlier stage
        _, _, tag = stage.base.split("@sha256:")[0].partition(":")  # a digest pin (CI) keeps its tag
        assert "$" not in stage.base, f"{stage.base}: a base from an ARG escapes this check"
        assert tag and tag != "latest", f"{stage.base}: not pinned"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{stage.base}: pin the exact version, not a floating one"
        if stage.name:
            names.add(stage.name)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_numeric_non_root_with_a_healthcheck(dockerfile: Path) -> None:
    final = stages(dockerfile)[-1]
    users = final.all("USER")
    assert users, "the final stage sets no USER: it would run as the base's"
    user = users[-1].args.split(":")[0]
    assert user.isdigit() and int(user) != 0, f"final USER {users[-1].args}: numeric and non-root"
    checks = final.all("HEALTHCHECK")
    assert checks and "NONE" not in checks[-1].args.upper()
    assert "CMD" in checks[-1].args


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        env.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", ins.args))
    return env


def _run_text(stage: Stage) -> str:
    return "\n".join(i.args for i in stage.all("RUN"))


def test_pipeline_image() -> None:
    builder, final = stages(PIPELINE)
    assert builder.base == final.base, "the venv's interpreter path must be the runtime's"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", builder.base)
    build = _run_text(builder)
    assert "-r /tmp/requirements.txt" in build and "--no-deps /src" in build
    assert "compileall" in build, "bytecode compiled once at build time"
    assert "libgomp1" in _run_text(final)
    env = _env(final)
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env["PATH"].startswith("/opt/recsys/venv/bin:")
    assert [i.args for i in final.all("ENTRYPOINT")] == ['["recsys"]']
    copied = [i.args for i in final.all("COPY")]
    assert "--from=builder /opt/recsys/venv /opt/recsys/venv" in copied
    # the uid Airflow's pod tasks run this image as, and group 0, which owns the writable folders
    pod_user = re.search(r"^UID = (\d+)$", (REPO / "plugins" / "recsys_airflow" / "runner.py").read_text(), re.M)
    assert pod_user is not None
    assert final.all("USER")[-1].args == f"{pod_user[1]}:0"
    assert env["HOME"] == "/home/recsys", "set, or a uid without a passwd entry gets HOME=/"
    assert f"install -d -o {pod_user[1]} -g 0 -m 2775" in _run_text(final)


def test_pipeline_healthcheck_command_passes_in_the_library_env() -> None:
    """The image's HEALTHCHECK, run by the checkout's venv (the same lock): it imports and passes here. It builds
    the settings, so a bad RECSYS_* value in the container's environment fails it (recsys.settings' own tests show
    that a bad value raises)."""
    check = stages(PIPELINE)[-1].all("HEALTHCHECK")[-1]
    command = json.loads(check.args[check.args.index("CMD") + 3:].strip())
    assert command[0] == "python"
    venv_python = str(REPO / ".venv" / "bin" / "python")
    ok = subprocess.run([venv_python, *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "Settings()" in command[-1]


def test_airflow_image() -> None:
    venv_stage, final = stages(AIRFLOW)
    lock = (REPO / "requirements-airflow.txt").read_text()
    airflow_pin = re.search(r"^apache-airflow==(\S+)", lock, re.M)
    assert airflow_pin is not None
    assert final.base.split("@")[0] == f"apache/airflow:{airflow_pin[1]}-python3.11", "the base is the lock's Airflow"
    assert venv_stage.base == final.base, "the recsys venv is built on the interpreter it runs on"
    env = _env(final)
    assert env["RECSYS_AIRFLOW_RECSYS"] == "/opt/recsys/venv/bin/recsys"
    assert env["RECSYS_AIRFLOW_RUNNER"] == "local"
    copied = [i.args for i in final.all("COPY")]
    assert "--from=recsys-env /opt/recsys/venv /opt/recsys/venv" in copied
    assert any(c.endswith("dags /opt/airflow/dags") for c in copied)
    assert any(c.endswith("plugins /opt/airflow/plugins") for c in copied)
    assert "airflow-providers.py" in _run_text(final)
    # the provider step runs as airflow (pip installs into the airflow user's site), not as root
    users_before = [i for i in final.instructions if i.keyword in ("USER", "RUN")]
    last_user = None
    for ins in users_before:
        if ins.keyword == "USER":
            last_user = ins.args
        elif "airflow-providers.py" in ins.args:
            assert last_user == "50000"


def test_uv_version_is_the_makefiles() -> None:
    make = re.search(r"^UV_VERSION \?= (\S+)", (REPO / "Makefile").read_text(), re.M)
    assert make is not None
    for path in DOCKERFILES:
        assert f"ARG UV_VERSION={make[1]}" in path.read_text(), path.name


# -- the provider step of the Airflow image ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def providers() -> ModuleType:
    return load_script(DOCKER / "airflow-providers.py", "airflow_providers")


def test_provider_list_is_requirements_airflow_in(providers: ModuleType) -> None:
    wanted = [line.strip() for line in (REPO / "requirements-airflow.in").read_text().splitlines()
              if line.strip().startswith("apache-airflow-providers-")]
    assert sorted(providers.PROVIDERS) == sorted(wanted)
    locked = providers.pins(REPO / "requirements-airflow.txt")
    assert all(name in locked for name in providers.PROVIDERS), "every provider is pinned in the lock"


def test_provider_step_installs_only_what_the_base_lacks(providers: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("apache-airflow==3.3.2\n    # via -r in\n" + "".join(
        f"{name}==1.{n}.0\n" for n, name in enumerate(providers.PROVIDERS)))
    base = {"apache-airflow": "3.3.2", providers.PROVIDERS[0]: "9.9.9", providers.PROVIDERS[1]: "1.1.0"}
    monkeypatch.setattr(providers, "installed", base.get)
    calls: list[list[str]] = []
    monkeypatch.setattr(providers.subprocess, "run", lambda cmd, check: calls.append(cmd))
    assert providers.main(lock) == 0
    install, check = calls
    lacking = [f"{name}==1.{n}.0" for n, name in enumerate(providers.PROVIDERS) if n >= 2]
    assert install[-len(lacking) - 1:] == ["apache-airflow==3.3.2", *lacking]
    assert check[-2:] == ["pip", "check"]


def test_provider_step_refuses_another_airflow(providers: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("apache-airflow==3.3.2\n")
    monkeypatch.setattr(providers, "installed", {"apache-airflow": "3.2.0"}.get)
    monkeypatch.setattr(providers.subprocess, "run", lambda cmd, check: pytest.fail(f"ran {cmd}"))
    assert providers.main(lock) == 1
