"""The Evidently report behind ``recsys drift``: which columns are compared, with which distance, and the verdict.

Served rows are clustered (``n`` rows per request, a few requests per user, one user's rows alike), so p-value tests
(KS, chi-square) treat thousands of rows as independent and call the smallest shift significant. The report uses
distances whose size does not grow with the row count instead: the normed Wasserstein distance (in reference
standard deviations) for numerical columns and the Jensen-Shannon distance for categorical ones, each with its
threshold from ``params.yaml`` (:class:`~recsys.config.DriftConfig`).

The compared columns are every ranker feature (``user_is_cold``, ``gender_f``, ``occupation`` and ``zip_region``
are categorical), the score (prediction drift, reported apart from the features) and two context columns. The
reference's context is the UTC hour and weekday of the training events, which a short window cannot match (a
window of a few hours holds a few hours of the day), so the context is compared as its offset from the request's
own clock (``ctx_hour_offset = (ctx_hour - UTC hour of ts) mod 24``, the same for the weekday): zero when clients
send the time of the request, else the time zone they live in.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recsys import schema as S
from recsys.config import DriftConfig
from recsys.monitoring.reference import HOUR, TS_COL, WEEKDAY

CATEGORICAL_FEATURES = frozenset({"user_is_cold", "gender_f", "occupation", "zip_region"})
"""Ranker features that are codes, not quantities (compared with the categorical method)."""
HISTORY_FEATURES = frozenset({"user_n", "user_n_28d", "user_days_since_last", "user_days_since_first",
                              "user_mean_rating", "user_mainstream", "genre_affinity", "genre_share", "genre_recent",
                              "seq_sim_last", "seq_sim_max", "seq_sim_mean"})
"""Features of a known user's own past ratings, frozen at the bundle's cut: reported, not counted in the share."""
HOUR_OFFSET, WEEKDAY_OFFSET = "ctx_hour_offset", "ctx_weekday_offset"
Role = Literal["feature", "history", "context", "prediction"]
VOTING: frozenset[str] = frozenset({"feature", "context"})
"""The roles whose drifted columns make up the share."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["numerical", "categorical"]
    role: Role
    method: str
    threshold: float


@dataclass(frozen=True)
class ColumnScore:
    name: str
    role: Role
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class Comparison:
    """What the report found: the compared columns' scores, the share of drifted feature and context columns
    (the history features and the score are reported apart), and the columns that could not be compared (empty
    on one side)."""

    columns: list[ColumnScore]
    share: float
    drifted_count: int
    compared: int
    skipped: dict[str, str]
    snapshot: Any


def preload() -> threading.Thread:
    """Import Evidently on a background thread (its import is ~3.5 s of Python) while the caller reads the traffic
    log, whose JSON parsing runs in Arrow's C++ without the GIL. The modules the reading needs are imported first,
    here, so the two threads never import the same module; :func:`compare` imports Evidently again, which waits
    for the thread if it is still at it (or raises there if the import failed)."""
    import pyarrow.json  # noqa: F401

    thread = threading.Thread(target=_import_evidently, name="evidently-import", daemon=True)
    thread.start()
    return thread


def _import_evidently() -> None:
    with contextlib.suppress(Exception):  # compare() repeats the import and reports a failure where it matters
        import evidently.metrics  # noqa: F401


def drift_columns(feature_names: list[str], config: DriftConfig) -> list[Column]:
    """Every compared column with its type, method and threshold."""

    def column(name: str, kind: Literal["numerical", "categorical"], role: Role, threshold: float) -> Column:
        method = config.num_method if kind == "numerical" else config.cat_method
        return Column(name, kind, role, method, config.thresholds.get(name, threshold))

    def feature(name: str) -> Column:
        if name in CATEGORICAL_FEATURES:
            return column(name, "categorical", "feature", config.cat_threshold)
        if name in HISTORY_FEATURES:
            return column(name, "numerical", "history", config.history_threshold)
        return column(name, "numerical", "feature", config.num_threshold)

    out = [feature(n) for n in feature_names]
    out += [column(c, "categorical", "context", config.context_threshold) for c in (HOUR_OFFSET, WEEKDAY_OFFSET)]
    out.append(column(S.SCORE, "numerical", "prediction", config.score_threshold))
    return out


def with_context_offsets(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the context's offsets from the request's UTC clock (NaN where a request had no context)."""
    ts = pd.to_datetime(frame[TS_COL], utc=True)
    hour = pd.to_numeric(frame[HOUR], errors="coerce") if HOUR in frame else pd.Series(np.nan, index=frame.index)
    day = pd.to_numeric(frame[WEEKDAY], errors="coerce") if WEEKDAY in frame else pd.Series(np.nan, index=frame.index)
    return frame.assign(**{HOUR_OFFSET: (hour - ts.dt.hour) % 24, WEEKDAY_OFFSET: (day - ts.dt.weekday) % 7})


def compare(reference: pd.DataFrame, current: pd.DataFrame, columns: list[Column], share_threshold: float
            ) -> Comparison:
    """Run the Evidently report over ``columns`` (a column empty on either side is skipped and named)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    reference, current = with_context_offsets(reference), with_context_offsets(current)
    skipped = {}
    used = []
    for col in columns:
        for side, frame in (("reference", reference), ("window", current)):
            if col.name not in frame or not np.isfinite(pd.to_numeric(frame[col.name], errors="coerce")).any():
                skipped[col.name] = f"no values in the {side}"
                break
        else:
            used.append(col)
    names = [c.name for c in used]
    shared = [c.name for c in used if c.role in VOTING]
    definition = DataDefinition(numerical_columns=[c.name for c in used if c.kind == "numerical"],
                                categorical_columns=[c.name for c in used if c.kind == "categorical"])

    def dataset(frame: pd.DataFrame) -> Any:
        return Dataset.from_pandas(frame[names].astype("float64").reset_index(drop=True), data_definition=definition)

    metrics: list[Any] = []
    if shared:
        metrics.append(DriftedColumnsCount(columns=shared, per_column_method={c.name: c.method for c in used},
                                           per_column_threshold={c.name: c.threshold for c in used},
                                           drift_share=share_threshold))
    metrics += [ValueDrift(column=c.name, method=c.method, threshold=c.threshold) for c in used]
    snapshot = Report(metrics, include_tests=True).run(current_data=dataset(current), reference_data=dataset(reference))
    scores = _scores(snapshot.dict(), {c.name: c for c in used})
    drifted = sum(s.drifted for s in scores if s.role in VOTING)
    compared = sum(s.role in VOTING for s in scores)
    return Comparison(columns=scores, share=drifted / compared if compared else 0.0, drifted_count=drifted,
                      compared=compared, skipped=skipped, snapshot=snapshot)


def _scores(report: dict[str, Any], columns: dict[str, Column]) -> list[ColumnScore]:
    """Each ValueDrift's score, and whether its test failed (Evidently's verdict; else score >= threshold)."""
    failed = {t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in report.get("tests", [])
              if "metric_config" in t}
    out = []
    for metric in report["metrics"]:
        config = metric["config"]
        if not config["type"].endswith(":ValueDrift"):
            continue
        col = columns[config["column"]]
        score = float(metric["value"])
        out.append(ColumnScore(col.name, col.role, str(config["method"]), float(config["threshold"]), score,
                               failed.get(metric["id"], score >= col.threshold)))
    return out


def save_report(snapshot: Any, folder: Path) -> tuple[Path, Path]:
    """The report as ``report.html`` and ``report.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    html, js = folder / "report.html", folder / "report.json"
    snapshot.save_html(str(html))
    snapshot.save_json(str(js))
    return html, js
