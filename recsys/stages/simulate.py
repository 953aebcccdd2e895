"""The simulate stage: replay the weeks after the serving champion's cut against a live service.

See :mod:`recsys.experiments.simulator` for what a visit, a click and each drift injection are.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from recsys.experiments.simulator import SimulationConfig, SimulationResult
from recsys.settings import Settings
from recsys.stages.base import SILENT, Reporter, StageError, StageResult


class SimulateParams(BaseModel):
    simulation: SimulationConfig
    wait: float = Field(0.0, ge=0, description="seconds to wait for the service to be up with a champion")


class SimulateResult(StageResult):
    simulation: SimulationResult
    champion_cut: int | None = Field(description="as_of_week of the champion the service reported")


def champion_cut(url: str, wait: float = 0.0) -> int | None:
    """The ``as_of_week`` of the champion ``GET {url}/model`` reports, waiting up to ``wait`` seconds for the service
    to answer with a champion; StageError when it does not."""
    import httpx

    deadline = time.monotonic() + wait
    while True:
        try:
            state = httpx.get(f"{url}/model", timeout=10).raise_for_status().json()
            champion = state.get("models", {}).get("champion")
            problem = None if champion is not None else f"the service at {url} has no champion loaded yet"
        except httpx.HTTPError as exc:
            champion, problem = None, f"cannot reach the service at {url} ({exc}); start it with `recsys serve`"
        if problem is None or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if problem is not None:
        raise StageError(problem)
    cut = champion.get("as_of_week")
    return None if cut is None else int(cut)


def simulate(settings: Settings, params: SimulateParams, *, reporter: Reporter = SILENT) -> SimulateResult:
    """Replay ``from_week..to_week`` (default: from the champion's cut to the last week) against the service."""
    from recsys.experiments.simulator import simulate as run_simulation
    from recsys.stages.inputs import load_raw

    sim = params.simulation
    cut = champion_cut(sim.url, params.wait)
    ml, clock = load_raw(settings)  # the whole download: what users really did after any cut
    from_week = sim.from_week if sim.from_week is not None else cut
    if from_week is None:
        raise StageError("the champion's bundle does not say its training cut; pass --from-week")
    if from_week >= clock.n_weeks:
        raise StageError(f"nothing to replay: the champion was trained on weeks < {from_week} and the data ends "
                         f"with week {clock.n_weeks - 1}; serve a model with an earlier cut or pass --from-week")
    if sim.to_week is not None and sim.to_week < from_week:
        raise StageError(f"--to-week {sim.to_week} is before the first replayed week {from_week}")
    reporter.note(f"replaying weeks {from_week}..{sim.to_week if sim.to_week is not None else clock.n_weeks - 1}"
                  f" against {sim.url} (champion cut {cut})")
    with reporter.progress("simulating", "requests") as track:
        result = run_simulation(ml.interactions, ml.users, clock, sim, from_week, track=track)
    return SimulateResult(simulation=result, champion_cut=cut)
