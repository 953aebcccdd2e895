"""The simulate stage: replay the weeks after the serving champion's cut against a live service.

See :mod:`recsys.experiments.simulator` for what a visit, a click and each drift injection are.
"""

from __future__ import annotations

from pydantic import Field

from recsys.experiments.simulator import SimulationConfig, SimulationResult
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult


class SimulateResult(StageResult):
    simulation: SimulationResult
    champion_cut: int | None = Field(description="as_of_week of the champion the service reported")


def champion_cut(url: str) -> int | None:
    """The ``as_of_week`` of the champion ``GET {url}/model`` reports; StageError when the service is not there."""
    import httpx

    try:
        state = httpx.get(f"{url}/model", timeout=10).raise_for_status().json()
    except httpx.HTTPError as exc:
        raise StageError(f"cannot reach the service at {url} ({exc}); start it with `recsys serve`") from exc
    champion = state.get("models", {}).get("champion")
    if champion is None:
        raise StageError(f"the service at {url} has no champion loaded yet (GET /model)")
    cut = champion.get("as_of_week")
    return None if cut is None else int(cut)


def simulate(settings: Settings, params: SimulationConfig, *, reporter: Reporter = SILENT) -> SimulateResult:
    """Replay ``from_week..to_week`` (default: from the champion's cut to the last week) against ``params.url``."""
    from recsys.experiments.simulator import simulate as run_simulation
    from recsys.stages.inputs import load_raw

    ml, clock = load_raw(settings)  # the whole download: what users really did after any cut
    cut = champion_cut(params.url)
    from_week = params.from_week if params.from_week is not None else cut
    if from_week is None:
        raise StageError("the champion's bundle does not say its training cut; pass --from-week")
    if from_week >= clock.n_weeks:
        raise StageError(f"nothing to replay: the champion was trained on weeks < {from_week} and the data ends "
                         f"with week {clock.n_weeks - 1}; serve a model with an earlier cut or pass --from-week")
    if params.to_week is not None and params.to_week < from_week:
        raise StageError(f"--to-week {params.to_week} is before the first replayed week {from_week}")
    reporter.note(f"replaying weeks {from_week}..{params.to_week if params.to_week is not None else clock.n_weeks - 1}"
                  f" against {params.url} (champion cut {cut})")
    with reporter.progress("simulating", "requests") as track:
        result = run_simulation(ml.interactions, ml.users, clock, params, from_week, track=track)
    return SimulateResult(simulation=result, champion_cut=cut)
