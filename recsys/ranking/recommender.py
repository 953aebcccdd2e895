"""The two-stage recommender: candidate generators + features + a LambdaRank booster, saved as a bundle.

A bundle is a directory: ``ranker.txt`` (the LightGBM booster as text), ``stage1/`` (each generator's params
and arrays), ``features.pkl`` (the fitted feature tables, checksummed), ``profiles.parquet`` (sign-up profiles of known
users) and ``manifest.json`` (schema version, feature names, params, lineage, metrics, sha256 of every file).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.candidates.base import top_k
from recsys.features.builder import CandidateBatch, FeatureBuilder, Stage1
from recsys.ranking.ranker import predict

SCHEMA_VERSION = 1


class BundleError(ValueError):
    """A bundle is incomplete, corrupt or of another schema."""


@dataclass(frozen=True)
class Recommendation:
    item_id: int
    score: float


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Recommender:
    """Stage 1 fitted on the history up to ``now``, and the booster that re-ranks its candidates."""

    def __init__(self, stage1: Stage1, features: FeatureBuilder, booster: lgb.Booster, profiles: pd.DataFrame,
                 manifest: dict[str, Any] | None = None, titles: dict[int, str] | None = None) -> None:
        self.stage1 = stage1
        self.features = features
        self.booster = booster
        self.profiles = profiles[list(S.PROFILE_FIELDS)]
        self.manifest = manifest or {}
        self.titles = titles or {}
        """Item id -> title, for display (a bundle without ``items.parquet`` has none)."""

    @property
    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())

    def candidate_batch(self, user_ids: np.ndarray, profiles: pd.DataFrame | None = None,
                        exclude: list[list[int]] | None = None) -> CandidateBatch:
        ids = np.asarray(user_ids, dtype=np.int64)
        known = self.profiles.reindex(ids)
        if profiles is not None:
            # a request's profile fills in what the stored sign-up profile lacks
            known = known.combine_first(profiles.set_axis(known.index)[list(S.PROFILE_FIELDS)])
        return self.stage1.candidates(ids, known, exclude)

    def score_batch(self, batch: CandidateBatch) -> np.ndarray:
        """Dense (users, catalog) ranker scores; non-candidates are -inf."""
        x, names = self.features.transform(batch)
        if names != self.feature_names:
            raise BundleError("feature schema of the builder differs from the booster's")
        dense = np.full((len(batch.user_ids), len(batch.item_ids)), -np.inf)
        if len(x):
            dense[batch.pair_user, batch.pair_col] = predict(self.booster, x)
        return dense

    def recommend_batch(self, user_ids: np.ndarray | list[int], n: int = 10, profiles: pd.DataFrame | None = None,
                        exclude: list[list[int]] | None = None) -> list[list[Recommendation]]:
        if not 1 <= n <= 1000:
            raise ValueError(f"n must be in 1..1000, got {n}")
        batch = self.candidate_batch(np.asarray(user_ids, dtype=np.int64), profiles, exclude)
        dense = self.score_batch(batch)
        return [[Recommendation(int(batch.item_ids[c]), float(dense[i, c])) for c in cols]
                for i, cols in enumerate(top_k(dense, n))]

    def recommend(self, user_id: int, n: int = 10, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None, context: dict[str, Any] | None = None
                  ) -> list[Recommendation]:
        """Top-``n`` items for one user. Unknown users are ranked from ``profile`` (cold start).

        ``context`` is accepted for the serving contract; no feature uses it yet.
        """
        prof = None if profile is None else pd.DataFrame([{f: profile.get(f) for f in S.PROFILE_FIELDS}])
        return self.recommend_batch([user_id], n, prof, None if exclude is None else [list(exclude)])[0]

    def is_known(self, user_id: int) -> bool:
        gen = next(iter(self.stage1.generators.values()))
        return bool(gen.user_rows(np.array([user_id]))[0] >= 0)

    # -- bundle ------------------------------------------------------------------------------------------
    def save(self, path: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the bundle to ``path`` (a directory, replaced as a whole) and return its manifest.

        The files go to a sibling temporary directory that then takes the place of ``path``, so a bundle never
        mixes files of two trainings and a crash leaves no half-written bundle.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.booster.save_model(str(tmp / "ranker.txt"))
        self.stage1.save(tmp / "stage1")
        with (tmp / "features.pkl").open("wb") as fh:
            pickle.dump(self.features, fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.profiles.reset_index().to_parquet(tmp / "profiles.parquet", index=False)
        if self.titles:
            pd.DataFrame({S.ITEM: list(self.titles), S.TITLE: list(self.titles.values())}).to_parquet(
                tmp / "items.parquet", index=False)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            **self.manifest, **(extra or {}),
            "schema_version": SCHEMA_VERSION,
            "feature_names": self.feature_names,
            "generators": list(self.stage1.generators),
            "files": {str(p.relative_to(tmp)): sha256_of(p) for p in files},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        self.manifest = manifest
        return manifest

    @classmethod
    def load(cls, path: Path, verify: bool = True) -> Recommender:
        """Load a bundle; with ``verify`` every file's sha256 and the schema version are checked first."""
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            raise BundleError(f"{path}: no manifest.json (not a model bundle)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(f"{path}: schema version {manifest.get('schema_version')} != {SCHEMA_VERSION}")
        if verify:
            for rel, digest in manifest["files"].items():
                f = path / rel
                if not f.exists() or sha256_of(f) != digest:
                    raise BundleError(f"{path}: {rel} is missing or fails its sha256 check")
        booster = lgb.Booster(model_file=str(path / "ranker.txt"))
        with (path / "features.pkl").open("rb") as fh:
            features = pickle.load(fh)
        profiles = pd.read_parquet(path / "profiles.parquet").set_index(S.USER)
        titles = {}
        if (path / "items.parquet").exists():  # optional: bundles saved before titles were kept have none
            items = pd.read_parquet(path / "items.parquet")
            titles = dict(zip(items[S.ITEM].astype(int), items[S.TITLE].astype(str), strict=True))
        rec = cls(Stage1.load(path / "stage1"), features, booster, profiles, manifest, titles)
        if rec.feature_names != manifest["feature_names"]:
            raise BundleError(f"{path}: booster features differ from the manifest's")
        return rec
