"""The ranker on a Dask cluster, through LightGBM's own Dask integration (``lightgbm.dask.DaskLGBMRanker``).

``ranker.engine: dask`` builds the label windows' query frames here, one window per task (the workers read the
validated store's weeks themselves, or get the data sent once), and trains here: on a ``distributed.LocalCluster``
of ``ranker.dask_workers`` one-thread worker processes, or on the scheduler at ``ranker.dask_address`` (a real
cluster, e.g. the Dask Helm chart's). The query frame is cut into chunks of whole queries (a LambdaRank query must
not straddle two workers), one per worker.

``DaskLGBMRanker`` has no early stopping, so with a validation frame the ensemble is trained for ``n_estimators``
rounds with the validation NDCG@10 recorded, then cut to its best iteration: the model early stopping would keep,
at the cost of the rounds after it. The local engine (``recsys.ranking.ranker``) is untouched by this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from recsys.config import CandidateConfig, RankerConfig
from recsys.data.load import MovieLens
from recsys.data.replay import ReplayClock
from recsys.ranking.queries import QueryFrame, window_frame

if TYPE_CHECKING:
    from distributed import Client, Future

# lgb.train's parameter names that the scikit-learn-style estimator takes under another name; the threads are
# the workers' own (lightgbm.dask sets them from each worker's thread count and ignores any given)
_RENAMED = {"seed": "random_state"}
_DROPPED = ("metric", "eval_at", "num_threads")
CONNECT_TIMEOUT = "10s"
"""How long to wait for the scheduler at ``ranker.dask_address``."""


def query_chunks(group: np.ndarray, n_chunks: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split queries (``group``: rows per query, in row order) into at most ``n_chunks`` runs of whole queries with
    about equal rows: (rows per chunk, queries per chunk). Empty chunks are never made."""
    group = np.asarray(group, dtype=np.int64)
    if not len(group):
        raise ValueError("no queries to split")
    n = max(1, min(int(n_chunks), len(group)))
    ends = np.cumsum(group)
    # the query after which each chunk ends: the first one whose cumulative rows reach an equal share
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, n) / n)
    bounds = np.unique(np.concatenate([cuts + 1, [len(group)]]))
    bounds = bounds[bounds > 0]
    starts = np.concatenate([[0], bounds[:-1]])
    queries = tuple(int(b - s) for s, b in zip(starts, bounds, strict=True))
    rows = tuple(int(group[s:b].sum()) for s, b in zip(starts, bounds, strict=True))
    return rows, queries


@contextmanager
def dask_client(cfg: RankerConfig) -> Iterator[Client]:
    """A client of ``cfg.dask_address``, or of a LocalCluster of ``cfg.dask_workers`` one-thread processes that is
    closed on exit."""
    from distributed import Client, LocalCluster

    if cfg.dask_address:
        try:
            client = Client(cfg.dask_address, timeout=CONNECT_TIMEOUT)
        except (OSError, ValueError) as exc:
            raise ValueError(f"ranker.dask_address {cfg.dask_address!r}: cannot reach a Dask scheduler there "
                             f"({exc})") from exc
        with client:
            yield client
        return
    with LocalCluster(n_workers=cfg.dask_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        # the workers inherit this process's stdout, and LightGBM's network set-up prints there whatever the
        # verbosity: keep stdout for the command's own output (a `--json` result)
        client.run(_stdout_to_stderr)
        yield client


def _stdout_to_stderr() -> None:
    import os
    import sys

    sys.stdout.flush()
    os.dup2(2, 1)


def build_windows(cfg: RankerConfig, ml: MovieLens, clock: ReplayClock, starts: list[int], horizon: int,
                  candidates: CandidateConfig, graded: bool, store: Mapping[int, Path] | None = None
                  ) -> dict[int, tuple[QueryFrame, dict[str, float]]]:
    """The label windows' query frames built on the cluster, one window per task (``window_frame``: stage 1, the
    features, the candidates in batches); keyed by start week.

    With ``store`` (the validated store's file of each week of ``ml``'s interactions, on storage the workers share)
    the workers read the interactions themselves: a Dask DataFrame of one partition per stored week, each read
    once on a worker, and each window's task takes the weeks before its end. Without it the interactions are sent
    to every worker once."""
    if not starts:
        return {}
    with dask_client(cfg) as client:
        if store:
            weeks = stored_weeks(client, store)
            tables = client.scatter((ml.users, ml.items), broadcast=True)
            futures = [client.submit(window_frame_of_weeks, tables, clock, start, horizon, candidates, graded,
                                     *[part for week, part in weeks.items() if week < start + horizon], pure=False)
                       for start in starts]
        else:
            data = client.scatter(ml, broadcast=True)
            futures = [client.submit(window_frame, data, clock, start, horizon, candidates, graded, pure=False)
                       for start in starts]
        return dict(zip(starts, client.gather(futures), strict=True))


def stored_weeks(client: Client, store: Mapping[int, Path]) -> dict[int, Future]:
    """The stored weeks read on the cluster: ``dask.dataframe.from_map`` over the week files (one partition per
    week), computed there; week -> the future of its frame, in week order."""
    import dask.dataframe as dd
    import pandas as pd

    from recsys import schema as S
    from recsys.data.load import read_week

    weeks = sorted(store)
    meta = pd.DataFrame({c: pd.Series(dtype=t) for c, t in S.INTERACTION_DTYPES.items()})
    frame = dd.from_map(read_week, [store[w] for w in weeks], meta=meta, enforce_metadata=False)
    return dict(zip(weeks, client.compute(frame.to_delayed()), strict=True))


def window_frame_of_weeks(tables: tuple[pd.DataFrame, pd.DataFrame], clock: ReplayClock, start: int, horizon: int,
                          cfg: CandidateConfig, graded: bool, *weeks: pd.DataFrame
                          ) -> tuple[QueryFrame, dict[str, float]]:
    """:func:`window_frame` from the store's frames of the weeks before the window's end and the (users, items)
    tables: what a Dask worker runs on the weeks it read (the same frame as from the whole interactions)."""
    from recsys.data.load import combine_weeks

    users, items = tables
    return window_frame(MovieLens(users, items, combine_weeks(list(weeks)), ""), clock, start, horizon, cfg, graded)


def _as_dask(q: QueryFrame, n_chunks: int) -> tuple[Any, Any, Any]:
    import dask.array as da

    rows, queries = query_chunks(q.group, n_chunks)
    x = da.from_array(np.ascontiguousarray(q.x), chunks=(rows, (q.x.shape[1],)))
    y = da.from_array(q.y, chunks=(rows,))
    group = da.from_array(np.asarray(q.group), chunks=(queries,))
    return x, y, group


def estimator_params(params: dict[str, object], cfg: RankerConfig) -> dict[str, Any]:
    """``lgb_params(cfg)`` for the estimator: renamed keys, the workers' threads, the boosting rounds."""
    out = {_RENAMED.get(k, k): v for k, v in params.items() if k not in _DROPPED}
    out["n_estimators"] = cfg.n_estimators
    return out


def train_ranker_dask(train: QueryFrame, valid: QueryFrame | None, cfg: RankerConfig, params: dict[str, object],
                      categorical: list[str]) -> lgb.Booster:
    """Fit LambdaRank on the cluster (see the module docstring); ``params`` are the local engine's ``lgb_params``."""
    from lightgbm.dask import DaskLGBMRanker

    lgb.register_logger(logging.getLogger("lightgbm"))  # its Dask module's messages: logging, not print
    with dask_client(cfg) as client:
        n_workers = max(len(client.scheduler_info()["workers"]), 1)
        x, y, group = _as_dask(train, n_workers)
        model = DaskLGBMRanker(client=client, **estimator_params(params, cfg))
        fit: dict[str, Any] = {"feature_name": train.feature_names, "categorical_feature": categorical}
        if valid is not None and len(valid.group):
            vx, vy, vgroup = _as_dask(valid, n_workers)
            fit.update(eval_X=(vx,), eval_y=(vy,), eval_group=[vgroup], eval_at=[10], eval_metric="ndcg")
        model.fit(x, y, group=group, **fit)
        booster = model.to_local().booster_
        if "eval_X" in fit:
            curve = np.asarray(model.evals_result_["valid_0"]["ndcg@10"])
            best = int(np.argmax(curve)) + 1  # the first best round, as lgb.early_stopping keeps
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return booster
