"""The same data, config and code give the same bundle, byte for byte: two `recsys train` processes (different hash
seeds, different wall clocks) write identical files. Else DVC sees a changed output after every `dvc repro`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RECSYS = Path(sys.executable).with_name("recsys")


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.timeout(600)
def test_two_trainings_write_identical_bundles(raw_data_dir: Callable[[Path], Path], small_config: dict[str, Any],
                                               tmp_path: Path) -> None:
    data = raw_data_dir(tmp_path)
    config = tmp_path / "small.json"
    config.write_text(json.dumps(small_config))
    bundles = []
    for seed in ("1", "2"):
        out = tmp_path / f"bundle-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "RECSYS_DATA_DIR": str(data),
               "RECSYS_VAR_DIR": str(tmp_path / f"var-{seed}"), "RECSYS_TRAINING_SOURCE": "raw"}
        env.pop("MLFLOW_TRACKING_URI", None)
        run = subprocess.run([str(RECSYS), "train", "--as-of-week", "20", "--config", str(config), "--out", str(out),
                              "--no-register", "--json"], env=env, capture_output=True, text=True, timeout=500)
        assert run.returncode == 0, run.stderr[-3000:]
        assert json.loads(run.stdout)["bundle"] == str(out)
        bundles.append(digests(out))
    assert bundles[0].keys() >= {"manifest.json", "ranker.txt", "ranked.npz", "features.pkl", "metrics.json"}
    differing = sorted(name for name in bundles[0] if bundles[0][name] != bundles[1].get(name))
    assert differing == [] and bundles[0].keys() == bundles[1].keys()
