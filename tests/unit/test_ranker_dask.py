"""RankerConfig's Dask engine keys leave the dump, hence the run keys, of existing configs unchanged."""

from recsys.config import RankerConfig, TrainConfig
from recsys.registry.tracking import run_key

# computed on main before the engine keys existed
MAIN_RUN_KEY = "1841ea112a7e458e"


def test_default_run_key_unchanged() -> None:
    assert run_key(20, TrainConfig().model_dump_json(), "abc") == MAIN_RUN_KEY


def test_engine_keys_dumped_only_when_set() -> None:
    assert "engine" not in RankerConfig().model_dump()
    dumped = RankerConfig(engine="dask", dask_workers=3).model_dump()
    assert dumped["engine"] == "dask" and dumped["dask_workers"] == 3 and "dask_address" not in dumped
    assert RankerConfig.model_validate(dumped).engine == "dask"
