"""The training store (accepted weekly batches) and the quarantine (rejected ones), both under ``data_dir``.

Layout::

    <data_dir>/store/week=WW/interactions.parquet     the accepted batch (batch dtypes, file row order)
    <data_dir>/store/week=WW/_SUCCESS.json            rows, sha256, rating counts (a function of the data only)
    <var_dir>/validation/accepted.jsonl               one line per acceptance: week, sha256, GX run id, time
    <data_dir>/quarantine/week=WW/<UTC stamp>/        original file, result.json, summary.md

Writes are atomic (temporary file in the same folder, then ``replace``), and the parquet file is written before
its ``_SUCCESS.json``, so a metadata file always describes a complete data file. Accepting the same batch twice
gives a byte-identical ``interactions.parquet``. A rejected batch never touches the store: an earlier accepted
copy of that week stays as it was (the last good version of a week keeps feeding training until a corrected
batch passes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.data.load import combine_weeks, read_week
from recsys.settings import Settings
from recsys.validation.suites import History, rating_counts

STORE_FILE = "interactions.parquet"
META_FILE = "_SUCCESS.json"


def week_dir(root: Path, week: int) -> Path:
    return root / f"week={week:02d}"


def week_file(settings: Settings, week: int) -> Path:
    """Where the store keeps the accepted rows of ``week``."""
    return week_dir(settings.store_dir, week) / STORE_FILE


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def accept(settings: Settings, week: int, batch: pd.DataFrame, *, run_id: str) -> Path:
    """Write ``batch`` as week ``week`` of the training store (atomically) with its metadata; the data path."""
    part = week_dir(settings.store_dir, week)
    part.mkdir(parents=True, exist_ok=True)
    path = part / STORE_FILE
    tmp = part / f".{STORE_FILE}.tmp"
    batch.reset_index(drop=True).to_parquet(tmp, index=False)
    tmp.replace(path)
    meta = {"week": week, "rows": len(batch), "sha256": sha256_file(path), "rating_counts": rating_counts(batch)}
    _atomic_write_bytes(part / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    # when and by which GX run: in a log beside the Data Docs, so that the store's bytes depend on the data
    # only and re-validating the same batches leaves the DVC pipeline's later stages up to date
    log = settings.var_dir / "validation" / "accepted.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"week": week, "rows": len(batch), "sha256": meta["sha256"], "gx_run_id": run_id,
                             "validated_at": datetime.now(UTC).isoformat()}) + "\n")
    return path


def acceptance_log(settings: Settings) -> list[dict[str, Any]]:
    """Every acceptance, oldest first: week, rows, sha256, GX run id and time."""
    log = settings.var_dir / "validation" / "accepted.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def accepted_meta(settings: Settings, week: int) -> dict[str, Any] | None:
    path = week_dir(settings.store_dir, week) / META_FILE
    if not path.is_file():
        return None
    meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return meta


def accepted_weeks(settings: Settings, before: int | None = None) -> list[int]:
    """Weeks with a complete accepted batch in the store (optionally only those before ``before``)."""
    root = settings.store_dir
    if not root.is_dir():
        return []
    weeks = []
    for part in root.glob("week=*"):
        try:
            week = int(part.name.split("=", 1)[1])
        except ValueError:
            continue
        if (part / META_FILE).is_file() and (part / STORE_FILE).is_file() and (before is None or week < before):
            weeks.append(week)
    return sorted(weeks)


def history(settings: Settings, week: int) -> History:
    """Row counts and rating counts of the accepted weeks before ``week``, from the store's metadata."""
    weeks: list[int] = []
    rows: list[int] = []
    ratings: dict[str, int] = {}
    for w in accepted_weeks(settings, before=week):
        meta = accepted_meta(settings, w)
        if meta is None:
            continue
        weeks.append(w)
        rows.append(int(meta["rows"]))
        for value, n in dict(meta.get("rating_counts", {})).items():
            ratings[value] = ratings.get(value, 0) + int(n)
    return History(weeks=tuple(weeks), row_counts=tuple(rows), rating_counts=ratings)


@functools.lru_cache(maxsize=256)
def _week_ids(path: Path, stamp: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct user and item ids of one stored week (``stamp``: its mtime and size, so a week accepted
    again is read again)."""
    frame = pd.read_parquet(path, columns=[S.USER, S.ITEM])
    return np.unique(frame[S.USER].to_numpy(np.int64)), np.unique(frame[S.ITEM].to_numpy(np.int64))


def seen_ids(settings: Settings, weeks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct user and item ids of the accepted batches of ``weeks``; each week's file is read once per
    process (``validate --all`` asks for every earlier week at each week: quadratic reads otherwise)."""
    users, items = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for w in weeks:
        path = week_file(settings, w)
        info = path.stat()
        u, i = _week_ids(path, (info.st_mtime_ns, info.st_size))
        users.append(u)
        items.append(i)
    return np.unique(np.concatenate(users)), np.unique(np.concatenate(items))


def quarantine(settings: Settings, week: int, source: Path | None, result: dict[str, Any], summary: str,
               *, stamp: datetime | None = None) -> Path:
    """Put a rejected batch into a new quarantine folder: the original file, result.json and summary.md."""
    when = stamp or datetime.now(UTC)
    base = week_dir(settings.quarantine_dir, week)
    folder = base / when.strftime("%Y%m%dT%H%M%S.%fZ")
    n = 1
    while folder.exists():  # two rejections within the same microsecond
        folder = base / f"{when.strftime('%Y%m%dT%H%M%S.%fZ')}-{n}"
        n += 1
    folder.mkdir(parents=True)
    if source is not None and source.is_file():
        shutil.copy2(source, folder / source.name)
    (folder / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    (folder / "summary.md").write_text(summary, encoding="utf-8")
    return folder


def load_store(settings: Settings, weeks: list[int] | None = None) -> tuple[pd.DataFrame, list[int], str]:
    """The accepted interactions of ``weeks`` (default: every accepted week), sorted like the raw loader's, the
    weeks, and a content hash (the raw users/items files and each week's sha256)."""
    weeks = accepted_weeks(settings) if weeks is None else weeks
    frame = combine_weeks([read_week(week_file(settings, w)) for w in weeks])
    digest = hashlib.sha256()
    for name in ("ml-100k.user", "ml-100k.item"):
        path = settings.raw_dir / name
        if path.exists():
            digest.update(path.read_bytes())
    for w in weeks:
        meta = accepted_meta(settings, w) or {}
        digest.update(f"{w}:{meta.get('sha256', '')}\n".encode())
    return frame, weeks, digest.hexdigest()[:16]
