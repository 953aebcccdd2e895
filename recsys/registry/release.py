"""Gate a registered version against the champion on fresh held-out weeks, then act on the verdict.

The evaluation window is the most recent one the data allows, ``[week - H, week)``, where ``week`` is the first
week not yet seen (the replay's "now"). Neither model may have been trained on it: the challenger must be trained
as of ``week - H`` or earlier, and so must the champion's *evaluated* model. A champion that is a refit (trained
on everything up to its promotion, so on part of the window) carries the tag ``evaluated_version``: the version
that passed the gate for it, which is compared instead. Both bundles are pulled from the registry, verified
(sha256s, schema, a smoke test) and scored on the same users; the challenger's recommend() is timed over a batch
of users. :func:`~recsys.registry.gate.decide` gives the verdict, which is written as JSON (locally and on the
challenger's MLflow run) and to the audit log; under the ``auto`` policy a pass promotes, under ``manual`` it waits
for ``recsys registry approve``.

With ``refit``, a passing config is retrained on every week before ``week`` and registered as a new version tagged
``evaluated_version=<challenger>`` (and ``role=refit``); the promotion or approval request then concerns the refit,
while the decision stays recorded on the evaluated version: both models are in the registry and the audit log.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from recsys.config import Settings, TrainConfig
from recsys.data.load import MovieLens
from recsys.data.replay import ReplayClock
from recsys.data.split import LabelWindow, temporal_window
from recsys.evaluation.protocols import RANKER, EvalResult, evaluate_window, list_metrics
from recsys.ranking.recommender import BundleError, Recommender
from recsys.registry.audit import AuditLog
from recsys.registry.gate import NDCG, GateConfig, GateDecision, ModelEvaluation, decide
from recsys.registry.service import Notify, Policy, _client, _get_version, apply_gate_decision, current_champion
from recsys.registry.tracking import (
    LoggedRun,
    RegisteredVersion,
    log_training,
    register,
    scoped_tracking_uri,
    with_retries,
)

logger = logging.getLogger(__name__)

EVALUATED_VERSION_TAG, ROLE_TAG = "evaluated_version", "role"
LATENCY_USERS = 200
"""Users whose single-user recommend() is timed for the latency check."""


@dataclass
class LoadedVersion:
    version: int
    recommender: Recommender
    run_id: str | None
    as_of_week: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class GateRun:
    decision: GateDecision
    outcome: str
    """'promoted', 'pending' or 'rejected by gate'."""
    report: dict[str, Any]
    """Everything the decision was made from and what was done: the JSON that is written and logged."""
    report_path: Path
    refit: RegisteredVersion | None = None


def load_version(name: str, version: int, tracking_uri: str, dst: Path) -> LoadedVersion:
    """Download version ``version``'s bundle from the registry and load it, checking every sha256."""
    client = _client(tracking_uri)
    mv = _get_version(client, name, version)
    with scoped_tracking_uri(tracking_uri):  # models:/ URIs resolve through the global registry URI
        local = Path(with_retries(lambda: mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(dst / f"v{version}"))))
    bundle = bundle_path(local)
    try:
        rec = Recommender.load(bundle)
    except BundleError as exc:
        raise BundleError(f"{name} v{version}: {exc}") from exc
    as_of = rec.manifest.get("as_of_week")
    if not isinstance(as_of, int):
        raise BundleError(f"{name} v{version}: the bundle's manifest has no as_of_week")
    return LoadedVersion(version, rec, mv.run_id, as_of, dict(mv.tags or {}))


def bundle_path(model_dir: Path) -> Path:
    """Where the pyfunc model in ``model_dir`` keeps its ``bundle`` artifact (from its MLmodel file)."""
    from mlflow.models import Model

    try:
        flavor = Model.load(str(model_dir / "MLmodel")).flavors["python_function"]
        return model_dir / flavor["artifacts"]["bundle"]["path"]
    except (OSError, KeyError) as exc:
        raise BundleError(f"{model_dir}: not a recsys pyfunc model (no 'bundle' artifact in its MLmodel)") from exc


def schema_problems(rec: Recommender, known_users: np.ndarray, n: int = 10) -> list[str]:
    """Smoke-test a bundle the way serving will use it; an empty list means it passed.

    Known and unknown users must each get ``n`` distinct catalog items with finite, descending scores, and the
    feature builder must produce exactly the booster's features (score_batch checks that).
    """
    problems: list[str] = []
    catalog = set(next(iter(rec.stage1.generators.values())).item_ids_.tolist())
    unknown = np.array([-1, 10**9], dtype=np.int64)
    try:
        lists = rec.recommend_batch(np.concatenate([known_users[:8], unknown]), n)
    except Exception as exc:  # a broken bundle can fail in any way: report it, do not crash the gate
        return [f"recommend() failed: {type(exc).__name__}: {exc}"]
    for user, recs in zip(np.concatenate([known_users[:8], unknown]), lists, strict=True):
        items = [r.item_id for r in recs]
        scores = np.array([r.score for r in recs])
        if len(items) != n or len(set(items)) != n:
            problems.append(f"user {user}: {len(set(items))} distinct items instead of {n}")
        if not np.isfinite(scores).all() or (np.diff(scores) > 1e-9).any():
            problems.append(f"user {user}: scores are not finite and descending")
        if not set(items) <= catalog:
            problems.append(f"user {user}: items outside the catalog")
    return problems


def recommend_latency(rec: Recommender, users: np.ndarray, n: int = 10) -> dict[str, float]:
    """Wall time of single-user recommend() calls, one per user, after a short warm-up (milliseconds)."""
    for user in users[:5]:
        rec.recommend(int(user), n)
    times = np.empty(len(users))
    for i, user in enumerate(users):
        t0 = time.perf_counter()
        rec.recommend(int(user), n)
        times[i] = time.perf_counter() - t0
    ms = times * 1000
    return {"n": len(users), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def _evaluate(rec: Recommender, window: LabelWindow, ml: MovieLens, week: int) -> EvalResult:
    per_user, lists = evaluate_window(rec, window, ml.users, cut=week)
    return EvalResult("gate", per_user, list_metrics([lists], len(ml.items)), {}, {"window": window.name})


def _latency_users(window: LabelWindow, seed: int) -> np.ndarray:
    users = window.users
    rng = np.random.default_rng(seed)
    return rng.choice(users, size=min(LATENCY_USERS, len(users)), replace=False)


def compared_version(name: str, champion: int, tracking_uri: str) -> int:
    """The version whose evaluation stands for the champion: its ``evaluated_version`` tag, else itself."""
    mv = _get_version(_client(tracking_uri), name, champion)
    tag = (mv.tags or {}).get(EVALUATED_VERSION_TAG)
    return int(tag) if tag else champion


def evaluation_window(ml: MovieLens, clock: ReplayClock, week: int, horizon: int) -> LabelWindow:
    """The held-out window ``[week - horizon, week)``; ValueError when the data cannot give it."""
    if not 1 <= week <= clock.n_weeks:
        raise ValueError(f"week {week} is out of range: the data has weeks 0..{clock.n_weeks - 1}, so 'now' is "
                         f"1..{clock.n_weeks}")
    if week - horizon < 1:
        raise ValueError(f"week {week} leaves no {horizon}-week evaluation window with history before it")
    return temporal_window(ml.interactions, clock, week - horizon, horizon)


def _require_held_out(label: str, loaded: LoadedVersion, start: int, week: int) -> None:
    if loaded.as_of_week > start:
        raise ValueError(f"{label} v{loaded.version} was trained on weeks < {loaded.as_of_week}, which overlaps the "
                         f"evaluation window [{start}, {week}); gate a model trained as of week {start} or "
                         f"earlier (recsys train --as-of-week {start})")


def run_gate(name: str, version: int, *, ml: MovieLens, clock: ReplayClock, week: int, horizon: int,
             gate_cfg: GateConfig, policy: Policy, audit: AuditLog, tracking_uri: str, settings: Settings,
             actor: str | None = None, notify: Notify | None = None, refit: bool = False,
             progress: Callable[[Iterable[int]], Iterable[int]] = lambda x: x) -> GateRun:
    """Gate ``version`` (see the module docstring) and act on the verdict under ``policy``."""
    window = evaluation_window(ml, clock, week, horizon)
    start = week - horizon
    champion = current_champion(name, tracking_uri)
    if champion == version:
        raise ValueError(f"version {version} of {name!r} is already the champion")
    compared = None if champion is None else compared_version(name, champion, tracking_uri)
    if compared == version:
        raise ValueError(f"version {version} of {name!r} is the evaluated model of the champion v{champion}")
    with tempfile.TemporaryDirectory(prefix="recsys-gate-") as tmp:
        challenger = load_version(name, version, tracking_uri, Path(tmp))
        _require_held_out("challenger", challenger, start, week)
        reference: LoadedVersion | None = None
        if compared is not None:
            reference = load_version(name, compared, tracking_uri, Path(tmp))
            _require_held_out(f"the champion v{champion}'s evaluated model", reference, start, week)

        t0 = time.perf_counter()
        result = _evaluate(challenger.recommender, window, ml, week)
        known = window.users[~window.cold_mask(window.users)]
        problems = schema_problems(challenger.recommender, known)
        latency = recommend_latency(challenger.recommender, _latency_users(window, gate_cfg.seed))
        ch_eval = ModelEvaluation.from_eval(result, RANKER, latency["p95_ms"], schema_ok=not problems)
        ch_eval = _renamed(ch_eval, f"v{version}")
        best = result.best_baseline()
        best_eval = ModelEvaluation.from_eval(result, best)
        ref_eval = None
        if reference is not None:
            ref_result = _evaluate(reference.recommender, window, ml, week)
            ref_eval = _renamed(ModelEvaluation.from_eval(ref_result, RANKER), f"v{reference.version}")
        decision = decide(ch_eval, ref_eval, gate_cfg, best_generator=best_eval)
        eval_s = time.perf_counter() - t0

    report: dict[str, Any] = {
        "model": name, "challenger": {"version": version, "run_id": challenger.run_id,
                                      "as_of_week": challenger.as_of_week},
        "champion": None if reference is None else {"version": champion, "compared_version": reference.version,
                                                    "run_id": reference.run_id, "as_of_week": reference.as_of_week},
        "best_generator": best, "window": {"name": window.name, "start_week": start, "end_week": week,
                                            "users": len(window.users),
                                            "cold_users": int(window.cold_mask(window.users).sum())},
        "means": _means(ch_eval, ref_eval, best_eval), "latency": latency, "schema_problems": problems,
        "gate_config": gate_cfg.model_dump(mode="json"), "policy": policy, "decision": decision.to_dict(),
        "seconds": round(eval_s, 2), "decided_at": datetime.now(UTC).isoformat(),
    }
    refit_version = None
    if decision.passed and refit:
        refit_version = refit_config(challenger, ml, clock, week, settings, tracking_uri, name, audit, progress)
        report["refit"] = {"version": refit_version.version, "as_of_week": week, "run_key": refit_version.run_key}
    outcome = apply_gate_decision(name, version, decision, policy=policy, audit=audit, tracking_uri=tracking_uri,
                                  actor=actor, notify=notify,
                                  act_on=None if refit_version is None else refit_version.version)
    report["outcome"] = outcome
    path = _write_report(report, settings, name, version)
    run_id = challenger.run_id
    if run_id:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        with_retries(lambda: client.log_dict(run_id, report, f"gate/{path.name}"))
    return GateRun(decision, outcome, report, path, refit_version)


def _renamed(ev: ModelEvaluation, name: str) -> ModelEvaluation:
    return ModelEvaluation(name, ev.per_user, ev.coverage, ev.latency_p95_ms, ev.schema_ok)


def _means(*evals: ModelEvaluation | None) -> dict[str, dict[str, float]]:
    out = {}
    for ev in evals:
        if ev is None:
            continue
        main = ev.per_user[ev.per_user["slice"] == "main"]
        cold = main["cold"].astype(bool)
        out[ev.name] = {"ndcg@10": float(main[NDCG].mean()), "ndcg@10_warm": float(main.loc[~cold, NDCG].mean()),
                        "ndcg@10_cold": float(main.loc[cold, NDCG].mean()), "coverage": ev.coverage}
    return out


def _write_report(report: dict[str, Any], settings: Settings, name: str, version: int) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = settings.var_dir / "registry" / "decisions" / f"{name}-v{version}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    return path


def refit_config(evaluated: LoadedVersion, ml: MovieLens, clock: ReplayClock, week: int, settings: Settings,
                 tracking_uri: str, name: str, audit: AuditLog,
                 progress: Callable[[Iterable[int]], Iterable[int]] = lambda x: x) -> RegisteredVersion:
    """Retrain the evaluated version's config on every week before ``week`` and register it as the refit."""
    from recsys.ranking.train import train_recommender

    cfg = TrainConfig.model_validate(evaluated.recommender.manifest["params"])
    result = train_recommender(ml, clock, week, cfg, progress=progress)
    bundle = settings.models_dir / f"week={week:02d}"
    result.recommender.save(bundle, extra={"evaluated_version": evaluated.version})
    logged: LoggedRun = log_training(result, bundle, tracking_uri=tracking_uri,
                                     tags={ROLE_TAG: "refit", EVALUATED_VERSION_TAG: str(evaluated.version)})
    registered = register(logged, name, tracking_uri=tracking_uri, audit=audit,
                          version_tags={ROLE_TAG: "refit", EVALUATED_VERSION_TAG: str(evaluated.version)})
    logger.info("refit of %s v%d as of week %d registered as v%d", name, evaluated.version, week,
                registered.version)
    return registered
