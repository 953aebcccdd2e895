"""docker-compose.yml, .env.example and the compose configs (docker/compose/), checked without Docker.

This machine has no Docker engine and no `docker compose` plugin, so nothing here starts a container. Instead:
the compose file against the Compose Specification's JSON schema (the copy vendored in check-jsonschema,
`--builtin-schema vendor.compose-spec`), then cross-checks of what the schema cannot know: every variable comes
from .env.example and every one there is used, every RECSYS_*/MLFLOW_* variable is a real setting, every URL
points at a service listening on that port, every database is created by the init script, the dependency graph
is sound, and promtool/amtool accept the Prometheus and Alertmanager configs laid out as the mounts lay them out.
"""

from __future__ import annotations

import copy
import glob
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
COMPOSE_DIR = REPO / "docker" / "compose"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")
OUR_IMAGES = {"recsys-pipeline", "recsys-airflow", "recsys-serving"}
# Images whose releases are numbered by one integer (no x.y.z exists to pin to), and PostgreSQL, whose exact
# versions are major.minor.
INTEGER_RELEASES = {"mendhak/http-https-echo"}
TWO_PART_RELEASES = {"postgres"}
AIRFLOW_COMPONENTS = {"api-server", "scheduler", "dag-processor", "triggerer"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$")


# -- reading the files -----------------------------------------------------------------------------------------------
def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


COMPOSE_DATA = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE_DATA["services"]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def strings(node: Any) -> Iterator[str]:
    """Every string of the loaded file (keys too): comments are not in it, merged anchors are."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def used_variables() -> set[str]:
    return {m[1] for s in strings(COMPOSE_DATA) for m in VAR.finditer(s.replace("$$", ""))}


def env_of(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    assert isinstance(env, dict), f"{name}: environment as a mapping, please"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def substitute(text: str, values: dict[str, str] | None = None) -> str:
    values = env_example() if values is None else values
    return VAR.sub(lambda m: values.get(m[1], ""), text.replace("$$", "$"))


def container_ports(name: str) -> set[int]:
    svc = SERVICES[name]
    ports = {int(str(p).split(":")[-1].split("/")[0]) for p in svc.get("ports", [])}
    return ports | {int(p) for p in svc.get("expose", [])}


def published(name: str) -> dict[int, int]:
    """host port -> container port."""
    out = {}
    for p in SERVICES[name].get("ports", []):
        parts = str(p).split(":")
        out[int(parts[-2])] = int(parts[-1])
    return out


def mounts(name: str) -> list[tuple[str, str, str]]:
    """(source, container path, mode) of each volume entry (short syntax)."""
    out = []
    for entry in SERVICES[name].get("volumes", []):
        parts = str(entry).split(":")
        source, target = parts[0], parts[1]
        out.append((source, target, parts[2] if len(parts) > 2 else "rw"))
    return out


def binds(name: str) -> list[tuple[Path, str, str]]:
    return [(REPO / s, t, m) for s, t, m in mounts(name) if s.startswith(("./", "/"))]


def airflow_services() -> list[str]:
    return [n for n, s in SERVICES.items() if str(s.get("image", "")).startswith("recsys-airflow:")]


def settings_variables() -> set[str]:
    from recsys.settings import ServingSettings, Settings, env_name

    names = set()
    for cls in (Settings, ServingSettings):
        names |= {env_name(cls, field) for field in cls.model_fields}
    return names


def airflow_config() -> Any:
    path = REPO / "plugins" / "recsys_airflow" / "config.py"
    spec = importlib.util.spec_from_file_location("compose_test_recsys_airflow_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def airflow_variables() -> set[str]:
    """The RECSYS_AIRFLOW_* variables plugins/recsys_airflow/config.py documents (its docstring's table)."""
    doc = airflow_config().__doc__ or ""
    return set(re.findall(r"``(RECSYS_AIRFLOW_[A-Z_]+)``", doc))


def mlflow_cli_source() -> str:
    """The source of `mlflow server`'s options (the command and its shared option definitions), read, not imported
    (importing mlflow costs seconds)."""
    spec = importlib.util.find_spec("mlflow")
    assert spec is not None and spec.origin is not None
    root = Path(spec.origin).parent
    return (root / "cli" / "__init__.py").read_text() + (root / "utils" / "cli_args.py").read_text()


def mlflow_server_variables() -> set[str]:
    """The MLFLOW_* variables `mlflow server` reads as options (its click `envvar=`s)."""
    return set(re.findall(r'envvar="(MLFLOW_[A-Z_]+)"', mlflow_cli_source()))


def created_databases() -> set[tuple[str, str, str]]:
    """(role, password variable, database) of each ``create`` call in the PostgreSQL init script."""
    text = (COMPOSE_DIR / "postgres-init.sh").read_text()
    return set(re.findall(r'^create (\w+) "\$(\w+)" (\w+)$', text, re.M))


def postgres_urls() -> Iterator[tuple[str, str, str]]:
    """(service, variable, URL) of every PostgreSQL URL a service is given."""
    for name in SERVICES:
        for key, value in env_of(name).items():
            if value.startswith("postgresql"):
                yield name, key, value


def urls() -> Iterator[tuple[str, str, str]]:
    """(service, where, URL) of every URL in the services' environments and commands."""
    for name, svc in SERVICES.items():
        for key, value in env_of(name).items():
            for m in re.finditer(r"[a-z][a-z0-9+]*://[^\s,'\"]+", value):
                yield name, key, m[0]
        for arg in svc.get("command") or []:
            for m in re.finditer(r"[a-z][a-z0-9+]*://[^\s,'\"]+", str(arg)):
                yield name, "command", m[0]


def lay_out(service: str, root: Path) -> None:
    """The service's bind mounts copied under ``root`` at their container paths (as the container sees them)."""
    for source, target, _ in binds(service):
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy(source, dest)


def flag(service: str, name: str) -> str:
    for arg in SERVICES[service].get("command") or []:
        if str(arg).startswith(f"--{name}="):
            return str(arg).split("=", 1)[1]
    raise AssertionError(f"{service}: no --{name}=")


# -- the schema ------------------------------------------------------------------------------------------------------
def check_schema(tool: Callable[[str], str], path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_file_matches_the_compose_spec(tool: Callable[[str], str]) -> None:
    out = check_schema(tool, COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("mistake", ["unknown key", "bad condition", "ports as a string"])
def test_the_schema_check_catches_mistakes(mistake: str, tool: Callable[[str], str], tmp_path: Path) -> None:
    """A negative control: the same check rejects a broken copy (so a pass above means something)."""
    data = copy.deepcopy(COMPOSE_DATA)
    svc = data["services"]["recommender"]
    if mistake == "unknown key":
        svc["healthchek"] = svc.pop("healthcheck")
    elif mistake == "bad condition":
        svc["depends_on"]["recsys-init"]["condition"] = "service_done"
    else:
        svc["ports"] = "3000:3000"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data))
    assert check_schema(tool, broken).returncode != 0


# -- images, mounts, volumes, variables ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_is_pinned(name: str) -> None:
    image = str(SERVICES[name]["image"]).split("@sha256:")[0]  # a digest pin (CI) keeps its tag for people
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    assert tag and tag != "latest", f"{name}: {image} is not pinned"
    if repo in OUR_IMAGES:
        assert tag == "${IMAGE_TAG}", f"{name}: our images carry the tag of the build (.env IMAGE_TAG)"
    elif repo in INTEGER_RELEASES:
        assert tag.isdigit()
    elif repo in TWO_PART_RELEASES:
        assert re.match(r"\d+\.\d+-", tag), f"{name}: {image}: pin major.minor"
    else:
        assert re.match(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image}: pin the exact version"
    assert "build" not in SERVICES[name], "images are built by docs/deploy-compose.md's commands, not by compose"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bind_mounts_exist_and_are_read_only(name: str) -> None:
    for source, target, mode in binds(name):
        assert source.exists(), f"{name}: {source.relative_to(REPO)} (mounted at {target}) does not exist"
        assert mode == "ro", f"{name}: {target}: the checkout is mounted read-only"


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE_DATA.get("volumes") or {})
    used = {s for name in SERVICES for s, _, _ in mounts(name) if not s.startswith(("./", "/"))}
    assert used <= declared, f"undeclared: {used - declared}"
    assert declared <= used, f"declared, never mounted: {declared - used}"


def test_every_variable_is_in_env_example_and_every_one_there_is_used() -> None:
    used, listed = used_variables(), set(env_example())
    assert used - listed == set(), f"used but not in .env.example: {sorted(used - listed)}"
    assert listed - used == set(), f"in .env.example but unused: {sorted(listed - used)}"


def test_env_example_documents_each_variable_and_holds_no_secret() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for n, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            block = []
            for above in reversed(lines[:n]):
                if not above.strip():
                    break
                block.append(above)
            assert any(b.startswith("#") for b in block), f"{key}: no comment in its block"
            if SECRET_NAME.search(key):
                assert value == "" or value.startswith("CHANGE_ME"), f"{key}: a placeholder, not a secret"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_secret_is_written_in_the_compose_file(name: str) -> None:
    for key, value in env_of(name).items():
        if SECRET_NAME.search(key) and key != "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
            assert VAR.fullmatch(value), f"{name}: {key} must come from .env"
        for m in re.finditer(r"://[^:/@\s]+:([^@\s]+)@", value):
            assert VAR.fullmatch(m[1]), f"{name}: {key}: the URL's password must come from .env"
        if key.startswith("AIRFLOW_CONN_"):
            conn = json.loads(value)
            assert "password" not in conn or VAR.fullmatch(conn["password"]) or \
                conn["password"].startswith("http://slack-catcher:"), f"{name}: {key}: password from .env"


def _detect_secrets(tool: Callable[[str], str], paths: list[Path], cwd: Path) -> dict[str, list[str]]:
    """detect-secrets' findings per file (it silently skips files outside its working directory: hence ``cwd``)."""
    out = subprocess.run([tool("detect-secrets"), "scan", *(str(p.relative_to(cwd)) for p in paths)], cwd=cwd,
                         capture_output=True, text=True, timeout=120, check=True)
    return {name: [r["type"] for r in found] for name, found in json.loads(out.stdout)["results"].items()}


def test_detect_secrets_finds_none_in_the_deployment_files(tool: Callable[[str], str], tmp_path: Path) -> None:
    files = [COMPOSE, ENV_EXAMPLE, *sorted((REPO / "docker").rglob("*")), REPO / "docs" / "deploy-compose.md"]
    assert _detect_secrets(tool, [f for f in files if f.is_file()], REPO) == {}
    # the negative control: a real-looking value in a copy of .env.example is found
    leaked = tmp_path / "env.example"
    real_looking = "9f2c4e1a7b3d5f60a8c2e4b6d8f0a1c3e5b7d9f1"
    leaked.write_text(ENV_EXAMPLE.read_text().replace("CHANGE_ME_recsys_db", real_looking))
    assert _detect_secrets(tool, [leaked], tmp_path) != {}


# -- the variables are the project's ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_recsys_and_mlflow_variables_are_real_settings(name: str) -> None:
    env = env_of(name)
    image = str(SERVICES[name]["image"])
    known = settings_variables()
    if image.startswith("recsys-airflow:"):
        known |= airflow_variables()
    if name == "mlflow":
        known = mlflow_server_variables()
    unknown = sorted(k for k in env if k.startswith(("RECSYS_", "MLFLOW_")) and k not in known)
    assert unknown == [], f"{name}: not a field of recsys.settings (nor a documented Airflow/MLflow variable)"


def test_the_settings_lists_are_not_empty() -> None:
    """The lists the test above checks against: a broken reader would make it pass vacuously."""
    assert {"RECSYS_FEEDBACK_URL", "RECSYS_AUDIT_URL", "MLFLOW_TRACKING_URI", "RECSYS_ADMIN_TOKEN"} <= \
        settings_variables()
    assert {"RECSYS_AIRFLOW_RECSYS", "RECSYS_AIRFLOW_WORKDIR", "RECSYS_AIRFLOW_RUNNER"} <= airflow_variables()
    assert "MLFLOW_BACKEND_STORE_URI" in mlflow_server_variables()


def test_airflow_connections_are_the_dags_and_parse() -> None:
    config = airflow_config()
    wanted = {f"AIRFLOW_CONN_{c.upper()}" for c in (config.SERVICE_CONN, config.SLACK_CONN, config.SMTP_CONN)}
    types = {config.SERVICE_CONN: "http", config.SLACK_CONN: "slackwebhook", config.SMTP_CONN: "smtp"}
    for name in airflow_services():
        conns = {k: v for k, v in env_of(name).items() if k.startswith("AIRFLOW_CONN_")}
        assert set(conns) == wanted, name
        for key, value in conns.items():
            conn = json.loads(substitute(value))
            assert conn["conn_type"] == types[key.removeprefix("AIRFLOW_CONN_").lower()]
            host = conn.get("host") or urlsplit(conn.get("password", "")).hostname
            port = conn.get("port") or urlsplit(conn.get("password", "")).port
            assert host in SERVICES and port in container_ports(host), f"{key}: {host}:{port}"


# -- every address is a service listening there ----------------------------------------------------------------------
@pytest.mark.parametrize(("service", "where", "url"), sorted(set(urls())))
def test_urls_point_at_a_listening_service(service: str, where: str, url: str) -> None:
    parts = urlsplit(substitute(url))
    host, port = parts.hostname, parts.port
    assert host is not None and port is not None, f"{service} {where}: {url}: say the port"
    if host in ("localhost", "127.0.0.1"):
        if where == "command" or "EXECUTION" in where:
            return  # the service itself
        # a browser's link: a port published on the host
        assert any(port in published(n) for n in SERVICES), f"{service} {where}: {url}: no service publishes {port}"
    else:
        assert host in SERVICES, f"{service} {where}: {url}: {host} is not a compose service"
        assert port in container_ports(host), f"{service} {where}: {url}: {host} does not listen on {port}"


def test_host_ports_are_unique_and_local() -> None:
    seen: dict[int, str] = {}
    for name in SERVICES:
        for p in SERVICES[name].get("ports", []):
            parts = str(p).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: {p}: publish on 127.0.0.1 only"
            host = int(parts[1])
            assert host not in seen, f"host port {host}: {seen.get(host)} and {name}"
            seen[host] = name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_runs_as_a_numeric_non_root_user(name: str) -> None:
    """Said in the compose file, not left to each image's default (mailpit's is root)."""
    user = str(SERVICES[name].get("user", ""))
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"{name}: user {user!r}: numeric uid:gid"
    assert int(uid) != 0, f"{name}: runs as root"
    assert SERVICES[name].get("security_opt") == ["no-new-privileges:true"], name


# -- dependencies and health -----------------------------------------------------------------------------------------
def test_depends_on_is_sound() -> None:
    graph = {}
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on with conditions"
        graph[name] = set(deps)
        for target, spec in deps.items():
            assert target in SERVICES, f"{name} depends on {target}: no such service"
            assert target != name
            condition = spec["condition"]
            if condition == "service_healthy":
                assert SERVICES[target].get("healthcheck"), f"{name} waits for {target}'s health: it has no check"
            elif condition == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{target} is a one-shot"
            else:
                assert condition == "service_started"
    done: set[str] = set()
    while len(done) < len(graph):  # a topological order exists: no cycle
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"a dependency cycle among {set(graph) - done}"
        done |= ready


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_python_in_healthchecks_compiles(name: str) -> None:
    test = [str(t) for t in SERVICES[name].get("healthcheck", {}).get("test", [])]
    for i, word in enumerate(test[:-1]):
        if word == "-c" and test[i - 1] == "python":
            compile(test[i + 1], f"{name} healthcheck", "exec")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_long_running_services_have_healthchecks(name: str) -> None:
    svc = SERVICES[name]
    if svc.get("restart") == "no":
        assert "healthcheck" not in svc or svc["healthcheck"].get("disable"), f"{name}: a one-shot"
        return
    assert svc.get("restart") == "unless-stopped", name
    test = svc.get("healthcheck", {}).get("test")
    assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: no healthcheck"


# -- PostgreSQL ------------------------------------------------------------------------------------------------------
def test_every_database_in_a_url_is_created_by_the_init_script() -> None:
    created = created_databases()
    assert {db for _, _, db in created} == {"airflow", "mlflow", "recsys"}
    postgres_env = env_of("postgres")
    for service, key, url in postgres_urls():
        m = re.fullmatch(r"postgresql\+psycopg2://(\w+):\$\{(\w+)\}@postgres:5432/(\w+)", url)
        assert m, f"{service} {key}: {url}"
        assert (m[1], m[2], m[3]) in created, f"{service} {key}: role/password/database not created"
        assert postgres_env.get(m[2]) == f"${{{m[2]}}}", f"postgres is not given {m[2]}"
    targets = {t for _, t, _ in mounts("postgres")}
    assert "/docker-entrypoint-initdb.d/10-recsys.sh" in targets
    probe = SERVICES["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in probe and "--host=127.0.0.1" in probe, "TCP: the init's temporary server is socket-only"


def _pg_tool(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture
def scratch_postgres() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL cluster (its own directory, socket and port; roles are cluster-wide, so the
    machine's shared server is never touched): (socket directory, TCP port). Skips without the server binaries."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl and shutil.which("psql")):
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="compose-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run initdb as")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60)  # noqa: E731
    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256")
        run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
        yield str(root), port
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_the_init_script_creates_isolated_databases_on_a_real_server(scratch_postgres: tuple[str, int]) -> None:
    """The script as the image runs it (psql as the superuser over the socket), then each role over TCP with its
    password: into its own database, and not into another's."""
    import psycopg2

    sock, port = scratch_postgres
    passwords = {"PG_AIRFLOW_PASSWORD": "pw-airflow", "PG_MLFLOW_PASSWORD": "pw-mlflow",
                 "PG_RECSYS_PASSWORD": "pw-recsys"}
    env = {**os.environ, **passwords, "POSTGRES_USER": "postgres", "PGHOST": sock, "PGPORT": str(port)}
    out = subprocess.run(["bash", str(COMPOSE_DIR / "postgres-init.sh")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    for role, variable, database in created_databases():
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=role, password=passwords[variable],
                                dbname=database, connect_timeout=5)
        with conn, conn.cursor() as cur:  # the owner may create its tables (what the migrations do)
            cur.execute("CREATE TABLE probe (id int)")
            cur.execute("SELECT current_user, current_database()")
            assert cur.fetchone() == (role, database)
        conn.close()
        other = next(db for _, _, db in created_databases() if db != database)
        with pytest.raises(psycopg2.OperationalError, match=r"permission denied|CONNECT privilege"):
            psycopg2.connect(host="127.0.0.1", port=port, user=role, password=passwords[variable], dbname=other,
                             connect_timeout=5)
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=port, user=role, password="wrong", dbname=database,
                             connect_timeout=5)


def test_the_recsys_stores_share_the_recsys_database() -> None:
    for name in ("recsys-init", "recommender"):
        env = env_of(name)
        for key in ("RECSYS_AUDIT_URL", "RECSYS_FEEDBACK_URL", "RECSYS_BANDIT_URL"):
            assert env[key].endswith("@postgres:5432/recsys"), f"{name}: {key}"


# -- the components --------------------------------------------------------------------------------------------------
def test_airflow_components_share_secret_and_execution_api() -> None:
    names = airflow_services()
    commands = {str((SERVICES[n].get("command") or [""])[0]) for n in names} - {""}
    assert commands == AIRFLOW_COMPONENTS
    shared = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
              "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY")
    for key in shared:
        values = {env_of(n).get(key) for n in names}
        assert len(values) == 1 and None not in values, f"{key} differs between {names}: {values}"
    assert env_of(names[0])["AIRFLOW__API_AUTH__JWT_SECRET"] == "${AIRFLOW_JWT_SECRET}"
    api = next(n for n in names if (SERVICES[n].get("command") or [""])[0] == "api-server")
    execution = urlsplit(env_of(api)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname == api and execution.port in container_ports(api) and execution.path == "/execution/"
    for n in names:
        env = env_of(n)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
        assert env["RECSYS_AIRFLOW_RECSYS"] == "/opt/recsys/venv/bin/recsys"
        assert env["RECSYS_AIRFLOW_WORKDIR"] == "/srv/recsys"
        if n != "airflow-init":
            assert SERVICES[n]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_airflow_auth_is_on_with_an_admin_from_init() -> None:
    env = env_of("airflow-apiserver")
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in env, "that switch turns the login off"
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    for name in ("airflow-apiserver", "airflow-init"):
        assert any(passwords.parent.as_posix() == t and not s.startswith(".") for s, t, _ in mounts(name)), \
            f"{name}: the passwords file's folder is not on a shared volume"
    assert env_of("airflow-init")["AIRFLOW_ADMIN_PASSWORD"] == "${AIRFLOW_ADMIN_PASSWORD}"
    assert "AIRFLOW_ADMIN_PASSWORD" not in env, "only airflow-init needs the plain password"


def test_recommender() -> None:
    svc, env = SERVICES["recommender"], env_of("recommender")
    assert svc["image"] == "recsys-serving:${IMAGE_TAG}"
    assert 3000 in container_ports("recommender")
    assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert svc["depends_on"]["recsys-init"]["condition"] == "service_completed_successfully"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["RECSYS_ADMIN_TOKEN"] == "${RECSYS_ADMIN_TOKEN}"
    user = str(svc["user"]).split(":")
    assert user[0] != "0" and user[1] == "0", "non-root, in the group that owns the shared var volume"


def test_mlflow_server() -> None:
    svc = SERVICES["mlflow"]
    assert svc["image"] == "recsys-pipeline:${IMAGE_TAG}" and svc["entrypoint"] == ["mlflow"]
    args = [str(a) for a in svc["command"]]
    assert args[0] == "server" and "--serve-artifacts" in args
    destination = flag("mlflow", "artifacts-destination")
    assert destination in {t for s, t, _ in mounts("mlflow") if not s.startswith(".")}, "artifacts on a volume"
    assert env_of("mlflow")["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    allowed = set(substitute(flag("mlflow", "allowed-hosts")).split(","))
    clients = {urlsplit(env_of(n)["MLFLOW_TRACKING_URI"]).netloc for n in SERVICES
               if "MLFLOW_TRACKING_URI" in env_of(n)}
    assert clients and clients <= allowed, f"MLflow would refuse the Host of {clients - allowed}"
    probe = " ".join(svc["healthcheck"]["test"])
    assert urlsplit(re.search(r"http://[^'\" ]+", probe)[0]).netloc in allowed  # type: ignore[index]
    for host_port in published("mlflow"):
        assert f"localhost:{host_port}" in allowed, "the UI on the published port"


def test_mlflow_server_flags_exist() -> None:
    source = mlflow_cli_source()
    for arg in map(str, SERVICES["mlflow"]["command"][1:]):
        option = arg.split("=", 1)[0]
        assert re.search(rf'"{re.escape(option)}[" /]', source), f"mlflow server has no {option}"


def test_airflow_options_are_real(repo: Path) -> None:
    """Every AIRFLOW__SECTION__KEY given is an option of Airflow's own config.yml (from the Airflow venv)."""
    found = sorted((repo / ".venv-airflow").glob("lib/python*/site-packages/airflow/config_templates/config.yml"))
    if not found:
        pytest.skip("no Airflow venv (make airflow-setup)")
    config = yaml.safe_load(found[0].read_text())
    known = {(section, option) for section, body in config.items() for option in (body.get("options") or {})}
    for name in airflow_services():
        for key in env_of(name):
            m = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", key)
            if m:
                assert (m[1].lower(), m[2].lower()) in known, f"{name}: {key} is no Airflow option"


@pytest.mark.parametrize(("service", "binary"), [("prometheus", "prometheus"),
                                                  ("alertmanager", "prometheus-alertmanager")])
def test_monitoring_flags_exist(service: str, binary: str) -> None:
    """The flags given are the binary's (Debian's build of the same major version: a renamed flag fails here)."""
    path = shutil.which(binary) or shutil.which(binary.removeprefix("prometheus-"))
    if path is None:
        pytest.skip(f"{binary} is not installed (make monitoring-tools)")
    help_text = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
    text = help_text.stdout + help_text.stderr
    for arg in map(str, SERVICES[service]["command"]):
        assert f" {arg.split('=', 1)[0]}" in text, f"{service}: {binary} has no {arg}"


def test_init_scripts_are_valid_bash() -> None:
    for script in sorted(COMPOSE_DIR.glob("*.sh")):
        out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert out.returncode == 0, f"{script.name}: {out.stderr}"
        assert "set -euo pipefail" in script.read_text(), f"{script.name}: a failing step must fail the init"


def _cli_commands() -> list[list[str]]:
    lines = (COMPOSE_DIR / "recsys-init.sh").read_text().splitlines()
    return [line.split("#")[0].split()[1:] for line in lines if line.startswith("recsys ")]


def test_recsys_init_leaves_var_serving_writable_for_the_service() -> None:
    text = (COMPOSE_DIR / "recsys-init.sh").read_text()
    assert 'install -d -m 2775 "$serving"' in text and 'serving="${RECSYS_VAR_DIR:?}/serving"' in text
    assert text.index("install -d") < text.index("recsys db migrate"), "before any recsys command"
    assert str(SERVICES["recommender"]["user"]).endswith(":0"), "the service writes there through group 0"


def test_recsys_init_migrates_first_and_then_reaches_a_champion() -> None:
    commands = [" ".join(c[:2]) for c in _cli_commands()]
    assert commands[0] == "db migrate", "the stores' schemas before anything writes to them"
    for step in ("data fetch", "data replay", "validate --all", "train --as-of-week", "registry gate"):
        assert any(c.startswith(step.split()[0]) for c in commands), step
    assert SERVICES["recsys-init"]["entrypoint"][-1] in {t for _, t, _ in mounts("recsys-init")}


@pytest.mark.parametrize("words", _cli_commands(), ids=lambda w: " ".join(w[:2]))
def test_recsys_init_runs_real_commands(words: list[str]) -> None:
    import typer.main

    from recsys.cli import app

    command: Any = typer.main.get_command(app)  # typer's own (vendored) click types
    path: list[str] = []
    for word in words:
        if word.startswith("-") or not hasattr(command, "commands"):
            break
        assert word in command.commands, f"recsys {' '.join(path)}: no command {word!r}"
        command = command.commands[word]
        path.append(word)
    options = {o for p in command.params for o in getattr(p, "opts", [])}
    for word in words:
        if word.startswith("--"):
            assert word in options, f"recsys {' '.join(path)}: no option {word}"


# -- monitoring ------------------------------------------------------------------------------------------------------
def test_prometheus_scrapes_the_compose_services(tool: Callable[[str], str], tmp_path: Path) -> None:
    lay_out("prometheus", tmp_path)
    config_path = tmp_path / flag("prometheus", "config.file").lstrip("/")
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "recsys" in jobs, "every rule selects job=\"recsys\""
    for job in jobs.values():
        for target in (t for sc in job.get("static_configs", []) for t in sc["targets"]):
            host, port = target.rsplit(":", 1)
            if host == "localhost":
                assert int(port) in container_ports("prometheus")
            else:
                assert host in SERVICES and int(port) in container_ports(host), f"{job['job_name']}: {target}"
    assert jobs["recsys"]["static_configs"][0]["targets"] == ["recommender:3000"]
    for am in config["alerting"]["alertmanagers"]:
        for target in am["static_configs"][0]["targets"]:
            host, port = target.rsplit(":", 1)
            assert host in SERVICES and int(port) in container_ports(host)
    out = subprocess.run([tool("promtool"), "check", "config", str(config_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 2 rule files found" in out.stdout, "the mounted rules are the ones the config names"


def test_alertmanager_routes_to_the_catchers(tool: Callable[[str], str], tmp_path: Path) -> None:
    lay_out("alertmanager", tmp_path)
    config_path = tmp_path / flag("alertmanager", "config.file").lstrip("/")
    config = yaml.safe_load(config_path.read_text())
    for receiver in config["receivers"]:
        for email in receiver.get("email_configs", []):
            host, port = email["smarthost"].rsplit(":", 1)
            assert host in SERVICES and int(port) in container_ports(host), email["smarthost"]
        for slack in receiver.get("slack_configs", []):
            url = urlsplit(slack["api_url"])
            assert url.hostname in SERVICES and url.port in container_ports(url.hostname), slack["api_url"]
    embedded = yaml.safe_load((REPO / "monitoring" / "alertmanager" / "alertmanager.yml").read_text())
    assert config["route"] == embedded["route"], "the routing is the embedded default's"
    assert config["inhibit_rules"] == embedded["inhibit_rules"]
    assert {r["name"] for r in config["receivers"]} == {r["name"] for r in embedded["receivers"]}
    out = subprocess.run([tool("amtool"), "check-config", str(config_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 templates" in out.stdout, "the templates are mounted where the config looks"


def test_grafana_provisioning_points_at_compose_prometheus() -> None:
    targets = {t: s for s, t, _ in binds("grafana")}
    provisioning = targets["/etc/grafana/provisioning"]
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    url = urlsplit(source["datasources"][0]["url"])
    assert url.hostname in SERVICES and url.port in container_ports(url.hostname)
    provider = yaml.safe_load((provisioning / "dashboards" / "recsys.yaml").read_text())["providers"][0]
    dashboards = targets[provider["options"]["path"]]
    assert list(dashboards.glob("*.json")), "the provider's path holds the project's dashboards"
    assert env_of("grafana")["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD}"


def test_env_file_is_git_ignored() -> None:
    out = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert out.returncode == 0
