"""The ranker on Dask (lightgbm.dask on a real LocalCluster) learns what the local engine learns; the engine keys
leave the dump, hence the run keys, of existing configs unchanged; queries are never split across workers."""

import itertools

import lightgbm as lgb
import numpy as np
import pytest

from recsys.config import RankerConfig, TrainConfig
from recsys.metrics import query_ndcg
from recsys.ranking.distributed import query_chunks
from recsys.ranking.queries import QueryFrame
from recsys.ranking.ranker import lgb_params, train_ranker
from recsys.registry.tracking import run_key

# the defaults' run key (issue 16 changed the defaults: 100 trees, no early stopping, the EASE blend, the
# co-visitation generator); the engine and objective keys at their defaults leave it as it is
MAIN_RUN_KEY = "f17a60e3c938ffd6"  # pragma: allowlist secret (a run key, not a secret)


def test_default_run_key_unchanged() -> None:
    assert run_key(20, TrainConfig().model_dump_json(), "abc") == MAIN_RUN_KEY


def test_engine_keys_dumped_only_when_set() -> None:
    assert "engine" not in RankerConfig().model_dump()
    dumped = RankerConfig(engine="dask", dask_workers=3).model_dump()
    assert dumped["engine"] == "dask" and dumped["dask_workers"] == 3 and "dask_address" not in dumped
    assert RankerConfig.model_validate(dumped).engine == "dask"


# -- training on a real Dask cluster ---------------------------------------------------------------------------------

def planted(n_queries: int, seed: int) -> QueryFrame:
    """Queries of 20-40 candidates whose relevance follows feature 0 (plus noise); features 1-4 are noise."""
    rng = np.random.default_rng(seed)
    group = rng.integers(20, 41, size=n_queries)
    n = int(group.sum())
    x = rng.normal(size=(n, 5))
    y = np.digitize(x[:, 0] + 0.3 * rng.normal(size=n), [1.0, 1.8]).astype(np.float32)
    return QueryFrame(x, y, group, [f"f{i}" for i in range(5)], np.repeat(np.arange(n_queries), group),
                      np.arange(n))


def mean_ndcg(booster: lgb.Booster, q: QueryFrame) -> float:
    return query_ndcg(np.asarray(booster.predict(q.x, num_threads=1)), q.y, q.group)


CFG = RankerConfig(n_estimators=40, min_child_samples=10, early_stopping_rounds=10, num_threads=1)


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 7])
def test_query_chunks_keep_every_query_whole(n_chunks: int) -> None:
    group = np.array([5, 1, 7, 3, 3, 9, 2])
    rows, queries = query_chunks(group, n_chunks)
    assert sum(rows) == group.sum() and sum(queries) == len(group) and len(rows) == len(queries) <= n_chunks
    bounds = np.cumsum((0, *queries))
    assert [int(group[a:b].sum()) for a, b in itertools.pairwise(bounds)] == list(rows)
    assert all(r > 0 for r in rows)


def test_query_chunks_refuse_no_queries() -> None:
    with pytest.raises(ValueError, match="no queries"):
        query_chunks(np.array([], dtype=np.int64), 2)


@pytest.fixture(scope="module")
def frames() -> tuple[QueryFrame, QueryFrame, QueryFrame]:
    return planted(300, 0), planted(100, 1), planted(100, 2)


@pytest.mark.parametrize("workers", [1, 2])
def test_dask_ranker_learns_like_the_local_one(frames: tuple[QueryFrame, QueryFrame, QueryFrame],
                                               workers: int) -> None:
    train, valid, test = frames
    local = train_ranker(train, valid, CFG)
    dask = train_ranker(train, valid, CFG.model_copy(update={"engine": "dask", "dask_workers": workers}))
    random = mean_ndcg(lgb.train({"objective": "lambdarank", "verbose": -1, "num_threads": 1},
                                 lgb.Dataset(train.x, np.random.default_rng(3).permutation(train.y),
                                             group=train.group), num_boost_round=5), test)
    assert mean_ndcg(dask, test) > random + 0.2
    assert abs(mean_ndcg(dask, test) - mean_ndcg(local, test)) < 0.05
    assert dask.feature_name() == train.feature_names
    assert 1 <= dask.num_trees() <= CFG.n_estimators  # cut to the validation's best round


def test_the_local_engine_is_the_code_before_the_dask_one(frames: tuple[QueryFrame, QueryFrame, QueryFrame]
                                                          ) -> None:
    train, valid, _ = frames
    booster = train_ranker(train, valid, CFG)
    dtrain = lgb.Dataset(train.x, train.y, group=train.group, feature_name=train.feature_names, free_raw_data=False)
    dvalid = lgb.Dataset(valid.x, valid.y, group=valid.group, reference=dtrain, free_raw_data=False)
    direct = lgb.train(lgb_params(CFG), dtrain, num_boost_round=CFG.n_estimators, valid_sets=[dvalid],
                       callbacks=[lgb.early_stopping(CFG.early_stopping_rounds, first_metric_only=True,
                                                     verbose=False)])
    assert booster.model_to_string() == direct.model_to_string(num_iteration=direct.best_iteration)


def test_an_unreachable_scheduler_is_a_clear_error_naming_the_field(frames: tuple[QueryFrame, QueryFrame,
                                                                                   QueryFrame]) -> None:
    train, valid, _ = frames
    cfg = CFG.model_copy(update={"engine": "dask", "dask_address": "tcp://127.0.0.1:9"})
    with pytest.raises(ValueError, match=r"ranker.dask_address 'tcp://127.0.0.1:9': cannot reach"):
        train_ranker(train, valid, cfg)
