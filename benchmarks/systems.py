"""The systems under test, started the same way by every benchmark: our Bento (``bentos/service.py`` of a code tree),
the floor (``benchmarks/floor_service.py``), ``mlflow models serve`` of a registered version, and an
``mlflow server`` (the registry over HTTP).

A Bento is configured through the environment only (``RECSYS_*``: the names are the same whether the code tree
reads them with ``recsys.settings`` or, in older commits, from ``os.environ``), with its workers set through
``BENTOML_CONFIG_OPTIONS=services.<name>.workers=N`` (``bentoml serve`` has no ``--workers`` in 1.4) and
``PYTHONPATH`` at the code tree served, so the same virtual environment can serve two commits side by side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.harness.processes import Server, free_port, get_json, post_json, start_server
from benchmarks.mix import BODY, KNOWN_USERS
from recsys.runtime import child_env

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
BODY_FORMAT = {"bento": "bento", "bento-redis": "bento", "floor": "bento", "mlflow": "mlflow"}
"""Kind of server -> the request body format it takes (see benchmarks.mix)."""


def bentoml_home(tmp: Path) -> str:
    return os.environ.get("BENTOML_HOME") or str(tmp / "bentoml_home")


def start_bento(var: Path, workers: int, env: Mapping[str, str | None], code_root: Path = ROOT,
                name: str = "bento") -> Server:
    """``bentoml serve service:RecommenderService`` of ``code_root``'s ``bentos/`` with ``workers`` workers, its
    state (feedback store, logs) under ``var``; ``env`` on top (a None value removes a variable; its
    ``BENTOML_CONFIG_OPTIONS`` are added to the workers option)."""
    var.mkdir(parents=True, exist_ok=True)
    port = free_port()
    options = [f"services.recommender.workers={workers}", env.get("BENTOML_CONFIG_OPTIONS")]
    base = {"PYTHONPATH": str(code_root), "RECSYS_VAR_DIR": str(var),
            "RECSYS_FEEDBACK_URL": f"sqlite:///{var}/feedback.db",
            "BENTOML_HOME": bentoml_home(var.parent), "BENTOML_DO_NOT_TRACK": "True", **env,
            "BENTOML_CONFIG_OPTIONS": " ".join(filter(None, options))}
    cmd = [sys.executable, "-m", "bentoml", "serve", "service:RecommenderService", "--host", "127.0.0.1",
           "--port", str(port)]
    return start_server(name, "bento", cmd, port=port, cwd=code_root / "bentos", env=child_env(base),
                        log=var.parent / f"{name}.log", ready_path="/readyz", route="/predict")


def bundle_env(bundle: Path, compiled: Path, extra: Mapping[str, str]) -> dict[str, str | None]:
    """A Bento serving ``bundle`` alone: no registry (not part of the measurement), watcher off, no admin token,
    compiled trees cached in ``compiled``; ``extra`` (``--bento-env``) last."""
    return {"RECSYS_BUNDLE_DIR": str(bundle), "RECSYS_WATCH_INTERVAL": "0", "RECSYS_COMPILED_DIR": str(compiled),
            "MLFLOW_TRACKING_URI": None, "RECSYS_ADMIN_TOKEN": None, **extra}  # nosec B105: None unsets the token for the run, not a password


def start_floor(tmp: Path, workers: int, extra: Mapping[str, str], answer: Path | None, sync: bool) -> Server:
    """benchmarks/floor_service.py with the Bento's settings: the same ``--bento-env``, and its
    ``services.recommender.*`` BentoML options applied to ``services.floor``."""
    port = free_port()
    options = extra.get("BENTOML_CONFIG_OPTIONS", "").replace("services.recommender.", "services.floor.")
    env: dict[str, str | None] = {
        "PYTHONPATH": str(ROOT), "BENTOML_HOME": bentoml_home(tmp), "BENTOML_DO_NOT_TRACK": "True", **extra,
        "BENTOML_CONFIG_OPTIONS": " ".join(filter(None, [f"services.floor.workers={workers}", options])),
        "RECSYS_FLOOR_SYNC": "1" if sync else "0", "RECSYS_FLOOR_RESPONSE": str(answer) if answer else None,
        "MLFLOW_TRACKING_URI": None}
    cmd = [sys.executable, "-m", "bentoml", "serve", "floor_service:FloorService", "--host", "127.0.0.1",
           "--port", str(port)]
    return start_server("floor", "floor", cmd, port=port, cwd=BENCH_DIR, env=child_env(env), log=tmp / "floor.log",
                        ready_path="/readyz", route="/predict")


def start_mlflow_serve(tmp: Path, model: str, version: int, tracking_uri: str, workers: int) -> Server:
    """``mlflow models serve -m models:/MODEL/VERSION --env-manager local`` (uvicorn, ``workers`` workers)."""
    port = free_port()
    bindir = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH
    env = child_env({"MLFLOW_TRACKING_URI": tracking_uri, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")})
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{model}/{version}",
           "--env-manager", "local", "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)]
    return start_server("mlflow", "mlflow", cmd, port=port, cwd=tmp, env=env, log=tmp / "mlflow.log",
                        ready_path="/ping", route="/invocations")


def start_mlflow_server(root: Path) -> Server:
    """``mlflow server`` on a loopback port over a SQLite store and an artifact folder under ``root``."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination", str(root / "artifacts"),
           "--workers", "1"]
    return start_server("mlflow-server", "mlflow-server", cmd, port=port, cwd=root, env=child_env({}),
                        log=root / "mlflow-server.log", ready_path="/health")


def wait_compiled(server: Server, timeout_s: float = 120.0) -> float | None:
    """Seconds until every worker's champion scores with compiled trees (``engine`` in ``GET /model``, which one
    worker answers at a time: 6 answers in a row), so a measurement starts from the steady state. None when the
    service reports no ``engine`` (a commit before compiled trees): nothing to wait for."""
    t0 = time.perf_counter()
    streak = 0
    while streak < 6 and time.perf_counter() - t0 < timeout_s:
        champion = get_json(f"{server.url}/model")["models"].get("champion", {})
        if champion and "engine" not in champion:
            return None
        streak = streak + 1 if champion.get("engine") == "lleaves" else 0
        time.sleep(0.2)
    return time.perf_counter() - t0


def compiled_note(seconds: float | None) -> str:
    return "no compiled trees reported" if seconds is None else f"compiled trees in use after {seconds:.1f} s more"


def precompile(bundle: Path, cache: Path) -> None:
    """Compile the bundle's trees (lleaves) into the cache the Bento reads, so its workers load them at start as a
    replica that served this version before would, and the measurement is of the steady state."""
    from recsys.ranking.recommender import Recommender

    Recommender.load(bundle).compile_trees(cache)


def resolve_version(model: str, version: int | None, tracking_uri: str) -> int:
    """``version``, or the registry's champion when None."""
    if version is not None:
        return version
    from mlflow import MlflowClient

    return int(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
               .get_model_version_by_alias(model, "champion").version)


def download_bundle(model: str, version: int, tracking_uri: str, dst: Path) -> Path:
    """The version's bundle, downloaded under ``dst`` (every sha256 checked, and the bundle loaded once)."""
    from recsys.registry.release import bundle_path, load_version

    load_version(model, version, tracking_uri, dst)
    return bundle_path(dst / f"v{version}")


def top_items(server: Server, mix: list[dict[str, Any]]) -> list[list[int] | None]:
    """Top-n item ids per request (None when it failed): the parity check between the Bento and mlflow."""
    lists: list[list[int] | None] = []
    body_format = BODY_FORMAT[server.kind]
    for req in mix:
        status, payload = post_json(server.url + server.route, BODY[body_format](req))
        if status != 200:
            lists.append(None)
        elif body_format == "bento":
            lists.append([int(i["item_id"]) for i in payload["items"]])
        else:
            lists.append([int(r["item_id"]) for r in sorted(payload["predictions"], key=lambda r: r["rank"])])
    return lists


def answers(server: Server, mix: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """The Bento's whole answer per request without what differs by design (request id, model labels): items with
    their scores and titles, and the fallback flag; None when it failed."""
    found: list[dict[str, Any] | None] = []
    for req in mix:
        status, payload = post_json(server.url + server.route, BODY["bento"](req))
        ok = status == 200 and isinstance(payload, dict)
        found.append({"items": payload["items"], "fallback": payload["fallback"]} if ok else None)
    return found


def save_answer(server: Server, path: Path) -> bool:
    """A real 10-item answer of a known user: the floor's constant response (same size and shape)."""
    status, payload = post_json(server.url + server.route, {"user_id": KNOWN_USERS[0], "n": 10})
    if status != 200 or not isinstance(payload, dict):
        return False
    path.write_text(json.dumps(payload))
    return True
