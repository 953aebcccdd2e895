"""Served rows without a service, and the training reference a bundle keeps for the drift check.

The traffic log holds the feature rows of *served* items (a request's top ``n``), so the reference must be rows of
the same kind, not training candidates (mostly negatives). :func:`served_rows` computes them the way the service
answers: a known user gets the bundle's own top ``n`` (what ``ranked.npz`` serves), an unknown one is ranked by the
cold-start path from the profile the request brings. :func:`build_reference` replays the last training weeks
through it, as the replay simulator does after the cut: every rating is a request by that user at that time, and a
user whose first rating falls inside the span is a cold start (the bundle would not have known them). The rows go
through the same per-user cap and bounded sample as every checked window (:mod:`recsys.monitoring.sample`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.monitoring.sample import REQUEST, bounded_sample, cap_per_user
from recsys.parallel import thread_map
from recsys.schema import K

if TYPE_CHECKING:
    from recsys.ranking.recommender import Recommender

REFERENCE_FILE = "reference.parquet"
"""The reference's file name inside a bundle (covered by the manifest's sha256 list)."""
TS_COL, FALLBACK, HOUR, WEEKDAY = "ts", "fallback", "ctx_hour", "ctx_weekday"
CONTEXT = (HOUR, WEEKDAY)
UNKNOWN_USER = -1
"""The id cold starts are scored under: nobody's, so a user the bundle knows is ranked from the profile alone."""


class ReferenceFileError(ValueError):
    """A bundle's reference is missing although its manifest lists it, or fails its sha256 check."""


def served_rows(rec: Recommender, requests: pd.DataFrame, users: pd.DataFrame, cold: np.ndarray | None = None,
                n: int = K, chunk: int = 128) -> pd.DataFrame:
    """One row per served item of each request: the ranker's features, ``score``, ``rank``, ``fallback``, context.

    ``requests`` has ``user_id`` and ``timestamp`` (epoch seconds; ``request_id`` optional, else the row number);
    ``users`` the sign-up profiles (``user_id`` + the profile fields). ``cold`` marks the requests served by the
    cold-start path; default: those of users the bundle does not know. The context is the UTC hour and weekday of
    the request (what the replay sends). Answers depend on the user only, so each user is ranked once.
    """
    ids = requests[S.USER].to_numpy(np.int64)
    if cold is None:
        distinct, where = np.unique(ids, return_inverse=True)
        cold = ~np.array([rec.is_known(int(u)) for u in distinct], dtype=bool)[where]
    cold = np.asarray(cold, dtype=bool)
    keys = pd.DataFrame({S.USER: ids, FALLBACK: cold}).drop_duplicates().sort_values([FALLBACK, S.USER])
    profiles = users.set_index(S.USER).reindex(keys[S.USER].to_numpy())[list(S.PROFILE_FIELDS)]
    answers = [_answers(rec, keys.iloc[i:i + chunk], profiles.iloc[i:i + chunk], n)
               for i in range(0, len(keys), chunk)]
    per_user = (pd.concat(answers, ignore_index=True) if answers
                else pd.DataFrame(columns=[S.USER, FALLBACK, S.ITEM, S.RANK, S.SCORE, *rec.feature_names]))
    ts = pd.to_datetime(requests[S.TS].to_numpy(np.int64), unit="s", utc=True)
    req = pd.DataFrame({REQUEST: requests[REQUEST].to_numpy() if REQUEST in requests else np.arange(len(ids)),
                        S.USER: ids, FALLBACK: cold, TS_COL: ts, HOUR: ts.hour.to_numpy(np.int64),
                        WEEKDAY: ts.weekday.to_numpy(np.int64)})
    rows = req.merge(per_user, on=[S.USER, FALLBACK], how="inner", sort=False)
    lead = [TS_COL, REQUEST, S.USER, S.ITEM, S.RANK, S.SCORE, FALLBACK]
    return rows[lead + rec.feature_names + list(CONTEXT)].reset_index(drop=True)


def _answers(rec: Recommender, keys: pd.DataFrame, profiles: pd.DataFrame, n: int) -> pd.DataFrame:
    """The top ``n`` of each (user, cold) key with the feature rows of those items, in bounded batches of keys."""
    chunks = rec.user_batches(np.arange(len(keys)))
    frames = thread_map(lambda c: _answers_of(rec, keys.iloc[c], profiles.iloc[c], n), chunks)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _answers_of(rec: Recommender, keys: pd.DataFrame, profiles: pd.DataFrame, n: int) -> pd.DataFrame:
    from recsys.profiles import ProfileBlock

    cold = keys[FALLBACK].to_numpy(bool)
    ids = np.where(cold, UNKNOWN_USER, keys[S.USER].to_numpy(np.int64))
    batch = rec.candidate_batch(ids, ProfileBlock.from_frame(profiles))
    x, names = rec.features.transform(batch)
    scores = rec.score_pairs(batch)
    tops = rec.best(batch, scores, n)
    which = np.concatenate([np.full(len(b), i) for i, b in enumerate(tops)]).astype(np.int64)
    pairs = np.concatenate(tops).astype(np.int64)
    frame = pd.DataFrame(x[pairs], columns=names)
    frame.insert(0, S.SCORE, scores[pairs])
    frame.insert(0, S.RANK, np.concatenate([np.arange(1, len(b) + 1) for b in tops]).astype(np.int64))
    frame.insert(0, S.ITEM, batch.item_ids[batch.pair_col[pairs]].astype(np.int64))
    frame.insert(0, FALLBACK, cold[which])
    frame.insert(0, S.USER, keys[S.USER].to_numpy(np.int64)[which])
    return frame


def build_reference(rec: Recommender, interactions: pd.DataFrame, users: pd.DataFrame, start: int, end: int, *,
                    per_user: int = 3, max_rows: int = 5000, seed: int = 0, n: int = K) -> pd.DataFrame:
    """Served rows of the rating events in ``[start, end)`` (epoch seconds), capped and sampled; rows sorted.

    Users whose first rating is at or after ``start`` are cold starts; the others get the bundle's answer.
    """
    events = interactions[(interactions[S.TS] >= start) & (interactions[S.TS] < end)]
    events = events.sort_values([S.TS, S.USER, S.ITEM], kind="stable").reset_index(drop=True)
    first = interactions.groupby(S.USER)[S.TS].min()
    requests = pd.DataFrame({REQUEST: np.arange(len(events)), S.USER: events[S.USER].to_numpy(np.int64),
                             S.TS: events[S.TS].to_numpy(np.int64)})
    requests = cap_per_user(requests, per_user, seed)
    cold = first.reindex(requests[S.USER].to_numpy()).to_numpy() >= start
    rows = bounded_sample(served_rows(rec, requests, users, cold=cold, n=n), max_rows, seed)
    return rows.drop(columns=[REQUEST]).sort_values([TS_COL, S.USER, S.RANK], kind="stable").reset_index(drop=True)


def load_reference(bundle: Path) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """A bundle's reference rows (None when it was saved without one) and its manifest.

    Only the manifest and the reference are read (the model and its libraries are not loaded): the reference's
    sha256 must be the manifest's, else :class:`ReferenceFileError`.
    """
    manifest_path = bundle / "manifest.json"
    if not manifest_path.exists():
        raise ReferenceFileError(f"{bundle}: no manifest.json (not a model bundle)")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    digest = manifest.get("files", {}).get(REFERENCE_FILE)
    path = bundle / REFERENCE_FILE
    if digest is None:
        return None, manifest
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise ReferenceFileError(f"{bundle}: {REFERENCE_FILE} is missing or fails its sha256 check")
    return pd.read_parquet(path), manifest
