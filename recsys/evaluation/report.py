"""Reports of offline evaluations: JSON summaries, markdown tables and the gain line (CLI and benchmarks)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.evaluation.protocols import RANKER, EvalResult
from recsys.schema import K

SLICES = ("all", "warm", "cold", "long_tail")
RECBOLE_BPR = {"ndcg": (0.28, 0.29), "recall": (0.24, 0.25)}
"""RecBole's published BPR on ML-100K under its 80/10/10 protocol (NDCG@10, Recall@10 ranges)."""
_LABELS = {"ndcg": "NDCG", "recall": "Recall", "map": "MAP", "mrr": "MRR", "hit_rate": "HitRate",
           "precision": "Precision", "coverage": "coverage", "novelty": "novelty", "arp": "ARP",
           "fit_s": "fit s", "users": "users"}


def json_safe(value: Any) -> Any:
    """JSON-safe scalars: numpy numbers become Python numbers, NaN and inf become null."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def result_slices(result: EvalResult) -> list[str]:
    """The slices that have users for the ranker; warm and cold only when there are cold users at all."""
    has_cold = bool(result.per_user["cold"].any())
    slices = [s for s in SLICES if has_cold or s not in ("warm", "cold")]
    tables = {s: result.table(s) for s in slices}
    return [s for s in slices if RANKER in tables[s].index and tables[s].loc[RANKER, "users"] >= 2]


def summarize_result(result: EvalResult, n_resamples: int = 2000) -> dict[str, Any]:
    """Metrics per slice and model, fit seconds and the ranker's bootstrap gains, as plain JSON data."""
    slices = result_slices(result)
    metrics = {s: {str(m): {c: json_safe(v) for c, v in row.items()} for m, row in result.table(s).iterrows()}
               for s in slices}
    models = list(metrics["all"])
    return {
        "protocol": result.protocol,
        "metrics": metrics,
        "fit_seconds": {m: json_safe(result.fit_seconds.get(m)) for m in models},
        "gains": {s: json_safe(result.gain(s, n_resamples=n_resamples)) for s in slices},
        "info": json_safe(json.loads(json.dumps(result.info, default=str))),
    }


def markdown_table(table: pd.DataFrame, extra_rows: dict[str, dict[str, str]] | None = None) -> str:
    """A model × metric table in GitHub markdown, best NDCG first; ``extra_rows`` are shown as given."""
    cols = [c for c in table.columns if c != f"precision@{K}"]
    labels = [_LABELS.get(c.split("@")[0], c) + (f"@{c.split('@')[1]}" if "@" in c else "") for c in cols]
    lines = ["| model | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(cols)]
    for model, row in table[cols].iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("–")
            elif c == "users":
                cells.append(str(int(v)))
            elif c in ("arp", "fit_s"):
                cells.append(f"{v:.1f}")
            elif c == "novelty":
                cells.append(f"{v:.2f}")
            else:
                cells.append(f"{v:.4f}")
        lines.append(f"| {'**ranker**' if model == 'ranker' else model} | " + " | ".join(cells) + " |")
    for model, values in (extra_rows or {}).items():
        lines.append(f"| {model} | " + " | ".join(values.get(c, "–") for c in cols) + " |")
    return "\n".join(lines)


def format_gain(gain: dict[str, Any]) -> str:
    """One line: the ranker's NDCG@10 against the baseline, with the paired bootstrap 95 % CIs."""
    def num(key: str, spec: str = "+.4f", scale: float = 1.0, unit: str = "") -> str:
        v = gain.get(key)
        return "n/a" if v is None or not math.isfinite(v) else f"{scale * v:{spec}}{unit}"

    def pct(key: str) -> str:
        return num(key, "+.1f", 100.0, " %")

    return (f"ranker vs {gain['baseline']} ({gain['metric']}): "
            f"{num('mean_a', '.4f')} vs {num('mean_b', '.4f')}, "
            f"diff {num('diff')} [95% CI {num('ci_low')}, {num('ci_high')}], "
            f"relative {pct('rel_gain')} [{pct('rel_ci_low')}, {pct('rel_ci_high')}], n = {gain['n']}")


def render_result(result: EvalResult, summary: dict[str, Any], title: str,
                  extra_rows: dict[str, dict[str, str]] | None = None) -> str:
    """Markdown: a heading, then per slice the model × metric table and the ranker's gain line."""
    parts = [f"## {title}"]
    for s in summary["metrics"]:
        parts.append(f"### {s.replace('_', '-')} {'positives' if s == 'long_tail' else 'users'}")
        parts.append(markdown_table(result.table(s), extra_rows if s == "all" else None))
        parts.append(format_gain(summary["gains"][s]))
    return "\n\n".join(parts)


def recbole_reference_row() -> dict[str, dict[str, str]]:
    """RecBole's published BPR on ML-100K, shown beside our RecBole-protocol table."""
    cells = {f"{m}@{K}": f"{lo:.2f}–{hi:.2f}" for m, (lo, hi) in RECBOLE_BPR.items()}
    return {"BPR (RecBole, published)": cells}


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics of a summary for a tracking server, ``@`` spelled ``_at_``.

    The ranker's metrics per slice (``ndcg_at_10`` for all users, ``ndcg_at_10.warm`` …), its list metrics, the
    best single generator's NDCG@10 and Recall@10 (``baseline.*``), the paired-bootstrap gain per slice
    (``gain.ndcg_at_10.<slice>.diff|ci_low|ci_high``) and every generator's NDCG@10 (``generator.<name>.*``).
    """
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name.replace("@", "_at_")] = float(value)

    for slice_, models in summary["metrics"].items():
        suffix = "" if slice_ == "all" else f".{slice_}"
        for column, value in models.get(RANKER, {}).items():
            # fit time is a measurement of the machine, not of the model: it is logged from the training info
            if ("@" in column or slice_ == "all") and column != "fit_s":
                put(f"{column}{suffix}", value)
        gain = summary["gains"].get(slice_, {})
        for key in ("diff", "ci_low", "ci_high", "rel_gain"):
            put(f"gain.ndcg@{K}.{slice_}.{key}", gain.get(key))
    all_models = summary["metrics"].get("all", {})
    baseline = summary["gains"].get("all", {}).get("baseline")
    if baseline in all_models:
        for metric in (f"ndcg@{K}", f"recall@{K}"):
            put(f"baseline.{metric}", all_models[baseline].get(metric))
    for model, row in all_models.items():
        if model != RANKER:
            put(f"generator.{model}.ndcg@{K}", row.get(f"ndcg@{K}"))
    return out


def write_report(result: EvalResult, summary: dict[str, Any], folder: Path,
                 importance: dict[str, float] | None = None) -> list[Path]:
    """The evaluation as files: summary JSON, one CSV table per slice, a markdown report, NDCG by user
    activity (CSV) and the plots (PNG). Returns the paths written."""
    from recsys.evaluation.plots import (
        ndcg_by_activity,
        plot_feature_importance,
        plot_metric_comparison,
        plot_ndcg_by_activity,
    )

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    summary_path = folder / "summary.json"
    summary_path.write_text(json.dumps(json_safe(summary), indent=2))
    written.append(summary_path)
    for slice_ in summary["metrics"]:
        path = folder / f"table_{slice_}.csv"
        result.table(slice_).to_csv(path, float_format="%.6g")
        written.append(path)
    report = folder / "report.md"
    report.write_text(render_result(result, summary, f"Evaluation ({result.protocol})") + "\n")
    written.append(report)
    activity = folder / "ndcg_by_activity.csv"
    ndcg_by_activity(result).to_csv(activity, float_format="%.6g")
    written += [activity, plot_metric_comparison(result, folder / "metric_comparison.png"),
                plot_ndcg_by_activity(result, folder / "ndcg_by_activity.png")]
    if importance:
        written.append(plot_feature_importance(importance, folder / "feature_importance.png"))
    return written
