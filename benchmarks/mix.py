"""The request mix every serving benchmark sends: 80 % known users (ML-100K ids 1..943, answered from the Bento's
precomputed top-100), 20 % unknown users with a random sign-up profile (ranked per request), n = 10.

Unknown users get a fresh profile on every request (in the Lua script for wrk, in :func:`body_factory` for the
open-loop client), so repeating the mix never replays a profile: the service caches answers per profile, and a
replayed one would measure that cache instead of the ranking. The same seed gives two servers the same requests.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

KNOWN_USERS = (1, 943)
KNOWN_SHARE = 0.8
N = 10
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
               "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
               "retired", "salesman", "scientist", "student", "technician", "writer")
DESCRIPTION = {"known_share": KNOWN_SHARE, "known_users": list(KNOWN_USERS), "n": N,
               "unknown": ("ids >= 10,000,000, each request with a fresh random profile (age 16-70, gender, "
                           "occupation, 5-digit zip): no replayed profiles")}


def profile(rng: random.Random) -> dict[str, Any]:
    return {"age": rng.randint(16, 70), "gender": rng.choice("MF"), "occupation": rng.choice(OCCUPATIONS),
            "zip": f"{rng.randint(1000, 99999):05d}"}


def request_mix(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` requests in the service's format: known users drawn uniformly, the rest unknown with a profile."""
    rng = random.Random(seed)  # nosec B311: seeded load mix, not security
    return [{"user_id": rng.randint(*KNOWN_USERS), "n": N} if rng.random() < KNOWN_SHARE
            else {"user_id": 10_000_000 + i, "n": N, "profile": profile(rng)} for i in range(count)]


def parity_mix(count: int, seed: int) -> list[dict[str, Any]]:
    """Requests that cover every answer path: :func:`request_mix` (precomputed known users, ranked unknown ones),
    with every third known user excluding three items (the full two-stage ranking of a known user) and some n."""
    rng = random.Random(seed)  # nosec B311: seeded load mix, not security
    mix = request_mix(count, seed)
    for i, req in enumerate(mix):
        if "profile" not in req and i % 3 == 0:
            req["exclude"] = rng.sample(range(1, 1683), 3)
        req["n"] = rng.choice((1, 5, 10, 50, 100))
    return mix


def bento_body(req: dict[str, Any]) -> dict[str, Any]:
    """``POST /predict`` of the Bento (and of the floor)."""
    return req


def mlflow_body(req: dict[str, Any]) -> dict[str, Any]:
    """``POST /invocations`` of ``mlflow models serve``: one dataframe record with the profile's columns."""
    return {"dataframe_records": [{"user_id": req["user_id"], "n": req["n"], **(req.get("profile") or {})}]}


BODY: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"bento": bento_body, "mlflow": mlflow_body}
"""Body format (the Lua script's second argument) -> how a request of the mix is posted in it."""


def write_bodies(mix: list[dict[str, Any]], body_format: str, path: Path) -> Path:
    """The Lua script's bodies file: one known user's body per line, or ``@USER_ID N`` for an unknown user (the
    script draws a fresh profile for each such request)."""
    path.write_text("".join(f"@{r['user_id']} {r['n']}\n" if "profile" in r else json.dumps(BODY[body_format](r)) + "\n"
                            for r in mix))
    return path


def body_factory(mix: list[dict[str, Any]], body_format: str, seed: int) -> Callable[[], dict[str, Any]]:
    """Bodies for the open-loop client: the mix in a cycle from a random offset, each unknown user with a fresh
    profile (as the Lua script draws them), in ``body_format``."""
    rng = random.Random(seed)  # nosec B311: seeded load mix, not security
    cursor = rng.randrange(len(mix))

    def body() -> dict[str, Any]:
        nonlocal cursor
        cursor = (cursor + 1) % len(mix)
        req = mix[cursor]
        if "profile" in req:
            req = {**req, "profile": profile(rng)}
        return BODY[body_format](req)

    return body
