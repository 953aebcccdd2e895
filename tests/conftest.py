"""Shared fixtures: a tiny synthetic catalog with known answers, and the real MovieLens-100K (integration)."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from recsys.runtime import quiet_threads

quiet_threads()  # before numpy/LightGBM load: spinning thread pools starve each other on 2 cores

import numpy as np
import pandas as pd
import pytest

from recsys import schema
from recsys.data.fetch import FILES_SHA256, fetch_movielens
from recsys.data.matrix import InteractionData
from tests.receivers import SmtpReceiver, WebhookReceiver, self_signed_cert

N_USERS = 20
N_ITEMS = 20
ITEM_OFFSET = 100
"""Item ids are ``ITEM_OFFSET + i``, so an id is never confused with a matrix column."""
T0 = 1_000_000_000  # 2001-09-09 01:46:40 UTC, a Sunday: the data crosses a week boundary at once
HOUR = 3600
DAY = 24 * HOUR
GENRES = ("Action", "Comedy", "Drama", "Action Comedy", "Comedy Drama")
OCCUPATIONS = ("engineer", "student", "writer")


def make_items(n_items: int = N_ITEMS) -> pd.DataFrame:
    return pd.DataFrame({
        schema.ITEM: (ITEM_OFFSET + np.arange(n_items)).astype("int32"),
        schema.TITLE: pd.array([f"Movie {i}" for i in range(n_items)], dtype="string"),
        schema.RELEASE_YEAR: pd.array([1980 + i for i in range(n_items)], dtype="Int16"),
        schema.GENRES: pd.array([GENRES[i % len(GENRES)] for i in range(n_items)], dtype="string"),
    })


def make_users(user_ids: np.ndarray | list[int], genders: list[str] | None = None,
               occupations: list[str] | None = None, ages: list[int] | None = None) -> pd.DataFrame:
    ids = np.asarray(user_ids)
    n = len(ids)
    return pd.DataFrame({
        schema.USER: ids.astype("int32"),
        schema.AGE: np.asarray(ages if ages is not None else [18 + 3 * (i % 15) for i in range(n)], "int16"),
        schema.GENDER: pd.Categorical(genders if genders is not None else ["MF"[i % 2] for i in range(n)]),
        schema.OCCUPATION: pd.Categorical(
            occupations if occupations is not None else [OCCUPATIONS[i % 3] for i in range(n)]),
        schema.ZIP: pd.array([f"{10000 + 1111 * i:05d}"[-5:] for i in range(n)], dtype="string"),
    })


def make_interactions(rows: list[tuple[int, int, int]], rating: float = 4.0) -> pd.DataFrame:
    """(user, item, timestamp) triples -> an interactions frame with the schema's dtypes."""
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return pd.DataFrame({
        schema.USER: arr[:, 0].astype("int32"),
        schema.ITEM: arr[:, 1].astype("int32"),
        schema.RATING: np.full(len(arr), rating, dtype="float32"),
        schema.TS: arr[:, 2].astype("int64"),
    })


def checkerboard_rows() -> list[tuple[int, int, int]]:
    """implicit's checkerboard: user j sees every item of its own parity block except item j (withheld)."""
    rows = []
    for j in range(N_USERS):
        for i in range(N_ITEMS):
            if i % 2 == j % 2 and i != j:
                rows.append((j + 1, ITEM_OFFSET + i, T0 + (j * N_ITEMS + i) * 3 * HOUR))
    return rows


def withheld_item(user_id: int) -> int:
    """The one unseen item of ``user_id``'s own block in the checkerboard."""
    return ITEM_OFFSET + user_id - 1


@pytest.fixture(scope="session")
def synth() -> SimpleNamespace:
    """The synthetic data's constants and builders, for tests that make data of their own."""
    return SimpleNamespace(
        N_USERS=N_USERS, N_ITEMS=N_ITEMS, ITEM_OFFSET=ITEM_OFFSET, T0=T0, HOUR=HOUR, DAY=DAY,
        make_items=make_items, make_users=make_users, make_interactions=make_interactions,
        withheld_item=withheld_item,
    )


@pytest.fixture
def items() -> pd.DataFrame:
    return make_items()


@pytest.fixture
def users() -> pd.DataFrame:
    return make_users(np.arange(1, N_USERS + 1))


@pytest.fixture
def interactions() -> pd.DataFrame:
    """The checkerboard: 20 users x 20 items, 180 interactions over about seven weeks."""
    return make_interactions(checkerboard_rows())


@pytest.fixture
def now(interactions: pd.DataFrame) -> int:
    return int(interactions[schema.TS].max()) + DAY


@pytest.fixture
def data(interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, now: int) -> InteractionData:
    return InteractionData(interactions, items, users, now)


@pytest.fixture
def build_data(items: pd.DataFrame) -> Callable[..., InteractionData]:
    """Factory: InteractionData over the synthetic catalog from (user, item, ts) rows."""

    def build(rows: list[tuple[int, int, int]], users: pd.DataFrame | None = None,
              now: int | None = None) -> InteractionData:
        inter = make_interactions(rows)
        if users is None:
            users = make_users(np.sort(inter[schema.USER].unique()))
        when = int(inter[schema.TS].max()) + DAY if now is None else now
        return InteractionData(inter, items, users, when)

    return build


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., None]:
    """``wait_until(condition)``: poll until ``condition()`` is truthy. No deadline of its own: the test's
    pytest-timeout bounds every wait, and a wait that never ends fails the test there."""

    def wait(condition: Callable[[], object], interval: float = 0.02) -> None:
        while not condition():
            time.sleep(interval)

    return wait


# -- the machine's PostgreSQL ----------------------------------------------------------------------------------
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def postgres_database(purpose: str = "test") -> Iterator[str]:
    """A database created on the machine's PostgreSQL (127.0.0.1:5432, trust auth) for one test or module, dropped
    after it (with its connections); skips with a one-line reason where no server answers."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})
    name = f"recsys_{purpose}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({type(exc).__name__})")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """The URL of a database created for this test on the machine's PostgreSQL and dropped after it."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store's URL on each backend a deployment uses: a SQLite file in a folder that does not exist yet (the
    store must make it), and a database of its own on the machine's PostgreSQL (skips where none answers)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_db"))
    return f"sqlite:///{tmp_path / 'stores' / 'store.db'}"


def url_of(store: object) -> str:
    """The URL a second instance of ``store`` opens (the password kept)."""
    return str(store.url.render_as_string(hide_password=False))  # type: ignore[attr-defined]


# -- real data ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def movielens_cache() -> Path:
    """The wheel cache, shared across runs so the recbole wheel is downloaded once per machine."""
    return Path(os.environ.get("RECSYS_TEST_CACHE", Path.home() / ".cache" / "recsys-test"))


@pytest.fixture(scope="session")
def movielens(tmp_path_factory: pytest.TempPathFactory, movielens_cache: Path) -> Path:
    """Raw dir holding the verified ML-100K atomic files (fetched into a fresh temporary folder)."""
    raw_dir = tmp_path_factory.mktemp("ml-100k")
    return fetch_movielens(raw_dir, movielens_cache)


@pytest.fixture(scope="session")
def raw_data_dir(movielens: Path) -> Callable[[Path], Path]:
    """``make(root)``: ``root/data`` holding copies of the verified raw files, as `recsys data fetch` leaves it."""

    def make(root: Path) -> Path:
        raw = root / "data" / "raw" / "ml-100k"
        raw.mkdir(parents=True)
        for name in FILES_SHA256:
            shutil.copy(movielens / name, raw / name)
        return root / "data"

    return make


SMALL_CONFIG = {"candidates": {"per_generator": 50, "tune": False},
                "ranker": {"label_windows": 3, "n_estimators": 60, "refit": False, "num_threads": 1},
                "backtest": {"horizon": 4}}
"""Small enough for tests: a few label windows, few trees, no tuning grid, one LightGBM thread."""


@pytest.fixture(scope="session")
def small_config() -> dict[str, Any]:
    """A copy of SMALL_CONFIG, for tests that write it to a config file."""
    return copy.deepcopy(SMALL_CONFIG)


@pytest.fixture(scope="session")
def small_model(movielens: Path) -> SimpleNamespace:
    """The real data and a small two-stage model trained as of week 20, once per test session."""
    from threadpoolctl import threadpool_limits

    from recsys.config import TrainConfig
    from recsys.data.load import load_movielens
    from recsys.data.replay import ReplayClock
    from recsys.ranking.train import train_recommender

    ml = load_movielens(movielens)
    clock = ReplayClock.from_interactions(ml.interactions)
    config = TrainConfig.model_validate(SMALL_CONFIG)
    with threadpool_limits(1, user_api="blas"):
        result = train_recommender(ml, clock, 20, config)
    return SimpleNamespace(ml=ml, clock=clock, result=result, as_of=20, horizon=4, config=config)


@pytest.fixture(scope="module")
def bundle_dir(small_model: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_model`` saved as a bundle directory (what the service loads)."""
    path = tmp_path_factory.mktemp("bento") / "bundle"
    small_model.result.recommender.save(path)
    return path


# -- real receivers (tests/receivers.py) ---------------------------------------------------------------------
@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on a free loopback port recording JSON posts (programmable faults: see its class)."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    """A plain SMTP server (aiosmtpd) on a free loopback port recording every accepted e-mail."""
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    return self_signed_cert(tmp_path_factory.mktemp("tls"))
