"""The model manager against a real MLflow registry (SQLite under tmp_path): aliases resolve to loaded bundles,
a new champion is swapped in while readers keep going, a corrupt bundle is rejected and the old one keeps serving,
and an unreachable registry changes nothing."""

from __future__ import annotations

import gc
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from recsys.ranking.recommender import BundleError
from recsys.registry.tracking import log_training, register
from recsys.schema import CHALLENGER, CHAMPION
from recsys.serving.models import ModelManager

MODEL = "content-ranker"


def with_seed(result, seed: int):  # type: ignore[no-untyped-def]
    ranker = result.config.ranker.model_copy(update={"seed": seed})
    return result.with_config(result.config.model_copy(update={"ranker": ranker}))


@pytest.fixture(scope="module")
def registry(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """v1 and v2: the small model (two seeds, so two run keys); v3: a bundle whose ranker fails its sha256."""
    root = tmp_path_factory.mktemp("serving-registry")
    uri = f"sqlite:///{root}/mlflow.db"
    bundle = root / "bundle"
    small_model.result.recommender.save(bundle)
    for seed in (1, 2):
        register(log_training(with_seed(small_model.result, seed), bundle, tracking_uri=uri), MODEL, tracking_uri=uri)
    corrupt = root / "corrupt"
    shutil.copytree(bundle, corrupt)
    (corrupt / "ranker.txt").write_text((corrupt / "ranker.txt").read_text().replace("tree", "tree ", 1))
    register(log_training(with_seed(small_model.result, 3), corrupt, tracking_uri=uri), MODEL, tracking_uri=uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    yield SimpleNamespace(uri=uri, client=client, bundle=bundle, root=root)


def point(registry: SimpleNamespace, alias: str, version: int) -> None:
    registry.client.set_registered_model_alias(MODEL, alias, str(version))


def test_bundle_dir_loads_without_a_registry(registry: SimpleNamespace) -> None:
    manager = ModelManager(MODEL, tracking_uri=None)
    assert not manager.ready and manager.refresh() == {}
    model = manager.load_bundle(registry.bundle)
    assert manager.ready and manager.get(CHAMPION) is model
    assert model.info()["source"].startswith("bundle") and model.info()["features"] > 10


def test_a_load_freezes_the_heap(registry: SimpleNamespace) -> None:
    """After a swap the loaded state is out of the collector's full passes (the p99 tail they caused)."""
    gc.unfreeze()
    try:
        ModelManager(MODEL, tracking_uri=None, freeze_heap=False).load_bundle(registry.bundle)
        assert gc.get_freeze_count() == 0
        ModelManager(MODEL, tracking_uri=None).load_bundle(registry.bundle)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_trees_compile_in_the_background_and_answer_alike(registry: SimpleNamespace, tmp_path: Path) -> None:
    plain = ModelManager(MODEL, tracking_uri=None, freeze_heap=False, precompute=False)
    plain.load_bundle(registry.bundle)
    compiled = ModelManager(MODEL, tracking_uri=None, freeze_heap=False, precompute=False, compile_trees=True,
                            compiled_dir=tmp_path / "compiled")
    model = compiled.load_bundle(registry.bundle)
    assert compiled.wait_compiled(120) and compiled.stats.compiled == 1 and compiled.stats.compile_failed == 0
    assert model.info()["engine"] == "lleaves" and plain.get(CHAMPION).info()["engine"] == "lightgbm"
    cached = list((tmp_path / "compiled").glob("ranker-*.o"))
    assert len(cached) == 1
    for user, profile in [(10**6, {"age": 23, "gender": "F", "occupation": "student", "zip": "55414"}),
                          (10**6, {"age": 70}), (int(model.recommender.profiles.index[0]), None)]:
        a = plain.get(CHAMPION).recommend(user, 20, profile=profile)
        b = model.recommend(user, 20, profile=profile)
        assert [r.item_id for r in a.items] == [r.item_id for r in b.items]
        assert [r.score for r in a.items] == pytest.approx([r.score for r in b.items], abs=1e-9)
    again = ModelManager(MODEL, tracking_uri=None, freeze_heap=False, precompute=False, compile_trees=True,
                         compiled_dir=tmp_path / "compiled")
    assert again.load_bundle(registry.bundle) and again.wait_compiled(120) and again.stats.compiled == 1
    assert list((tmp_path / "compiled").glob("ranker-*.o")) == cached  # loaded from the cache, not rebuilt


def test_compiled_trees_that_disagree_are_refused(registry: SimpleNamespace) -> None:
    rec = ModelManager(MODEL, tracking_uri=None, freeze_heap=False, precompute=False).load_bundle(
        registry.bundle).recommender
    with pytest.raises(BundleError, match="compiled trees differ from LightGBM"):
        rec.compile_trees(tolerance=-1.0)  # no gap is below -1: the check itself refuses
    assert rec.engine == "lightgbm"


def test_a_tampered_bundle_dir_is_refused_and_the_old_model_stays(registry: SimpleNamespace, tmp_path: Path) -> None:
    manager = ModelManager(MODEL, tracking_uri=None)
    good = manager.load_bundle(registry.bundle)
    broken = tmp_path / "broken"
    shutil.copytree(registry.bundle, broken)
    (broken / "profiles.parquet").write_bytes(b"not parquet")
    with pytest.raises(BundleError, match="sha256"):
        manager.load_bundle(broken)
    assert manager.get(CHAMPION) is good


def test_refresh_follows_the_aliases_and_swaps(registry: SimpleNamespace) -> None:
    point(registry, CHAMPION, 1)
    point(registry, CHALLENGER, 2)
    manager = ModelManager(MODEL, registry.uri)
    outcome = manager.refresh()
    assert outcome == {CHAMPION: "loaded v1 (was nothing)", CHALLENGER: "loaded v2 (was nothing)"}
    assert manager.get(CHAMPION).version == 1 and manager.get(CHALLENGER).version == 2
    assert manager.refresh()[CHAMPION] == "v1 already loaded"

    # readers keep reading while the champion moves: every read sees a whole, loaded model
    seen: set[int | None] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                model = manager.models[CHAMPION]
                model.recommender.recommend(1, 5)
                seen.add(model.version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    point(registry, CHAMPION, 2)
    assert manager.refresh()[CHAMPION] == "loaded v2 (was v1)"
    stop.set()
    for t in readers:
        t.join()
    assert not errors and seen <= {1, 2} and manager.get(CHAMPION).version == 2
    assert manager.stats.succeeded == 3 and manager.stats.failed == 0


def test_a_reload_request_reaches_every_watcher(registry: SimpleNamespace, tmp_path: Path,
                                               wait_until: Callable[..., None]) -> None:
    """Two managers standing for two worker processes share a reload marker: a reload asked of one moves both,
    long before their 60 s watch interval."""
    point(registry, CHAMPION, 1)
    marker = tmp_path / "reload-marker"
    workers = [ModelManager(MODEL, registry.uri, aliases=(CHAMPION,), freeze_heap=False) for _ in range(2)]
    try:
        for w in workers:
            w.refresh()
            w.start_watcher(60.0, reload_marker=marker)
        point(registry, CHAMPION, 2)
        checked = [w.watch_checks for w in workers]
        wait_until(lambda: all(w.watch_checks >= c + 3 for w, c in zip(workers, checked, strict=True)))
        assert [w.get(CHAMPION).version for w in workers] == [1, 1]  # three looks each, and nobody asked yet
        workers[0].request_reload()
        wait_until(lambda: all(w.get(CHAMPION).version == 2 for w in workers))
    finally:
        point(registry, CHAMPION, 1)
        for w in workers:
            w.stop()


def test_a_corrupt_registered_bundle_is_rejected(registry: SimpleNamespace) -> None:
    point(registry, CHAMPION, 1)
    manager = ModelManager(MODEL, registry.uri, aliases=(CHAMPION,))
    manager.refresh()
    point(registry, CHAMPION, 3)
    outcome = manager.refresh()[CHAMPION]
    assert outcome.startswith("rejected v3") and "sha256" in outcome
    assert manager.get(CHAMPION).version == 1  # the old one keeps serving
    assert manager.stats.failed == 1 and "v3" in (manager.stats.last_error or "")


def test_an_unreachable_registry_keeps_the_loaded_models(registry: SimpleNamespace,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    point(registry, CHAMPION, 1)
    manager = ModelManager(MODEL, registry.uri, aliases=(CHAMPION,))
    manager.refresh()
    assert manager.stats.registry_up is True
    created = registry.client.get_model_version(MODEL, "1").creation_timestamp / 1000
    assert manager.get(CHAMPION).registered_at == pytest.approx(created)  # the time training registered it
    manager.tracking_uri = "http://127.0.0.1:9"  # nothing listens on the discard port
    outcome = manager.refresh()
    assert outcome[CHAMPION].startswith("registry unreachable")
    assert manager.get(CHAMPION).version == 1 and manager.stats.registry_errors == 1
    assert manager.stats.registry_up is False
