"""The promotion gate as a table of cases on synthetic per-user evaluations with known differences."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recsys.evaluation.protocols import EvalResult
from recsys.registry.gate import GateConfig, ModelEvaluation, decide

N_USERS, CUTS = 200, (12, 13)
KEYS = np.tile(np.arange(N_USERS), len(CUTS))
CUT = np.repeat(CUTS, N_USERS)
COLD = KEYS % 4 == 0
TAIL = KEYS % 2 == 0
"""Users with long-tail positives: they also get a 'long_tail' row."""
# Per-user base NDCG, Recall and long-tail NDCG shared by every model; inside (0.3, 0.7) so that
# shifts and noise never leave [0, 1] and no clipping blurs the planted differences.
BASE = np.random.default_rng(0).uniform(0.3, 0.7, size=(3, KEYS.size))
FAST = {"n_resamples": 500}


def evaluation(name: str, *, shift: float = 0.0, cold_shift: float = 0.0, recall_shift: float = 0.0,
               noise: float = 0.05, seed: int = 1, coverage: float = 0.4, latency: float | None = 20.0,
               schema_ok: bool = True, key_offset: int = 0, cold: np.ndarray = COLD) -> ModelEvaluation:
    """Base + planted shift + centred noise: the mean difference of two models is exactly their shift gap."""
    eps = np.random.default_rng(seed).normal(0.0, noise, size=BASE.shape)
    eps -= eps.mean(axis=1, keepdims=True)
    ndcg = BASE[0] + eps[0] + shift + cold_shift * cold
    recall = BASE[1] + eps[1] + recall_shift
    tail = BASE[2] + eps[2] + shift + cold_shift * cold
    keys = KEYS + key_offset
    main = pd.DataFrame({"key": keys, "cut": CUT, "slice": "main", "cold": cold, "ndcg@10": ndcg, "recall@10": recall})
    long_tail = pd.DataFrame({"key": keys, "cut": CUT, "slice": "long_tail", "cold": cold, "ndcg@10": tail,
                              "recall@10": recall})[TAIL]
    return ModelEvaluation(name, pd.concat([main, long_tail], ignore_index=True), coverage, latency, schema_ok)


@dataclass(frozen=True, kw_only=True)
class Case:
    challenger: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] | None = field(default_factory=dict)
    """None: no champion yet (first-model mode)."""
    generator: dict[str, Any] | None = None
    cfg: dict[str, Any] = field(default_factory=dict)
    verdict: str = "promote"
    failed: frozenset[str] = frozenset()
    skipped: frozenset[str] = frozenset({"recall"})
    reason: str = "all checks passed"


WIN: dict[str, Any] = {"shift": 0.03}
FIRST_SKIPPED = frozenset({"recall", "slice_warm", "slice_cold", "slice_long_tail", "coverage"})
ALL_SLICES = frozenset({"slice_warm", "slice_cold", "slice_long_tail"})

CASES = [
    pytest.param(Case(challenger=WIN), id="clear-win"),
    pytest.param(Case(verdict="reject", failed=frozenset({"ndcg"}), reason="NDCG@10"), id="tie-rejected-at-margin-0"),
    pytest.param(Case(challenger={"shift": -0.05}, verdict="reject", failed=frozenset({"ndcg"}) | ALL_SLICES,
                      reason="NDCG@10"), id="clear-loss"),
    pytest.param(Case(challenger=WIN, cfg={"margin": 0.05}, verdict="reject", failed=frozenset({"ndcg"}),
                      reason="below +0.0500"), id="win-below-margin"),
    pytest.param(Case(challenger={"shift": 0.04, "cold_shift": -0.09}, verdict="reject",
                      failed=frozenset({"slice_cold"}), reason="slice cold"), id="cold-slice-drop"),
    pytest.param(Case(challenger={**WIN, "cold": np.zeros_like(COLD)}, champion={"cold": np.zeros_like(COLD)},
                      skipped=frozenset({"recall", "slice_cold"})), id="no-cold-users-skips-slice"),
    pytest.param(Case(challenger={**WIN, "coverage": 0.35}, verdict="reject", failed=frozenset({"coverage"}),
                      reason="coverage dropped by 0.0500"), id="coverage-drop"),
    pytest.param(Case(challenger={**WIN, "coverage": 0.39}), id="coverage-drop-within-tolerance"),
    pytest.param(Case(challenger={**WIN, "latency": 80.0}, verdict="reject", failed=frozenset({"latency"}),
                      reason="80.0 ms"), id="latency-over-budget"),
    pytest.param(Case(challenger={**WIN, "latency": None}, verdict="reject", failed=frozenset({"latency"}),
                      reason="not measured"), id="latency-missing"),
    pytest.param(Case(challenger={**WIN, "schema_ok": False}, verdict="reject", failed=frozenset({"schema"}),
                      reason="schema"), id="schema-failed"),
    pytest.param(Case(challenger={**WIN, "recall_shift": -0.03}, cfg={"recall_margin": 0.0}, verdict="reject",
                      failed=frozenset({"recall"}), skipped=frozenset(), reason="Recall@10"), id="recall-worse"),
    pytest.param(Case(challenger={**WIN, "recall_shift": 0.03}, cfg={"recall_margin": 0.0}, skipped=frozenset()),
                 id="recall-better"),
    pytest.param(Case(challenger={"shift": -0.002, "noise": 0.02}, champion=None,
                      generator={"noise": 0.02, "seed": 3, "coverage": 0.9}, skipped=FIRST_SKIPPED),
                 id="first-model-within-tolerance"),
    pytest.param(Case(challenger={"shift": -0.05}, champion=None, generator={"seed": 3}, verdict="reject",
                      failed=frozenset({"ndcg"}), skipped=FIRST_SKIPPED, reason="best generator 'generator'"),
                 id="first-model-much-worse"),
]


def build(case: Case) -> tuple[ModelEvaluation, ModelEvaluation | None, ModelEvaluation | None, GateConfig]:
    challenger = evaluation("challenger", seed=2, **case.challenger)
    champion = None if case.champion is None else evaluation("champion", **case.champion)
    generator = None if case.generator is None else evaluation("generator", **case.generator)
    return challenger, champion, generator, GateConfig(**{**FAST, **case.cfg})


@pytest.mark.parametrize("case", CASES)
def test_gate_table(case: Case) -> None:
    challenger, champion, generator, cfg = build(case)
    decision = decide(challenger, champion, cfg, generator)
    assert decision.verdict == case.verdict
    assert decision.passed is (case.verdict == "promote")
    assert decision.mode == ("first_model" if champion is None else "vs_champion")
    assert decision.reference == ("generator" if champion is None else "champion")
    assert {n for n, c in decision.checks.items() if not c.passed} == case.failed
    assert {n for n, c in decision.checks.items() if c.skipped} == case.skipped
    # one reason per failed check, or a single summary line when promoted
    assert len(decision.reasons) == max(1, len(case.failed))
    assert any(case.reason in r for r in decision.reasons), decision.reasons


def _main_rows(evaluation_: ModelEvaluation, slice_: str = "main") -> pd.DataFrame:
    return evaluation_.per_user[evaluation_.per_user["slice"] == slice_]


def _duplicated(e: ModelEvaluation) -> ModelEvaluation:
    return replace(e, per_user=pd.concat([e.per_user, e.per_user]))


def _without_recall(e: ModelEvaluation) -> ModelEvaluation:
    return replace(e, per_user=e.per_user.drop(columns="recall@10"))


def _flip_cold(e: ModelEvaluation) -> ModelEvaluation:
    return replace(e, per_user=e.per_user.assign(cold=~e.per_user["cold"]))


Inputs = tuple[ModelEvaluation, ModelEvaluation | None, ModelEvaluation | None, GateConfig]
ERRORS: list[Any] = [
    pytest.param(lambda: (evaluation("challenger"), None, None, GateConfig(**FAST)), "best_generator",
                 id="first-model-without-generator"),
    pytest.param(lambda: (evaluation("challenger"), evaluation("champion", key_offset=10_000), None,
                          GateConfig(**FAST)), "'challenger' and 'champion' share 0", id="disjoint-users"),
    pytest.param(lambda: (_duplicated(evaluation("challenger")), evaluation("champion"), None, GateConfig(**FAST)),
                 "duplicate", id="duplicate-rows"),
    pytest.param(lambda: (_without_recall(evaluation("challenger")), evaluation("champion"), None,
                          GateConfig(recall_margin=0.0, **FAST)), "recall@10", id="recall-column-missing"),
    pytest.param(lambda: (_flip_cold(evaluation("challenger")), evaluation("champion"), None, GateConfig(**FAST)),
                 "cold", id="different-windows"),
]


@pytest.mark.parametrize(("inputs", "message"), ERRORS)
def test_gate_rejects_invalid_inputs(inputs: Callable[[], Inputs], message: str) -> None:
    challenger, champion, generator, cfg = inputs()
    with pytest.raises(ValueError, match=message):
        decide(challenger, champion, cfg, generator)


def test_only_common_users_count() -> None:
    full = evaluation("champion")
    champion = replace(full, per_user=full.per_user[full.per_user["key"] >= N_USERS // 2])
    decision = decide(evaluation("challenger", seed=2, **WIN), champion, GateConfig(**FAST))
    assert decision.passed
    assert decision.checks["ndcg"].n == len(CUTS) * N_USERS // 2


def test_decision_is_deterministic_and_ignores_row_order() -> None:
    challenger, champion = evaluation("challenger", seed=2, shift=0.005), evaluation("champion")
    cfg = GateConfig(**FAST)
    shuffled = replace(challenger, per_user=challenger.per_user.sample(frac=1.0, random_state=7))
    first = decide(challenger, champion, cfg).to_dict()
    assert decide(challenger, champion, cfg).to_dict() == first
    assert decide(shuffled, champion, cfg).to_dict() == first
    assert decide(challenger, champion, cfg.model_copy(update={"seed": 1})).to_dict() != first


@pytest.mark.parametrize("coverage", [0.35, float("nan")], ids=["failed-checks", "nan-coverage"])
def test_to_dict_is_strict_json(coverage: float) -> None:
    challenger = evaluation("challenger", seed=2, coverage=coverage, latency=None)
    payload = decide(challenger, evaluation("champion"), GateConfig(**FAST)).to_dict()
    text = json.dumps(payload, allow_nan=False)
    assert json.loads(text)["verdict"] == "reject"
    assert payload["checks"]["latency"]["value"] is None


def test_from_eval_picks_one_model() -> None:
    rows = [evaluation(m).per_user.assign(model=m) for m in ("ranker", "ease")]
    result = EvalResult("temporal_backtest", pd.concat(rows, ignore_index=True),
                        pd.DataFrame({"coverage": [0.4, 0.3]}, index=["ranker", "ease"]))
    picked = ModelEvaluation.from_eval(result, "ease", latency_p95_ms=12.0)
    assert picked.name == "ease" and picked.coverage == 0.3 and picked.latency_p95_ms == 12.0
    assert "model" not in picked.per_user.columns
    assert len(picked.per_user) == len(rows[1])
    with pytest.raises(ValueError, match="'popularity' is not in the evaluation"):
        ModelEvaluation.from_eval(result, "popularity")


def test_config_and_evaluation_validate() -> None:
    with pytest.raises(ValidationError):
        GateConfig(margn=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="ndcg@10"):
        ModelEvaluation("x", _main_rows(evaluation("x")).drop(columns="ndcg@10"), 0.4)
