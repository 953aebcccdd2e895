"""The model manager's swap decision as a table: (what is loaded, what the registry says) -> what to do per alias.

Availability first, as TF-Serving's availability-preserving policy: nothing that serves is unloaded because the
registry cannot be read, and the champion is never unloaded at all (the service would answer 503).
"""

from __future__ import annotations

import pytest

from recsys.schema import CHALLENGER, CHAMPION
from recsys.serving.models import UNREACHABLE, Step, Wanted, plan_refresh

# (name, loaded alias -> version, registry alias -> wanted, expected (alias, action, version) per alias)
CASES: list[tuple[str, dict[str, int | None], dict[str, Wanted], list[tuple[str, str, int | None]]]] = [
    ("cold start loads both", {}, {CHAMPION: 3, CHALLENGER: 4},
     [(CHAMPION, "load", 3), (CHALLENGER, "load", 4)]),
    ("nothing registered yet", {}, {CHAMPION: None, CHALLENGER: None},
     [(CHAMPION, "none", None), (CHALLENGER, "none", None)]),
    ("up to date keeps", {CHAMPION: 3, CHALLENGER: 4}, {CHAMPION: 3, CHALLENGER: 4},
     [(CHAMPION, "keep", 3), (CHALLENGER, "keep", 4)]),
    ("promotion: new champion, challenger alias gone", {CHAMPION: 3, CHALLENGER: 4}, {CHAMPION: 4, CHALLENGER: None},
     [(CHAMPION, "load", 4), (CHALLENGER, "drop", 4)]),
    ("rollback loads the older version", {CHAMPION: 4}, {CHAMPION: 3, CHALLENGER: None},
     [(CHAMPION, "load", 3), (CHALLENGER, "none", None)]),
    ("registry down keeps what serves", {CHAMPION: 3, CHALLENGER: 4},
     {CHAMPION: UNREACHABLE, CHALLENGER: UNREACHABLE}, [(CHAMPION, "keep", 3), (CHALLENGER, "keep", 4)]),
    ("registry down with nothing loaded does nothing", {}, {CHAMPION: UNREACHABLE, CHALLENGER: UNREACHABLE},
     [(CHAMPION, "none", None), (CHALLENGER, "none", None)]),
    ("a champion alias that disappears is never unloaded", {CHAMPION: 3}, {CHAMPION: None, CHALLENGER: None},
     [(CHAMPION, "keep", 3), (CHALLENGER, "none", None)]),
    ("a baked bundle without a version is replaced by the registry's", {CHAMPION: None}, {CHAMPION: 5},
     [(CHAMPION, "load", 5)]),
    ("a baked bundle stays when the registry has no champion", {CHAMPION: None}, {CHAMPION: None},
     [(CHAMPION, "keep", None)]),
    ("one alias unreachable, the other moves", {CHAMPION: 3, CHALLENGER: 4}, {CHAMPION: UNREACHABLE, CHALLENGER: 5},
     [(CHAMPION, "keep", 3), (CHALLENGER, "load", 5)]),
]


@pytest.mark.parametrize(("loaded", "wanted", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(loaded: dict[str, int | None], wanted: dict[str, Wanted],
              expected: list[tuple[str, str, int | None]]) -> None:
    steps = plan_refresh(loaded, wanted)
    assert [(s.alias, s.action, s.version) for s in steps] == expected
    assert all(isinstance(s, Step) and s.reason for s in steps)


def test_the_plan_reads_nothing_but_its_arguments() -> None:
    loaded = {CHAMPION: 3}
    plan_refresh(loaded, {CHAMPION: 4})
    assert loaded == {CHAMPION: 3}
