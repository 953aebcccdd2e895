"""A window of the sampled traffic log as a frame of served rows, capped and sampled like the reference.

The log is ``<folder>/traffic-YYYYMMDD.jsonl`` (:class:`~recsys.serving.traffic.TrafficLog`; the day is the UTC day
of the request's time, which a replay sets to its simulated time). Only the files of the days that overlap the
window are read, with Arrow's JSON reader and an explicit schema (100k rows, 150 MB, in about 0.6 s; a line that
does not parse, e.g. one cut short by a crash, is skipped and counted). Rows are kept when they fall in
``[start, end)`` and were served by the model being checked; features and context become columns named as in the
reference (:func:`recsys.monitoring.reference.served_rows`). :func:`write_traffic` writes served rows in the log's
format (tests, benchmarks and calibration make logs without a service).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.monitoring.reference import CONTEXT, FALLBACK, HOUR, TS_COL, WEEKDAY
from recsys.monitoring.sample import REQUEST, bounded_sample, cap_per_user

PREFIX = "traffic"
_NAME = re.compile(rf"^{PREFIX}-(\d{{8}})\.jsonl$")
_CONTEXT_KEYS = {HOUR: "hour", WEEKDAY: "weekday"}


@dataclass(frozen=True)
class Window:
    """The rows of one window and how many there were at each step (the sample sizes a verdict states)."""

    frame: pd.DataFrame
    """The rows compared: after the per-user cap and the bounded sample."""
    start: datetime
    end: datetime
    logged_rows: int
    """Rows of the checked model inside ``[start, end)``."""
    capped_rows: int
    """Rows left after the per-user cap."""
    requests: int
    """Requests after the cap."""
    users: int
    other_rows: int = 0
    """Rows inside the window served by another model (another alias or version): not compared."""
    files: list[Path] = field(default_factory=list)
    bad_lines: int = 0

    @property
    def rows(self) -> int:
        return len(self.frame)


def log_files(folder: Path, start: datetime | None = None, end: datetime | None = None) -> list[Path]:
    """The daily files whose UTC day overlaps ``[start, end)`` (all of them without bounds), oldest first."""
    if not folder.is_dir():
        return []
    first = None if start is None else start.astimezone(UTC).strftime("%Y%m%d")
    last = None if end is None else (end.astimezone(UTC) - timedelta(microseconds=1)).strftime("%Y%m%d")
    out = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and (first is None or match[1] >= first) and (last is None or match[1] <= last):
            out.append(path)
    return sorted(out)


def _schema(feature_names: list[str] | None) -> Any:
    """The columns read (``None``: only the time)."""
    import pyarrow as pa

    if feature_names is None:
        return pa.schema([(TS_COL, pa.timestamp("us", tz="UTC"))])
    return pa.schema([
        (TS_COL, pa.timestamp("us", tz="UTC")), (REQUEST, pa.string()), ("alias", pa.string()),
        ("version", pa.int64()), (S.USER, pa.int64()), (FALLBACK, pa.bool_()), (S.ITEM, pa.int64()),
        (S.RANK, pa.int64()), (S.SCORE, pa.float64()),
        ("features", pa.struct([(name, pa.float64()) for name in feature_names])),
        ("context", pa.struct([(key, pa.int64()) for key in _CONTEXT_KEYS.values()])),
    ])


def _read_file(path: Path, schema: Any) -> tuple[Any, int]:
    """One log file as an Arrow table (None when empty), and how many lines were skipped as unparseable."""
    import pyarrow as pa
    import pyarrow.json as pj

    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(path, parse_options=options)
        return (table if table.num_rows else None), 0
    except pa.ArrowInvalid:  # a line cut short or not JSON: parse line by line and keep the good ones
        good, bad = [], 0
        for line in path.read_bytes().splitlines():
            try:
                json.loads(line)
                good.append(line)
            except ValueError:
                bad += int(bool(line.strip()))
        if not good:
            return None, bad
        return pj.read_json(pa.BufferReader(b"\n".join(good) + b"\n"), parse_options=options), bad


def _to_frame(table: Any, feature_names: list[str]) -> pd.DataFrame:
    """Features and context as flat columns named like the reference's."""
    frame = table.flatten().to_pandas()
    renames = {f"features.{name}": name for name in feature_names}
    renames.update({f"context.{key}": col for col, key in _CONTEXT_KEYS.items()})
    return frame.rename(columns=renames)


def latest_time(folder: Path) -> datetime | None:
    """The time of the newest row of the newest log file (None without a log)."""
    for path in reversed(log_files(folder)):
        table, _ = _read_file(path, _schema(None))
        if table is not None and table.column(TS_COL).null_count < table.num_rows:
            return pd.Timestamp(table.column(TS_COL).to_pandas().max()).to_pydatetime()
    return None


def load_window(folder: Path, start: datetime, end: datetime, feature_names: list[str], *, alias: str | None = None,
                version: int | None = None, per_user: int = 3, max_rows: int = 20_000, seed: int = 0) -> Window:
    """The rows logged in ``[start, end)`` by the model with ``alias`` and ``version`` (None: any), capped at
    ``per_user`` requests per user and sampled down to ``max_rows`` rows (both seeded).

    Only the few columns that decide which rows are kept are converted first; the feature columns of the kept rows
    alone become pandas columns.
    """
    import pyarrow as pa

    if not start < end:
        raise ValueError(f"the window must start before it ends, got [{start}, {end})")
    files = log_files(folder, start, end)
    schema = _schema(feature_names)
    tables, bad = [], 0
    for path in files:
        table, skipped = _read_file(path, schema)
        bad += skipped
        if table is not None:
            tables.append(table)
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    keys = table.select([TS_COL, REQUEST, S.USER, S.RANK, "alias", "version"]).to_pandas()
    inside = ((keys[TS_COL] >= pd.Timestamp(start)) & (keys[TS_COL] < pd.Timestamp(end))).to_numpy()
    ours = inside.copy()
    if alias is not None:
        ours &= (keys["alias"] == alias).to_numpy()
    if version is not None:
        ours &= (keys["version"] == version).to_numpy()
    rows = keys[ours].sort_values([TS_COL, REQUEST, S.RANK], kind="stable")
    capped = cap_per_user(rows, per_user, seed)
    used = bounded_sample(capped, max_rows, seed)
    frame = _to_frame(table.take(pa.array(used.index.to_numpy(), type=pa.int64())), feature_names)
    columns = [TS_COL, REQUEST, S.USER, S.ITEM, S.RANK, S.SCORE, FALLBACK, *feature_names, *CONTEXT]
    return Window(frame=frame[columns], start=start, end=end, logged_rows=len(rows), capped_rows=len(capped),
                  requests=int(capped[REQUEST].nunique()), users=int(capped[S.USER].nunique()),
                  other_rows=int(inside.sum() - ours.sum()), files=files, bad_lines=bad)


def write_traffic(rows: pd.DataFrame, folder: Path, feature_names: list[str], *, alias: str = "champion",
                  version: int | None = None, variant: str = "champion") -> list[Path]:
    """Append served rows (as :func:`~recsys.monitoring.reference.served_rows` makes them) to the daily log files,
    in the log's format; a row without ``ctx_hour`` gets a null context."""
    folder.mkdir(parents=True, exist_ok=True)
    ts = pd.to_datetime(rows[TS_COL], utc=True)
    days = ts.dt.strftime("%Y%m%d").to_numpy()
    stamps = [t.isoformat() for t in ts]
    feats = rows[feature_names].to_numpy(np.float64)
    has_context = HOUR in rows and WEEKDAY in rows
    lines: dict[str, list[str]] = {}
    for i, rec in enumerate(rows[[REQUEST, S.USER, FALLBACK, S.ITEM, S.RANK, S.SCORE]].itertuples(index=False)):
        values = {n: (float(v) if np.isfinite(v) else None) for n, v in zip(feature_names, feats[i], strict=True)}
        context = ({"hour": int(rows[HOUR].iat[i]), "weekday": int(rows[WEEKDAY].iat[i])}
                   if has_context and pd.notna(rows[HOUR].iat[i]) else None)
        row = {"ts": stamps[i], "request_id": str(rec[0]), "variant": variant, "alias": alias, "version": version,
               "user_id": int(rec[1]), "fallback": bool(rec[2]), "item_id": int(rec[3]), "rank": int(rec[4]),
               "score": float(rec[5]), "features": values, "context": context}
        lines.setdefault(str(days[i]), []).append(json.dumps(row) + "\n")
    paths = []
    for day, chunk in sorted(lines.items()):
        path = folder / f"{PREFIX}-{day}.jsonl"
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(chunk))
        paths.append(path)
    return paths
