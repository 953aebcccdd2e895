"""Plots of an evaluation, as PNG files for MLflow and the reports: the ranker against the baselines, its
feature importance, and NDCG@10 by user activity (how many interactions the user had before the window).

matplotlib is imported inside the functions with the non-interactive Agg backend, so nothing needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.evaluation.protocols import RANKER
from recsys.schema import K

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from recsys.evaluation.protocols import EvalResult

ACTIVITY_BUCKETS: tuple[tuple[int, float, str], ...] = (
    (0, 0, "cold (0)"), (1, 19, "1–19"), (20, 49, "20–49"), (50, 149, "50–149"), (150, np.inf, "150+"))
"""(lowest, highest, label) of the user-activity buckets: interactions before the evaluation window."""


def activity_bucket(activity: pd.Series) -> pd.Series:
    """The bucket label of each user's activity count (an ordered categorical)."""
    labels = [label for *_, label in ACTIVITY_BUCKETS]
    edges = [-0.5] + [hi + 0.5 for _, hi, _ in ACTIVITY_BUCKETS[:-1]] + [np.inf]
    return pd.cut(activity.astype(float), bins=edges, labels=labels)


def ndcg_by_activity(result: EvalResult, models: list[str] | None = None) -> pd.DataFrame:
    """Mean NDCG@10 per activity bucket (rows) and model (columns), plus a ``users`` column."""
    main = result.per_user[result.per_user["slice"] == "main"]
    if "activity" not in main.columns:
        raise ValueError("per-user rows carry no 'activity' column (evaluated by an older evaluate_window)")
    models = models or [RANKER, result.best_baseline()]
    rows = main[main["model"].isin(models)].assign(bucket=lambda f: activity_bucket(f["activity"]))
    table = rows.pivot_table(index="bucket", columns="model", values=f"ndcg@{K}", aggfunc="mean", observed=True)
    users = rows[rows["model"] == models[0]].groupby("bucket", observed=True).size()
    return table[[m for m in models if m in table.columns]].assign(users=users)


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_metric_comparison(result: EvalResult, path: Path) -> Path:
    """NDCG@10 and Recall@10 of the ranker and every single generator (all users), best first."""
    table = result.table("all")
    fig = _figure(9, 0.45 * len(table) + 1.6)
    axes = fig.subplots(1, 2, sharey=True)
    names = list(table.index)[::-1]
    colors = ["tab:orange" if n == RANKER else "tab:blue" for n in names]
    for ax, metric in zip(axes, (f"ndcg@{K}", f"recall@{K}"), strict=True):
        values = table.loc[names, metric].to_numpy()
        ax.barh(names, values, color=colors)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
        ax.set_xlabel(metric)
        ax.set_xlim(0, max(values.max() * 1.18, 1e-3))
    fig.suptitle(f"{result.protocol}: ranker (orange) vs single generators, {int(table['users'].max())} users")
    return _save(fig, path)


def plot_feature_importance(importance: dict[str, float], path: Path, top: int = 20) -> Path:
    """The ``top`` features by total split gain, as a share of all gain."""
    total = sum(importance.values()) or 1.0
    pairs = sorted(importance.items(), key=lambda p: -p[1])[:top][::-1]
    fig = _figure(7, 0.3 * len(pairs) + 1.2)
    ax = fig.subplots()
    ax.barh([n for n, _ in pairs], [100 * g / total for _, g in pairs], color="tab:green")
    ax.set_xlabel("share of total split gain (%)")
    ax.set_title(f"LightGBM feature importance (top {len(pairs)} of {len(importance)})")
    return _save(fig, path)


def plot_ndcg_by_activity(result: EvalResult, path: Path) -> Path:
    """Grouped bars: NDCG@10 of the ranker and the best single generator per user-activity bucket."""
    table = ndcg_by_activity(result)
    models = [c for c in table.columns if c != "users"]
    fig = _figure(8, 4)
    ax = fig.subplots()
    x = np.arange(len(table))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        ax.bar(x + (i - (len(models) - 1) / 2) * width, table[model].to_numpy(), width, label=model,
               color="tab:orange" if model == RANKER else None)
    ax.set_xticks(x, [f"{b}\n{int(n)} users" for b, n in zip(table.index, table["users"], strict=True)])
    ax.set_xlabel("interactions before the evaluation window")
    ax.set_ylabel(f"mean NDCG@{K}")
    ax.legend()
    ax.set_title("NDCG@10 by user activity")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
