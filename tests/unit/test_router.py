"""A/B routing: stable hash assignment, traffic shares, shadow share, champion fallback, config loading, overlap@k."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from recsys.serving.router import (
    CHAMPION,
    Experiment,
    ExperimentError,
    NoModelAvailableError,
    Route,
    Router,
    default_experiment,
    overlap_at_k,
    stable_unit,
)
from recsys.settings import ServingSettings

REPO = Path(__file__).resolve().parents[2]
SALT = "ab-2026-11"


def three_way(**kw: Any) -> Experiment:
    # sorted alias order: challenger [0, 0.2), champion [0.2, 0.8), explore [0.8, 1)
    return Experiment(name="three-way", salt=SALT, variants={"champion": 0.6, "challenger": 0.2, "explore": 0.2},
                      **kw)


def by_hand(key: str) -> float:
    """The documented hash, written out independently of the module."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


# user -> (u of f"{SALT}:{user}", expected variant of three_way()), computed once from the definition
GOLDEN = {
    0: (0.788651996259967, "champion"),
    1: (0.7499871059239336, "champion"),
    2: (0.157870162890044, "challenger"),
    3: (0.40852669038953043, "champion"),
    42: (0.21485645514289153, "champion"),
    943: (0.18267768578414978, "challenger"),
    2**31 - 1: (0.825230373435726, "explore"),
}


def test_assignment_matches_the_documented_hash() -> None:
    router = Router(three_way())
    for user, (u, variant) in GOLDEN.items():
        assert stable_unit(f"{SALT}:{user}") == pytest.approx(u, abs=1e-15) == by_hand(f"{SALT}:{user}")
        assert router.assign(user) == variant, user


def test_same_user_same_variant_across_calls_and_instances() -> None:
    a, b = Router(three_way()), Router(three_way())
    for user in range(2000):
        first = a.assign(user)
        assert a.assign(user) == first == b.assign(user)
        assert a.in_shadow(user) == b.in_shadow(user)


def test_same_assignment_in_another_process_with_another_hash_seed() -> None:
    code = ("import json; from recsys.serving.router import Experiment, Router; "
            f"r = Router(Experiment.model_validate_json({three_way().model_dump_json()!r})); "
            f"print(json.dumps([r.assign(u) for u in {list(GOLDEN)}]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=60)
    assert json.loads(out.stdout) == [variant for _, variant in GOLDEN.values()]


@pytest.mark.parametrize(("variants", "tol"), [
    ({"champion": 0.9, "challenger": 0.1}, 0.005),
    ({"champion": 0.5, "challenger": 0.5}, 0.006),
    ({"champion": 0.6, "challenger": 0.2, "explore": 0.2}, 0.006),
    ({"champion": 0.99, "challenger": 0.01}, 0.002),
])
def test_shares_are_respected_on_100k_users(variants: dict[str, float], tol: float) -> None:
    router = Router(Experiment(name="x", salt="share-test", variants=variants))
    n = 100_000
    counts = Counter(router.assign(u) for u in range(n))
    assert set(counts) == set(variants)
    for alias, share in variants.items():
        assert counts[alias] / n == pytest.approx(share, abs=tol), (alias, counts[alias])


def test_zero_share_variant_gets_nobody() -> None:
    router = Router(Experiment(name="x", salt="s", variants={"champion": 1.0, "challenger": 0.0}))
    assert {router.assign(u) for u in range(5000)} == {"champion"}


def test_default_experiment_is_all_champion_without_shadow() -> None:
    router = Router()
    assert router.experiment == default_experiment()
    assert router.experiment.variants == {CHAMPION: 1.0} and router.experiment.shadow is None
    assert {router.assign(u) for u in range(1000)} == {CHAMPION}
    assert not any(router.in_shadow(u) for u in range(1000))


def test_a_different_salt_reassigns_users() -> None:
    variants = {"champion": 0.5, "challenger": 0.5}
    a = Router(Experiment(name="x", salt="salt-a", variants=variants))
    b = Router(Experiment(name="x", salt="salt-b", variants=variants))
    users = range(10_000)
    differ = sum(a.assign(u) != b.assign(u) for u in users) / len(users)
    assert differ == pytest.approx(0.5, abs=0.03)  # independent hashes: half the users move


def test_shadow_share_is_respected_and_independent_of_the_variant() -> None:
    router = Router(Experiment(name="x", salt="shadow-test", variants={"champion": 0.9, "challenger": 0.1},
                               shadow="canary", shadow_share=0.25))
    n = 100_000
    in_shadow = [router.in_shadow(u) for u in range(n)]
    assert sum(in_shadow) / n == pytest.approx(0.25, abs=0.005)
    challenger = [u for u in range(n) if router.assign(u) == "challenger"]
    # a second, independent hash: the challenger's users are shadow-scored at the same rate as everyone
    assert sum(in_shadow[u] for u in challenger) / len(challenger) == pytest.approx(0.25, abs=0.015)


def test_shadow_membership_matches_the_documented_hash() -> None:
    router = Router(three_way(shadow="canary", shadow_share=0.7))
    for user in (0, 1, 5, 42, 2**31 - 1):
        assert router.in_shadow(user) == (by_hand(f"{SALT}:shadow:{user}") < 0.7)
    assert [router.in_shadow(u) for u in (0, 1, 5, 42, 2**31 - 1)] == [False, False, True, True, True]


def test_shadow_share_edges() -> None:
    none = Router(three_way(shadow="canary", shadow_share=0.0))
    everyone = Router(three_way(shadow="canary", shadow_share=1.0))
    assert not any(none.in_shadow(u) for u in range(1000))
    assert all(everyone.in_shadow(u) for u in range(1000))


def test_unloaded_variant_falls_back_to_champion() -> None:
    router = Router(three_way())
    assert router.assign(2) == "challenger"
    assert router.assign(2, available={"champion", "challenger"}) == "challenger"
    assert router.assign(2, available={"champion"}) == "champion"
    assert router.assign(2**31 - 1, available={"champion", "challenger"}) == "champion"
    with pytest.raises(NoModelAvailableError, match="challenger"):
        router.assign(2, available={"explore"})
    with pytest.raises(NoModelAvailableError):
        router.assign(2, available=set())


def test_route_reports_served_assigned_and_shadow() -> None:
    router = Router(three_way(shadow="canary", shadow_share=0.7))
    assert router.route(2**31 - 1) == Route(served="explore", assigned="explore", shadow="canary")
    fell = router.route(2**31 - 1, available={"champion", "canary"})
    assert fell == Route(served="champion", assigned="explore", shadow="canary") and fell.fell_back
    # the shadow is scored only when it has a loaded model, and only for users in the shadow share
    assert router.route(2**31 - 1, available={"champion", "explore"}).shadow is None
    assert router.route(0).shadow is None and not router.route(0).fell_back


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"variants": {"champion": 0.9, "challenger": 0.2}}, "sum to 1"),
    ({"variants": {"champion": 0.5, "challenger": 0.4}}, "sum to 1"),
    ({"variants": {"champion": 1.1, "challenger": -0.1}}, ">= 0"),
    ({"variants": {"champion": float("nan")}}, "finite"),
    ({"variants": {}}, "at least one variant"),
    ({"variants": {"": 1.0}}, "alias"),
    ({"variants": {"champ ion": 1.0}}, "alias"),
    ({"shadow": "champion"}, "also a served variant"),
    ({"shadow": "bad alias!", "shadow_share": 0.1}, "alias"),
    ({"shadow_share": 0.2}, "no shadow alias"),
    ({"shadow": "canary", "shadow_share": 1.5}, "less than or equal to 1"),
    ({"shadow": "canary", "shadow_share": -0.1}, "greater than or equal to 0"),
    ({"name": ""}, "at least 1 character"),
    ({"salt": ""}, "at least 1 character"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
])
def test_invalid_experiments_are_rejected_with_clear_messages(kwargs: dict[str, Any], message: str) -> None:
    data = {"name": "x", "salt": "s", "variants": {"champion": 1.0}, **kwargs}
    with pytest.raises(ValueError, match=message):
        Experiment.model_validate(data)


def test_shares_within_tolerance_are_accepted() -> None:
    exp = Experiment(name="x", salt="s", variants={"champion": 0.7, "challenger": 0.2, "explore": 0.1})
    assert list(exp.variants) == ["challenger", "champion", "explore"]  # sorted: the cut order
    Experiment(name="x", salt="s", variants={"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_from_file_json_and_yaml(tmp_path: Path) -> None:
    spec = {"name": "ab", "salt": SALT, "variants": {"champion": 0.9, "challenger": 0.1}, "shadow": "canary",
            "shadow_share": 0.05}
    js = tmp_path / "exp.json"
    js.write_text(json.dumps(spec))
    yml = tmp_path / "exp.yaml"
    yml.write_text(f"# the November test\nname: ab\nsalt: {SALT}\nvariants:\n  champion: 0.9\n  challenger: 0.1\n"
                   "shadow: canary\nshadow_share: 0.05\n")
    assert Experiment.from_file(js) == Experiment.from_file(str(yml)) == Experiment(**spec)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.json", "{not json", "not valid JSON"),
    ("bad.yaml", "name: [unclosed", "not valid YAML"),
    ("list.yaml", "- a\n- b\n", "expected a mapping"),
    ("sum.yaml", "name: x\nsalt: s\nvariants: {champion: 0.5}\n", "field variants: .*sum to 1"),
    ("extra.json", '{"name": "x", "salt": "s", "color": "red"}', "field color"),
])
def test_from_file_errors_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ExperimentError, match=message) as info:
        Experiment.from_file(path)
    assert str(path) in str(info.value)


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match=r"cannot read experiment file .*nope\.yaml"):
        Experiment.from_file(tmp_path / "nope.yaml")


def test_configured(tmp_path: Path) -> None:
    spec = {"name": "ab", "salt": "s", "variants": {"champion": 0.8, "challenger": 0.2}}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(spec))
    assert Experiment.configured(None, None) == default_experiment()
    assert Experiment.configured(json.dumps(spec), None) == Experiment(**spec)
    assert Experiment.configured(None, path) == Experiment(**spec)
    with pytest.raises(ExperimentError, match="not both"):
        Experiment.configured(json.dumps(spec), path)
    with pytest.raises(ExperimentError, match=r"\$RECSYS_EXPERIMENT: not valid JSON"):
        Experiment.configured("{oops", None)
    with pytest.raises(ExperimentError, match=r"\$RECSYS_EXPERIMENT: field variants"):
        Experiment.configured('{"name": "x", "salt": "s", "variants": {"champion": 2}}', None)


def test_the_settings_read_the_experiment_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_EXPERIMENT_FILE", "")  # empty counts as unset
    monkeypatch.setenv("RECSYS_EXPERIMENT", '{"name": "e", "salt": "s", "variants": {"champion": 1}}')
    settings = ServingSettings()
    assert Experiment.configured(settings.experiment, settings.experiment_file).name == "e"
    monkeypatch.setenv("RECSYS_EXPERIMENT", " ")
    settings = ServingSettings()
    assert Experiment.configured(settings.experiment, settings.experiment_file) == default_experiment()


@pytest.mark.parametrize(("a", "b", "k", "expected"), [
    ([1, 2, 3], [1, 2, 3], 3, 1.0),
    ([1, 2, 3], [3, 2, 1], 3, 1.0),  # order inside the top k does not matter
    ([1, 2, 3], [4, 5, 6], 3, 0.0),
    ([1, 2, 3, 4], [4, 3, 9, 8], 2, 0.0),  # only the first k count
    ([1, 2, 3, 4], [2, 1, 9, 8], 2, 1.0),
    (list(range(10)), [*range(5), *range(100, 105)], 10, 0.5),
    ([1, 2], [1, 2], 10, 0.2),  # short lists still divide by k
    ([], [], 10, 0.0),
    ([1, 1, 2], [1, 3, 4], 3, 1 / 3),  # a repeated item counts once
])
def test_overlap_at_k(a: list[int], b: list[int], k: int, expected: float) -> None:
    assert overlap_at_k(a, b, k) == pytest.approx(expected)
    assert overlap_at_k(b, a, k) == pytest.approx(expected)


def test_overlap_at_k_default_and_bad_k() -> None:
    assert overlap_at_k(list(range(20)), list(range(20))) == 1.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        overlap_at_k([1], [1], 0)
