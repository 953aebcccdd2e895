"""Nothing happens at import: importing every module of the library creates no file and changes no variable
(process defaults are set by the entry points through recsys.runtime, settings only compute paths)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).with_name("import_everything.py")


def test_importing_every_module_creates_nothing_and_sets_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    ours_or_theirs = ("RECSYS_", "MLFLOW_", "_MLFLOW", "GX_", "BENTOML_")  # what the library or MLflow may set
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours_or_theirs)}
    env["HOME"] = str(home)
    result = subprocess.run([sys.executable, str(PROBE)], cwd=work, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) > 60 and "recsys.stages.gate" in report["modules"]
    assert report["changed"] == {}
    assert list(work.iterdir()) == [] and list(home.iterdir()) == []
