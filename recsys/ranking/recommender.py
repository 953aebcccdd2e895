"""The two-stage recommender: candidate generators + features + a LambdaRank booster, saved as a bundle.

A bundle is a directory: ``ranker.txt`` (the LightGBM booster as text), ``stage1/`` (each generator's params
and arrays), ``features.pkl`` (the fitted feature tables, checksummed), ``profiles.parquet`` (sign-up profiles of
known users), ``ranked.npz`` (every known user's top 100, precomputed when the bundle is saved), optionally
``items.parquet`` (titles) and frames of other layers (the drift check's ``reference.parquet``: opaque here), and
``manifest.json`` (schema version, feature names, params, lineage, metrics, sha256
of every file).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import lightgbm as lgb
import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.artifacts import save_npz
from recsys.candidates.base import best_pairs
from recsys.features.builder import BATCH_CELLS, CandidateBatch, FeatureBuilder, Stage1, user_chunks
from recsys.parallel import thread_map
from recsys.profiles import ProfileBlock
from recsys.ranking.ranker import compile_trees, predict
from recsys.schema import K

SCHEMA_VERSION = 1


class BundleError(ValueError):
    """A bundle is incomplete, corrupt or of another schema."""


class Recommendation(NamedTuple):
    """One ranked item (a named tuple: thousands are built per second on the serving path)."""

    item_id: int
    score: float


RANKED_N = 100
"""How many items per known user a bundle keeps precomputed (the service's largest ``n``)."""


@dataclass(frozen=True)
class RankedUsers:
    """Every known user's top items as the bundle ranks them, computed once (``ranked.npz`` in the bundle)."""

    users: np.ndarray
    """(u,) user ids, sorted."""
    items: np.ndarray
    """(u, max_n) item ids, best first; rows shorter than ``max_n`` are padded with 0 (see ``lengths``)."""
    scores: np.ndarray
    lengths: np.ndarray
    candidates: np.ndarray
    """(u,) how many candidates the ranker scored for each user."""

    @property
    def max_n(self) -> int:
        return int(self.items.shape[1])

    def save(self, path: Path) -> None:
        save_npz(path, {"users": self.users, "items": self.items, "scores": self.scores, "lengths": self.lengths,
                        "candidates": self.candidates})

    @classmethod
    def load(cls, path: Path) -> RankedUsers:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["users"], z["items"], z["scores"], z["lengths"], z["candidates"])


def blended(scores: np.ndarray, x: np.ndarray, names: list[str], blend: Mapping[str, Any] | None) -> np.ndarray:
    """``scores`` plus ``blend["weight"]`` times the feature ``blend["feature"]`` (missing counts 0): the ranker
    leaning on one generator's normalised score by a weight chosen on the validation window; no blend, as they
    are."""
    if not blend or not blend.get("weight"):
        return scores
    column = np.nan_to_num(x[:, names.index(blend["feature"])].astype(np.float64))
    return scores + float(blend["weight"]) * column


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Recommender:
    """Stage 1 fitted on the history up to ``now``, and the booster that re-ranks its candidates."""

    def __init__(self, stage1: Stage1, features: FeatureBuilder, booster: lgb.Booster, profiles: pd.DataFrame,
                 manifest: dict[str, Any] | None = None, titles: dict[int, str] | None = None,
                 ranked: RankedUsers | None = None) -> None:
        self.stage1 = stage1
        self.features = features
        self.booster = booster
        self.profiles = profiles[list(S.PROFILE_FIELDS)]
        order = np.argsort(np.asarray(self.profiles.index, dtype=np.int64), kind="stable")
        self._profile_ids = np.asarray(self.profiles.index, dtype=np.int64)[order]
        self._stored = ProfileBlock.from_frame(self.profiles.iloc[order])
        """The stored sign-up profiles, encoded once, rows in the order of ``_profile_ids`` (sorted)."""
        self.manifest = manifest or {}
        self.titles = titles or {}
        """Item id -> title, for display (a bundle without ``items.parquet`` has none)."""
        self.ranked = ranked
        """Precomputed answers of the known users (a loaded bundle's ``ranked.npz``; None until computed)."""
        self._predict: Callable[[np.ndarray], np.ndarray] = partial(predict, booster)
        self.engine = "lightgbm"
        """What scores the candidates: ``lightgbm``, or ``lleaves`` after :meth:`compile_trees`."""

    @property
    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())

    def stored_profiles(self, user_ids: np.ndarray) -> ProfileBlock:
        """The stored sign-up profiles of ``user_ids`` (empty rows for users without one)."""
        ids = np.asarray(user_ids, dtype=np.int64)
        if not len(self._profile_ids):
            return ProfileBlock.empty(len(ids))
        pos = np.clip(np.searchsorted(self._profile_ids, ids), 0, len(self._profile_ids) - 1)
        return self._stored.take(pos).blank_rows(self._profile_ids[pos] != ids)

    def candidate_batch(self, user_ids: np.ndarray, profiles: ProfileBlock | pd.DataFrame | None = None,
                        exclude: list[list[int]] | None = None) -> CandidateBatch:
        ids = np.asarray(user_ids, dtype=np.int64)
        known = self.stored_profiles(ids)
        if profiles is not None:
            # a request's profile fills in what the stored sign-up profile lacks
            known = known.fill_missing(ProfileBlock.of(profiles, len(ids)))
        return self.stage1.candidates(ids, known, exclude)

    def user_batches(self, user_ids: np.ndarray, max_cells: int = BATCH_CELLS) -> list[np.ndarray]:
        """``user_ids`` in batches an offline pass over many users scores at a time (:func:`user_chunks`)."""
        return user_chunks(user_ids, len(next(iter(self.stage1.generators.values())).item_ids_), max_cells)

    def score_pairs(self, batch: CandidateBatch) -> np.ndarray:
        """The ranker's score of each candidate pair of ``batch`` (float64), plus the manifest's blend if any."""
        x, names = self.features.transform(batch)
        if names != self.feature_names:
            raise BundleError("feature schema of the builder differs from the booster's")
        if not len(x):
            return np.empty(0)
        return blended(np.asarray(self._predict(x), dtype=np.float64), x, names, self.manifest.get("blend"))

    def best(self, batch: CandidateBatch, scores: np.ndarray, n: int) -> list[np.ndarray]:
        """Per user of ``batch``, the indices of its ``n`` best pairs by ranker ``scores`` (ties by lower column)."""
        return best_pairs(batch.pair_user, batch.pair_col, scores, len(batch.user_ids), n)

    def compile_trees(self, cache_dir: Path | None = None, tolerance: float = 1e-9) -> None:
        """Score with the booster's trees compiled to machine code (:func:`compile_trees`) from now on.

        The compiled model first scores the candidates of a few known and unknown users; it replaces LightGBM
        only if every score is within ``tolerance`` of LightGBM's (else :class:`BundleError`, and nothing
        changes). The switch is one attribute assignment: a request scoring meanwhile uses one engine or the other.
        """
        compiled = compile_trees(self.booster, cache_dir)
        users = np.concatenate([np.asarray(self.profiles.index[:4], dtype=np.int64),
                                np.array([-1], dtype=np.int64)])  # -1: nobody's id, a user without history
        x, _ = self.features.transform(self.candidate_batch(users))
        gap = float(np.max(np.abs(compiled(x) - predict(self.booster, x)))) if len(x) else 0.0
        if not gap <= tolerance:
            raise BundleError(f"compiled trees differ from LightGBM by {gap:.3g} (> {tolerance:g})")
        self._predict, self.engine = compiled, "lleaves"

    def rank_batch(self, user_ids: np.ndarray | list[int], n: int = K,
                   profiles: ProfileBlock | pd.DataFrame | None = None, exclude: list[list[int]] | None = None
                   ) -> tuple[list[list[Recommendation]], np.ndarray]:
        """(top-``n`` per user, how many candidates the ranker scored for each user)."""
        if not 1 <= n <= 1000:
            raise ValueError(f"n must be in 1..1000, got {n}")
        batch = self.candidate_batch(np.asarray(user_ids, dtype=np.int64), profiles, exclude)
        scores = self.score_pairs(batch)
        lists = [list(map(Recommendation, batch.item_ids[batch.pair_col[b]].tolist(), scores[b].tolist()))
                 for b in self.best(batch, scores, n)]
        return lists, np.bincount(batch.pair_user, minlength=len(batch.user_ids))

    def recommend_batch(self, user_ids: np.ndarray | list[int], n: int = K,
                        profiles: ProfileBlock | pd.DataFrame | None = None,
                        exclude: list[list[int]] | None = None) -> list[list[Recommendation]]:
        return self.rank_batch(user_ids, n, profiles, exclude)[0]

    def rank(self, user_id: int, n: int = K, exclude: list[int] | None = None,
             profile: dict[str, Any] | None = None) -> tuple[list[Recommendation], int]:
        """(top-``n`` items for one user, the number of candidates scored); see :meth:`recommend`."""
        prof = None if profile is None else ProfileBlock.from_records([profile])
        lists, counts = self.rank_batch([user_id], n, prof, None if exclude is None else [list(exclude)])
        return lists[0], int(counts[0])

    def recommend(self, user_id: int, n: int = K, exclude: list[int] | None = None,
                  profile: dict[str, Any] | None = None, context: dict[str, Any] | None = None
                  ) -> list[Recommendation]:
        """Top-``n`` items for one user. Unknown users are ranked from ``profile`` (cold start).

        ``context`` is accepted for the serving contract; no feature uses it yet.
        """
        return self.rank(user_id, n, exclude, profile)[0]

    def known_users(self) -> np.ndarray:
        """Sorted ids of the users with a stored profile and a history (the ones :meth:`rank_known` ranks)."""
        ids = np.sort(np.asarray(self.profiles.index, dtype=np.int64))
        gen = next(iter(self.stage1.generators.values()))
        return ids[gen.user_rows(ids) >= 0] if len(ids) else ids

    def rank_known(self, max_n: int = RANKED_N, chunk: int = 128) -> RankedUsers:
        """Every known user's top ``max_n`` through the full two-stage path, in vectorised batches (one per thread:
        :func:`~recsys.parallel.thread_map`)."""
        users = self.known_users()
        items = np.zeros((len(users), max_n), dtype=np.int64)
        scores = np.zeros((len(users), max_n), dtype=np.float64)
        lengths = np.zeros(len(users), dtype=np.int64)
        candidates = np.zeros(len(users), dtype=np.int64)
        starts = range(0, len(users), chunk)
        ranked = thread_map(lambda start: self.rank_batch(users[start:start + chunk], max_n), starts)
        for start, (lists, counts) in zip(starts, ranked, strict=True):
            candidates[start:start + len(lists)] = counts
            for row, recs in enumerate(lists, start=start):
                lengths[row] = len(recs)
                items[row, :len(recs)] = [r.item_id for r in recs]
                scores[row, :len(recs)] = [r.score for r in recs]
        return RankedUsers(users, items, scores, lengths, candidates)

    def is_known(self, user_id: int) -> bool:
        gen = next(iter(self.stage1.generators.values()))
        return bool(gen.user_rows(np.array([user_id]))[0] >= 0)

    # -- bundle ------------------------------------------------------------------------------------------
    def save(self, path: Path, extra: dict[str, Any] | None = None,
             frames: Mapping[str, pd.DataFrame] | None = None) -> dict[str, Any]:
        """Write the bundle to ``path`` (a directory, replaced as a whole) and return its manifest.

        ``frames`` are more files of the bundle, by name (``reference.parquet``): written as Parquet and covered by
        the manifest's sha256s like the model's own. The files go to a sibling temporary directory that then takes
        the place of ``path``, so a bundle never mixes files of two trainings and a crash leaves no half-written
        bundle.
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
        if self.ranked is None:
            self.ranked = self.rank_known()
        self.ranked.save(tmp / "ranked.npz")
        if self.titles:
            pd.DataFrame({S.ITEM: list(self.titles), S.TITLE: list(self.titles.values())}).to_parquet(
                tmp / "items.parquet", index=False)
        for name, frame in (frames or {}).items():
            if Path(name).name != name or not name.endswith(".parquet") or (tmp / name).exists():
                raise ValueError(f"bundle frame name {name!r}: a new file name ending in .parquet")
            frame.to_parquet(tmp / name, index=False)
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
            features = pickle.load(fh)  # nosec B301: our own bundle file, sha256-checked against the manifest above
        profiles = pd.read_parquet(path / "profiles.parquet").set_index(S.USER)
        titles = {}
        if (path / "items.parquet").exists():  # optional: bundles saved before titles were kept have none
            items = pd.read_parquet(path / "items.parquet")
            titles = dict(zip(items[S.ITEM].astype(int), items[S.TITLE].astype(str), strict=True))
        # optional: bundles saved before answers were precomputed have none (the service then computes them)
        ranked = RankedUsers.load(path / "ranked.npz") if (path / "ranked.npz").exists() else None
        rec = cls(Stage1.load(path / "stage1"), features, booster, profiles, manifest, titles, ranked)
        if rec.feature_names != manifest["feature_names"]:
            raise BundleError(f"{path}: booster features differ from the manifest's")
        return rec
