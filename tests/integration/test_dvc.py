"""DVC: the committed dvc.lock matches the code and params it hashes (fast); and (slow, about three minutes on 2
cores) `dvc repro` of the whole pipeline in a temporary copy of the repository (its tracked files only), with a small
params.yaml: it runs every stage and writes the metrics; a second `dvc repro` runs nothing; `dvc exp run -S`
changes one parameter and reruns only what depends on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.data.fetch import WHEEL_NAME
from recsys.params import update_params

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_committed_lock_is_current_with_the_code_and_params() -> None:
    """A dependency that git tracks (code, params) must hash as dvc.lock says: else `dvc repro` on a fresh clone
    reruns stages for nothing. Data that is absent here (not fetched, not replayed) is not the lock's fault."""
    status = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert status.returncode == 0, status.stderr[-2000:]
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.split())
    stale = []
    for stage, changes in json.loads(status.stdout or "{}").items():
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict):
                continue
            for path, what in change.get("changed deps", {}).items():
                # a params file maps to {param: "modified" | "new" | "deleted"}
                changed = what == "modified" or isinstance(what, dict)
                if changed and (path in tracked or any(f.startswith(f"{path}/") for f in tracked)):
                    stale.append(f"{stage}: {path} {what if isinstance(what, dict) else ''}".strip())
    assert stale == [], f"dvc.lock is stale ({stale}): run `make repro` and commit dvc.lock"


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory, movielens_cache: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, files.stdout.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    # the wheel the fetch stage would download: reuse the test cache instead of the network
    (root / "data" / "cache").mkdir(parents=True, exist_ok=True)
    shutil.copy2(movielens_cache / WHEEL_NAME, root / "data" / "cache" / WHEEL_NAME)
    update_params(root / "params.yaml", {
        "candidates": {"per_generator": 50, "tune": False},
        "ranker": {"label_windows": 3, "n_estimators": 60, "refit": False},
        "evaluate": {"cuts": "24,28"}})
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RECSYS_DATA_DIR": "data", "RECSYS_VAR_DIR": "var",
           "RECSYS_NOTIFY": "outbox", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for key in ("MLFLOW_TRACKING_URI", "RECSYS_AUDIT_URL", "RECSYS_PARAMS_FILE"):
        env.pop(key, None)
    sh(["git", "init", "-q"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "copy"], root, env)
    return root, env


@pytest.fixture(scope="module")
def first_repro(copy: tuple[Path, dict[str, str]]) -> subprocess.CompletedProcess[str]:
    root, env = copy
    return sh([str(BIN / "dvc"), "repro"], root, env)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_repro_runs_every_stage_and_writes_the_metrics(first_repro: subprocess.CompletedProcess[str],
                                                       copy: tuple[Path, dict[str, str]]) -> None:
    root, _ = copy
    for stage in ("fetch", "ingest", "validate", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first_repro.stdout
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"temporal_backtest", "recbole"}
    assert 0.2 < metrics["temporal_backtest"]["ndcg_at_10"] < 0.6
    assert (root / "data" / "store" / "week=31" / "interactions.parquet").is_file()
    assert (root / "var" / "models" / "week=28" / "manifest.json").is_file()
    assert (root / "dvc.lock").is_file()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_second_repro_does_nothing(first_repro: subprocess.CompletedProcess[str],
                                   copy: tuple[Path, dict[str, str]]) -> None:
    root, env = copy
    again = sh([str(BIN / "dvc"), "repro"], root, env)
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout.lower()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_exp_run_with_a_changed_parameter_reruns_what_depends_on_it(
        first_repro: subprocess.CompletedProcess[str], copy: tuple[Path, dict[str, str]]) -> None:
    root, env = copy
    before = json.loads((root / "reports" / "metrics.json").read_text())
    exp = sh([str(BIN / "dvc"), "exp", "run", "-S", "ranker.num_leaves=7"], root, env)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'evaluate'" in exp.stdout
    assert "Running stage 'validate'" not in exp.stdout
    after = json.loads((root / "reports" / "metrics.json").read_text())
    assert after["temporal_backtest"]["ndcg_at_10"] != before["temporal_backtest"]["ndcg_at_10"]
    shown = sh([str(BIN / "dvc"), "exp", "show", "--json"], root, env)
    assert "num_leaves" in shown.stdout
