"""The Thompson-sampling bandit: shares from posteriors, the SQL store, the router's sticky cuts, the refresher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats

from recsys.serving.bandit import PRIOR, BanditRefresher, BanditStore, BetaPosterior, thompson_shares
from recsys.serving.router import Experiment, Router, stable_unit

REPO = Path(__file__).resolve().parents[2]
SALT = "bandit-test"


def thompson(**kw: Any) -> Experiment:
    spec: dict[str, Any] = {"name": "bandit", "salt": SALT, "variants": {"champion": 0.5, "challenger": 0.5},
                            "allocation": "thompson", "floor": 0.05, **kw}
    return Experiment.model_validate(spec)


def beta(alpha: float, b: float) -> BetaPosterior:
    return BetaPosterior(alpha=alpha, beta=b)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BanditStore]:
    s = BanditStore(f"sqlite:///{tmp_path / 'bandit.db'}")
    yield s
    s.close()


# -- shares from posteriors ------------------------------------------------------------------------------------
def test_shares_estimate_the_probability_of_being_best() -> None:
    a, b = beta(30, 970), beta(45, 955)
    # P(B > A) = integral of f_B(x) * F_A(x) dx, computed exactly
    exact, _ = integrate.quad(lambda x: stats.beta(45, 955).pdf(x) * stats.beta(30, 970).cdf(x), 0, 1, limit=200)
    shares = thompson_shares({"a": a, "b": b}, floor=0.0)
    assert shares["b"] == pytest.approx(exact, abs=0.01) and sum(shares.values()) == pytest.approx(1)
    equal = thompson_shares({"a": PRIOR, "b": PRIOR, "c": PRIOR}, floor=0.0)
    assert all(s == pytest.approx(1 / 3, abs=0.015) for s in equal.values())


def test_the_floor_holds_and_the_shares_sum_to_one() -> None:
    clear = {"a": beta(10, 990), "b": beta(200, 800), "c": beta(12, 988)}
    shares = thompson_shares(clear, floor=0.1)
    assert min(shares.values()) >= 0.1 and sum(shares.values()) == pytest.approx(1, abs=1e-12)
    assert shares["b"] == pytest.approx(0.8)  # b is surely best: all of the share above the floors
    uniform = thompson_shares(clear, floor=1 / 3)
    assert all(s == pytest.approx(1 / 3) for s in uniform.values())
    for bad in (-0.1, 0.34):
        with pytest.raises(ValueError, match=r"floor must be in \[0, 1/3\]"):
            thompson_shares(clear, floor=bad)
    with pytest.raises(ValueError, match="at least one variant"):
        thompson_shares({}, floor=0.0)


def test_equal_posteriors_give_identical_shares_in_another_process() -> None:
    posteriors = {"champion": beta(101, 1901), "challenger": beta(120, 1882)}
    shares = thompson_shares(posteriors, floor=0.05)
    assert thompson_shares(dict(reversed(posteriors.items())), floor=0.05) == shares  # order does not matter
    assert thompson_shares({**posteriors, "challenger": beta(121, 1881)}, floor=0.05) != shares  # new state, new seed
    code = ("import json; from recsys.serving.bandit import BetaPosterior, thompson_shares; "
            "p = {'champion': BetaPosterior(alpha=101, beta=1901), 'challenger': BetaPosterior(alpha=120, beta=1882)}; "
            "print(json.dumps(thompson_shares(p, floor=0.05)))")
    env = {**os.environ, "PYTHONHASHSEED": "4321",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=60)
    assert json.loads(out.stdout) == shares


# -- the store --------------------------------------------------------------------------------------------------
def check_store(store: BanditStore) -> None:
    assert store.read("bandit") == {}
    store.write("bandit", {"champion": (1000, 20), "challenger": (1000, 50)})
    store.write("other", {"champion": (7, 7)})
    assert store.read("bandit") == {"champion": beta(21, 981), "challenger": beta(51, 951)}
    stamped = store.counts("bandit")
    store.write("bandit", {"champion": (1000, 20), "challenger": (1000, 50)})  # a retried job: nothing changes
    assert store.counts("bandit") == stamped
    store.write("bandit", {"challenger": (2000, 90)})  # new totals replace the old ones, the others stay
    again = store.counts("bandit")
    assert again["champion"] == stamped["champion"] and again["challenger"][:2] == (2000, 90)
    assert again["challenger"][2] > stamped["challenger"][2]
    assert store.read("other", prior=beta(2, 3)) == {"champion": beta(9, 3)}
    with pytest.raises(ValueError, match="'challenger'"):
        store.write("bandit", {"challenger": (10, 11)})


def test_store_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bandit.db"
    store = BanditStore(f"sqlite:///{path}")
    assert not path.parent.exists()  # nothing at construction
    try:
        check_store(store)
    finally:
        store.close()


def test_store_on_postgres(postgres_db: str) -> None:
    store = BanditStore(postgres_db)
    try:
        check_store(store)
    finally:
        store.close()


# -- the router ---------------------------------------------------------------------------------------------------
def test_experiment_allocation_and_floor_are_validated() -> None:
    exp = Experiment(name="x", salt="s")
    assert (exp.allocation, exp.floor) == ("hash", 0.05)
    many = {f"v{i}": 1 / 25 for i in range(25)}
    Experiment(name="x", salt="s", variants=many)  # hash: the floor is not used, so not checked
    with pytest.raises(ValueError, match="above 1/25"):
        Experiment(name="x", salt="s", variants=many, allocation="thompson")
    with pytest.raises(ValueError, match="less than or equal to 1"):
        thompson(floor=1.5)
    with pytest.raises(ValueError, match="'hash' or 'thompson'"):
        thompson(allocation="epsilon")


def test_new_shares_move_only_the_users_between_the_old_and_the_new_cut() -> None:
    router = Router(thompson())
    assert router.shares == {"challenger": 0.5, "champion": 0.5}  # before any posterior: the configured shares
    users = range(20_000)
    before = [router.assign(u) for u in users]
    assert [router.with_shares({"champion": 0.5, "challenger": 0.5}).assign(u) for u in users] == before
    moved = router.with_shares({"champion": 0.3, "challenger": 0.7})
    after = [moved.assign(u) for u in users]
    # alias order: challenger [0, share), champion after it; growing the challenger moves only u in [0.5, 0.7)
    changed = {u for u in users if before[u] != after[u]}
    assert changed == {u for u in users if 0.5 <= stable_unit(f"{SALT}:{u}") < 0.7}
    assert all(after[u] == "challenger" for u in changed)
    assert len(changed) / len(users) == pytest.approx(0.2, abs=0.01)
    assert router.shares == {"challenger": 0.5, "champion": 0.5}  # with_shares left the original alone


def test_update_shares_is_refused_where_it_would_break_the_experiment() -> None:
    with pytest.raises(ValueError, match="allocates by hash"):
        Router(Experiment(name="x", salt="s", variants={"champion": 0.5, "challenger": 0.5})).update_shares(
            {"champion": 0.4, "challenger": 0.6})
    router = Router(thompson())
    with pytest.raises(ValueError, match="variants are"):
        router.update_shares({"champion": 1.0})
    with pytest.raises(ValueError, match="sum to 1"):
        router.update_shares({"champion": 0.5, "challenger": 0.6})


def test_assignments_stay_valid_while_the_shares_change() -> None:
    router, errors, seen = Router(thompson()), [], Counter[str]()
    done = threading.Event()

    def requests() -> None:
        try:
            while not done.is_set():
                seen.update(router.assign(u) for u in range(500))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=requests) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(300):
        share = (i % 10) / 10
        router.update_shares({"champion": share, "challenger": 1 - share})
    done.set()
    for t in threads:
        t.join()
    assert errors == [] and set(seen) <= {"champion", "challenger"}


# -- the refresher -------------------------------------------------------------------------------------------------
def test_refresher_moves_the_shares_towards_the_variant_that_clicks(store: BanditStore, tmp_path: Path) -> None:
    router = Router(thompson())
    refresher = BanditRefresher(store, router)
    assert refresher.refresh() == {"challenger": 0.5, "champion": 0.5}  # nothing stored: configured shares
    store.write("bandit", {"champion": (5000, 100), "challenger": (5000, 250)})
    shares = refresher.refresh()
    assert shares["challenger"] == pytest.approx(0.95) and shares["champion"] == pytest.approx(0.05)  # floor
    assert router.shares == pytest.approx(shares)
    # a second worker, and a restarted one, reading the same store compute the very same shares and users
    url = store.url.render_as_string(hide_password=False)
    worker = Router(thompson())
    BanditRefresher(BanditStore(url), worker).refresh()
    store.close()
    restarted = Router(thompson())
    assert restarted.shares != router.shares  # a fresh process starts from the configured shares ...
    BanditRefresher(BanditStore(url), restarted).refresh()
    assert worker.shares == restarted.shares == router.shares  # ... and reads its way back
    users = range(5000)
    served = [router.assign(u) for u in users]
    assert [worker.assign(u) for u in users] == [restarted.assign(u) for u in users] == served
    # the posterior keeps moving: the champion catches up, and the shares follow
    store.write("bandit", {"champion": (20_000, 1200), "challenger": (6000, 300)})
    assert refresher.refresh()["champion"] > 0.9


def test_a_variant_without_rows_has_the_prior_and_a_hash_experiment_is_left_alone(store: BanditStore) -> None:
    store.write("bandit", {"challenger": (50, 5)})
    shares = BanditRefresher(store, Router(thompson())).refresh()
    assert 0.05 <= shares["champion"] <= 0.95 and sum(shares.values()) == pytest.approx(1)
    hashed = Router(Experiment(name="bandit", salt=SALT, variants={"champion": 0.9, "challenger": 0.1}))
    assert BanditRefresher(store, hashed).refresh() == {"challenger": 0.1, "champion": 0.9}


DAYS = 14


def test_closed_loop_the_bandit_sees_its_rewards(store: BanditStore) -> None:
    """Serve, count, store, refresh: the better variant wins the traffic, the worse one keeps the floor."""
    router, rng = Router(thompson()), np.random.default_rng(5)
    refresher = BanditRefresher(store, router)
    ctr = {"champion": 0.03, "challenger": 0.045}
    totals = dict.fromkeys(ctr, (0, 0))
    history = []
    for day in range(DAYS):
        served = Counter(router.assign(u) for u in range(day * 1000, (day + 1) * 1000))
        for variant, n in served.items():
            impressions, clicks = totals[variant]
            totals[variant] = (impressions + n, clicks + int(rng.binomial(n, ctr[variant])))
        store.write("bandit", totals)
        history.append(refresher.refresh()["challenger"])
    print("challenger share by day:", [round(s, 3) for s in history])
    assert history[0] < 0.9 < history[-1], history
    assert totals["champion"][0] > 0.05 * 1000 * DAYS  # the floor kept it explored


def test_start_refreshes_in_the_background(store: BanditStore, wait_until: Callable[..., None]) -> None:
    router = Router(thompson())
    refresher = BanditRefresher(store, router)
    store.write("bandit", {"champion": (5000, 100), "challenger": (5000, 250)})
    refresher.start(interval_s=0.05)
    try:
        wait_until(lambda: router.shares["challenger"] > 0.9)
        store.write("bandit", {"champion": (50_000, 5000), "challenger": (5000, 250)})
        wait_until(lambda: router.shares["champion"] > 0.9)
    finally:
        refresher.stop()
