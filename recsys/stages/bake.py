"""The bake stage: copy the registry's bundle for an alias into the Bento's build context.

A replica built from that Bento starts serving without MLflow; ``BAKED.json`` beside the bundle says which
registry version it is, so the service reports the right version.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from recsys.schema import CHAMPION
from recsys.settings import Settings
from recsys.stages.base import StageError, StageResult

SERVICE_DIR = Path(__file__).resolve().parents[2] / "bentos"
"""The Bento's build context in a checkout of the repository."""


class BakeParams(BaseModel):
    alias: str = Field(CHAMPION, description="the registry alias whose bundle to bake")
    out_dir: Path = Field(SERVICE_DIR / "bundle", description="where the bundle goes (what `bentoml build` includes)")


class BakeResult(StageResult):
    model: str
    alias: str
    version: int
    run_id: str | None
    data_hash: str | None
    out_dir: Path


def bake(settings: Settings, params: BakeParams) -> BakeResult:
    """Download, verify (every sha256) and stage the alias's bundle, then swap it into ``out_dir`` at once."""
    from recsys.registry.release import bundle_path, load_version
    from recsys.registry.service import alias_version

    name, uri = settings.model_name, settings.mlflow_uri
    version = alias_version(name, params.alias, uri)
    if version is None:
        raise StageError(f"no version of {name!r} holds the alias {params.alias!r} in {uri}")
    out_dir = params.out_dir
    with tempfile.TemporaryDirectory(prefix="recsys-bake-") as tmp:
        loaded = load_version(name, version, uri, Path(tmp))
        source = bundle_path(Path(tmp) / f"v{version}")
        staged = out_dir.with_name(f".{out_dir.name}.tmp")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(source, staged)
        data_hash = loaded.recommender.manifest.get("data_hash")
        (staged / "BAKED.json").write_text(json.dumps(
            {"model": name, "alias": params.alias, "version": version, "run_id": loaded.run_id,
             "data_hash": data_hash, "tracking_uri": uri}, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    return BakeResult(model=name, alias=params.alias, version=version, run_id=loaded.run_id,
                      data_hash=None if data_hash is None else str(data_hash), out_dir=out_dir)
