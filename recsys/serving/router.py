"""A/B assignment of users to registry aliases, and the shadow-scoring configuration.

An :class:`Experiment` maps registry aliases (``champion``, ``challenger``, ...) to traffic shares. A user's
variant is a pure function of ``(salt, user_id)``: the first 8 bytes of ``blake2b(f"{salt}:{user_id}")`` read as
a big-endian integer and divided by 2**64 give a point ``u`` in [0, 1), and the variant is the first alias, in
sorted order, whose cumulative share exceeds ``u``. The same user gets the same variant in every process, host
and release (Python's ``hash()`` is salted per process and is not used); a new salt reshuffles everyone.

The *shadow* alias is scored but never served, for a ``shadow_share`` of users picked by a second, independent
hash (``f"{salt}:shadow:{user_id}"``); :func:`overlap_at_k` compares its ranking with the served one.

With ``allocation: thompson`` the shares are not fixed: a bandit (:mod:`recsys.serving.bandit`) sets them from the
click posteriors through :meth:`Router.update_shares`, each variant keeping at least ``floor``. A user's point ``u``
never changes, so a user moves to another variant only when a cut moves past their point; until the first
posteriors, the configured shares apply.

The experiment comes from ``RECSYS_EXPERIMENT`` (inline JSON) or ``RECSYS_EXPERIMENT_FILE`` (a JSON or YAML
file); without either it is :func:`default_experiment`: 100 % champion, no shadow.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.schema import CHAMPION, K

SHARE_TOLERANCE = 1e-9
"""How far the sum of the variants' shares may be from 1."""
ENV_INLINE = "RECSYS_EXPERIMENT"
ENV_FILE = "RECSYS_EXPERIMENT_FILE"
_ALIAS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class ExperimentError(ValueError):
    """The experiment configuration cannot be read or is invalid (the message names the source)."""


class NoModelAvailableError(LookupError):
    """Neither the assigned variant nor the champion has a loaded model."""


def stable_unit(key: str) -> float:
    """A point in [0, 1) from ``key``, identical in every process: blake2b's first 8 bytes / 2**64."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _check_alias(alias: str) -> str:
    if not alias or not set(alias) <= _ALIAS_CHARS or len(alias) > 64:
        raise ValueError(f"alias {alias!r} must be 1-64 letters, digits, '_' or '-'")
    return alias


def check_shares(shares: Mapping[str, float]) -> dict[str, float]:
    """``shares`` sorted by alias (the cut order) if every alias is valid, every share finite and >= 0, and they
    sum to 1 within SHARE_TOLERANCE; ValueError otherwise."""
    if not shares:
        raise ValueError("at least one variant is needed")
    for alias, share in shares.items():
        _check_alias(alias)
        if not math.isfinite(share) or share < 0:
            raise ValueError(f"share of variant {alias!r} must be a finite number >= 0, got {share}")
    total = math.fsum(shares.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        listed = ", ".join(f"{a}={s}" for a, s in sorted(shares.items()))
        raise ValueError(f"variant shares must sum to 1, got {total:.12g} ({listed})")
    return dict(sorted(shares.items()))


class Experiment(BaseModel):
    """Traffic shares per registry alias, plus an optional shadow alias scored for a share of users."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    salt: str = Field(min_length=1, max_length=128, description="changing it reassigns every user")
    variants: dict[str, float] = Field(default_factory=lambda: {CHAMPION: 1.0},
                                       description="registry alias -> traffic share; shares sum to 1")
    shadow: str | None = Field(None, description="an alias scored but never served")
    shadow_share: float = Field(0.0, ge=0.0, le=1.0, description="share of users whose request is shadow-scored")
    allocation: Literal["hash", "thompson"] = Field(
        "hash", description="hash: the configured shares, fixed; thompson: shares set by a bandit from the click "
                            "posteriors (the configured shares until there are any)")
    floor: float = Field(0.05, ge=0.0, le=1.0, description="thompson: the least share every variant keeps")

    @field_validator("variants")
    @classmethod
    def _check_variants(cls, variants: dict[str, float]) -> dict[str, float]:
        return check_shares(variants)

    @field_validator("shadow")
    @classmethod
    def _check_shadow(cls, shadow: str | None) -> str | None:
        return None if shadow is None else _check_alias(shadow)

    @model_validator(mode="after")
    def _check_shadow_not_served(self) -> Experiment:
        if self.shadow is not None and self.shadow in self.variants:
            raise ValueError(f"shadow alias {self.shadow!r} is also a served variant; a shadow is never served")
        if self.shadow is None and self.shadow_share > 0:
            raise ValueError(f"shadow_share is {self.shadow_share} but no shadow alias is set")
        # only a bandit uses the floor: a hash experiment with many variants stays valid under the default
        if self.allocation == "thompson" and self.floor > 1 / len(self.variants) + SHARE_TOLERANCE:
            raise ValueError(f"floor {self.floor} is above 1/{len(self.variants)}: {len(self.variants)} variants "
                             f"cannot all keep it")
        return self

    @classmethod
    def _from_data(cls, data: Any, source: str) -> Experiment:
        if not isinstance(data, Mapping):
            raise ExperimentError(f"experiment {source}: expected a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "experiment"
            raise ExperimentError(f"experiment {source}: field {loc}: {first['msg']}") from exc

    @classmethod
    def from_file(cls, path: Path | str) -> Experiment:
        """Read a ``.json`` file as JSON and anything else as YAML; ExperimentError naming the file on failure."""
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ExperimentError(f"cannot read experiment file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ExperimentError(f"experiment file {path}: not UTF-8 text") from exc
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else YAML(typ="safe").load(text)
        except json.JSONDecodeError as exc:
            raise ExperimentError(f"experiment file {path}: not valid JSON ({exc})") from exc
        except YAMLError as exc:
            raise ExperimentError(f"experiment file {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        return cls._from_data(data, f"file {path}")

    @classmethod
    def from_json(cls, text: str, source: str = "JSON") -> Experiment:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExperimentError(f"experiment {source}: not valid JSON ({exc})") from exc
        return cls._from_data(data, source)

    @classmethod
    def configured(cls, inline: str | None, file: Path | None) -> Experiment:
        """The settings' experiment: ``RECSYS_EXPERIMENT`` (inline JSON) or ``RECSYS_EXPERIMENT_FILE``; both set
        is an error; with neither, :func:`default_experiment`."""
        if inline and file:
            raise ExperimentError(f"set {ENV_INLINE} or {ENV_FILE}, not both")
        if inline:
            return cls.from_json(inline, f"${ENV_INLINE}")
        if file:
            return cls.from_file(file)
        return default_experiment()


def default_experiment() -> Experiment:
    """100 % champion, no shadow."""
    return Experiment(name="default", salt="default", variants={CHAMPION: 1.0})


@dataclass(frozen=True)
class Route:
    """Where one request goes: the alias served, the one the hash assigned, and the shadow alias to score."""

    served: str
    assigned: str
    shadow: str | None = None

    @property
    def fell_back(self) -> bool:
        return self.served != self.assigned


def _cut_list(shares: Mapping[str, float]) -> tuple[tuple[float, str], ...]:
    """(cumulative share, alias) in alias order, zero shares left out."""
    cuts: list[tuple[float, str]] = []
    total = 0.0
    for alias, share in sorted(shares.items()):
        if share > 0:
            total += share
            cuts.append((total, alias))
    return tuple(cuts)


class Router:
    """Assigns users to an experiment's variants; safe to share between threads.

    The only state is the cut list, an immutable tuple that :meth:`update_shares` replaces in one assignment and
    that each request reads once, so a request sees either the old shares or the new ones, never a mix.
    """

    def __init__(self, experiment: Experiment | None = None, shares: Mapping[str, float] | None = None) -> None:
        self.experiment = experiment or default_experiment()
        self._cuts = _cut_list(self.experiment.variants if shares is None else self._checked(shares))

    def __repr__(self) -> str:
        exp = self.experiment
        return f"Router({exp.name!r}, variants={exp.variants}, shadow={exp.shadow!r})"

    def _checked(self, shares: Mapping[str, float]) -> dict[str, float]:
        exp = self.experiment
        if exp.allocation != "thompson":
            raise ValueError(f"experiment {exp.name!r} allocates by hash: its shares are the configured ones")
        if set(shares) != set(exp.variants):
            raise ValueError(f"shares for {sorted(shares)}, but the experiment's variants are {sorted(exp.variants)}")
        return check_shares(shares)

    @property
    def shares(self) -> dict[str, float]:
        """The current share of every variant (the configured ones until :meth:`update_shares`)."""
        cuts, previous, shares = self._cuts, 0.0, dict.fromkeys(self.experiment.variants, 0.0)
        for cut, alias in cuts:
            shares[alias], previous = cut - previous, cut
        return shares

    def with_shares(self, shares: Mapping[str, float]) -> Router:
        """A new router of the same (thompson) experiment cutting users by ``shares``."""
        return Router(self.experiment, shares)

    def update_shares(self, shares: Mapping[str, float]) -> None:
        """Cut users by ``shares`` from now on (thompson experiments only; ValueError for a hash one, whose shares
        are fixed for its analysis to hold). A user moves only if a cut moved past their point."""
        self._cuts = _cut_list(self._checked(shares))

    def assign(self, user_id: int, available: Collection[str] | None = None) -> str:
        """The user's variant. With ``available`` (the aliases that have a loaded model), a variant without one
        falls back to ``"champion"``; NoModelAvailableError if the champion has none either."""
        u = stable_unit(f"{self.experiment.salt}:{user_id}")
        cuts = self._cuts  # read once: update_shares may replace it meanwhile
        # the shares sum to 1 only within SHARE_TOLERANCE: a u above the last cut goes to the last variant
        alias = next((a for cut, a in cuts if u < cut), cuts[-1][1])
        if available is None or alias in available:
            return alias
        if CHAMPION in available:
            return CHAMPION
        raise NoModelAvailableError(f"no loaded model for variant {alias!r} nor for {CHAMPION!r}")

    def in_shadow(self, user_id: int) -> bool:
        """Whether this user's requests are also scored by the shadow alias (an independent hash of the variant's)."""
        exp = self.experiment
        if exp.shadow is None or exp.shadow_share <= 0:
            return False
        return stable_unit(f"{exp.salt}:shadow:{user_id}") < exp.shadow_share

    def route(self, user_id: int, available: Collection[str] | None = None) -> Route:
        """Served alias (after the champion fallback), assigned alias, and the shadow alias to score or None.

        The shadow is scored only for users in the shadow share, and only when it has a loaded model.
        """
        assigned = self.assign(user_id)
        served = self.assign(user_id, available)
        shadow = self.experiment.shadow if self.in_shadow(user_id) else None
        if shadow is not None and available is not None and shadow not in available:
            shadow = None
        return Route(served=served, assigned=assigned, shadow=shadow)


def overlap_at_k(a: Sequence[int], b: Sequence[int], k: int = K) -> float:
    """``|top-k(a) ∩ top-k(b)| / k``: the share of the first ``k`` items two rankings agree on (order ignored).

    Lists shorter than ``k`` still divide by ``k``, so a short ranking cannot reach 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return len(set(a[:k]) & set(b[:k])) / k
