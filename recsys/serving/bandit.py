"""Thompson-sampling traffic shares for a ``thompson`` experiment: Beta posteriors of each variant's CTR, stored
in SQL and turned into the router's shares by every worker alike.

One writer (the job that counts impressions and clicks per variant from the serving logs) stores the running
totals with :meth:`BanditStore.write`; each worker's :class:`BanditRefresher` reads them every minute or so, computes
:func:`thompson_shares` and hands them to its :class:`~recsys.serving.router.Router`. The shares are a Monte Carlo
estimate of the probability that each variant has the best CTR, drawn with a seed derived from the posteriors
themselves: every worker reading the same rows computes the very same shares (with the same numpy), so a user's
variant does not depend on which worker answers. A ``floor`` keeps every variant explored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from recsys.db import SqlStore, UTCDateTime, utcnow
from recsys.serving.router import Router

logger = logging.getLogger(__name__)


class BetaPosterior(BaseModel):
    """Beta(alpha, beta) over a variant's click-through rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(gt=0)
    beta: float = Field(gt=0)

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def updated(self, impressions: int, clicks: int) -> BetaPosterior:
        """This prior after ``clicks`` successes in ``impressions`` trials."""
        return BetaPosterior(alpha=self.alpha + clicks, beta=self.beta + impressions - clicks)


PRIOR = BetaPosterior(alpha=1.0, beta=1.0)
"""Uniform over [0, 1]: before any impression every CTR is equally likely."""


def thompson_shares(posteriors: Mapping[str, BetaPosterior], floor: float, draws: int = 20_000,
                    seed: int = 0) -> dict[str, float]:
    """``floor + (1 - k * floor) * P(variant has the highest CTR)`` for each of the ``k`` variants.

    The probabilities are estimated from ``draws`` joint samples of the posteriors, with a random generator
    seeded by ``seed`` and a hash of the posteriors, so equal posteriors give equal shares in every process. Each
    share is at least ``floor`` and they sum to 1.
    """
    if not posteriors:
        raise ValueError("thompson_shares needs at least one variant")
    names = sorted(posteriors)
    k = len(names)
    if not 0 <= floor <= 1 / k:
        raise ValueError(f"floor must be in [0, 1/{k}] for {k} variants, got {floor}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    # the seed hashes the state: equal posteriors draw equal samples in every worker, and new counts new samples
    state = json.dumps([seed, draws, [[n, posteriors[n].alpha, posteriors[n].beta] for n in names]])
    rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(state.encode(), digest_size=8).digest(), "big"))
    alphas = np.array([posteriors[n].alpha for n in names])
    betas = np.array([posteriors[n].beta for n in names])
    samples = rng.beta(alphas, betas, size=(draws, k))
    best = np.bincount(samples.argmax(axis=1), minlength=k) / draws
    # the floor keeps serving a variant that looks worse, so its posterior can still recover
    shares = floor + (1 - k * floor) * best
    return {n: float(s) for n, s in zip(names, shares, strict=True)}


class Base(DeclarativeBase):
    pass


class PosteriorRow(Base):
    __tablename__ = "bandit_posteriors"

    experiment: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    impressions: Mapped[int] = mapped_column(BigInteger)
    clicks: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BanditStore(SqlStore):
    """Per experiment and variant, the running totals of impressions and clicks, over any SQLAlchemy URL.

    The rows hold totals, not increments, so writing the same totals twice is harmless (a retried job changes
    nothing) and a row's ``updated_at`` moves only when its counts do.
    """

    metadata = Base.metadata
    schema_name = "bandit"

    def write(self, experiment: str, counts: Mapping[str, tuple[int, int]]) -> None:
        """Store ``variant -> (impressions, clicks)`` totals for ``experiment``, in one transaction."""
        now = utcnow()
        totals: list[tuple[str, int, int]] = []
        for variant, (impressions, clicks) in sorted(counts.items()):
            if not 0 <= clicks <= impressions:
                raise ValueError(f"variant {variant!r}: need 0 <= clicks <= impressions, got ({impressions}, "
                                 f"{clicks})")
            totals.append((variant, int(impressions), int(clicks)))
        if not totals:
            return
        engine = self._ready()
        dialect = engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = (sqlite if dialect == "sqlite" else postgresql).insert(PosteriorRow)
            table = PosteriorRow.__table__
            # the WHERE leaves an unchanged row alone, updated_at included
            changed = (table.c.impressions != insert.excluded.impressions) | (table.c.clicks != insert.excluded.clicks)
            stmt = insert.on_conflict_do_update(
                index_elements=["experiment", "variant"], where=changed,
                set_={"impressions": insert.excluded.impressions, "clicks": insert.excluded.clicks,
                      "updated_at": insert.excluded.updated_at})
            rows = [{"experiment": experiment, "variant": v, "impressions": n, "clicks": x, "updated_at": now}
                    for v, n, x in totals]
            with engine.begin() as conn:  # one transaction: no reader sees half of a job's totals
                conn.execute(stmt, rows)
            return
        with Session(engine) as session, session.begin():
            for variant, n, x in totals:
                stored = session.get(PosteriorRow, (experiment, variant))
                if stored is None:
                    session.add(PosteriorRow(experiment=experiment, variant=variant, impressions=n, clicks=x,
                                             updated_at=now))
                elif (stored.impressions, stored.clicks) != (n, x):
                    stored.impressions, stored.clicks, stored.updated_at = n, x, now

    def counts(self, experiment: str) -> dict[str, tuple[int, int, datetime]]:
        """``variant -> (impressions, clicks, updated_at)`` as stored."""
        with Session(self._ready()) as session:
            rows = session.scalars(select(PosteriorRow).where(PosteriorRow.experiment == experiment))
            return {r.variant: (r.impressions, r.clicks, r.updated_at) for r in rows}

    def read(self, experiment: str, prior: BetaPosterior = PRIOR) -> dict[str, BetaPosterior]:
        """``variant -> prior updated with its stored counts``, for the variants stored (none: an empty dict)."""
        return {v: prior.updated(n, x) for v, (n, x, _) in self.counts(experiment).items()}


class BanditRefresher:
    """Keeps one router's shares at the Thompson shares of its experiment's stored posteriors.

    Nothing happens until :meth:`refresh` or :meth:`start`. A hash experiment is left alone, and so is a thompson
    one with no stored impressions yet (its configured shares hold); a variant the store lacks has the prior.
    """

    def __init__(self, store: BanditStore, router: Router, draws: int = 20_000, seed: int = 0) -> None:
        self.store = store
        self.router = router
        self.draws = draws
        self.seed = seed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> dict[str, float]:
        """Read the store, update the router when there is evidence, and return the router's shares."""
        exp = self.router.experiment
        if exp.allocation != "thompson":
            return self.router.shares
        counts = self.store.counts(exp.name)
        if not any(counts.get(v, (0, 0, None))[0] for v in exp.variants):
            # priors alone would split evenly and override a configured ramp-up before any evidence
            return self.router.shares
        posteriors = {v: PRIOR.updated(*counts[v][:2]) if v in counts else PRIOR for v in exp.variants}
        shares = thompson_shares(posteriors, exp.floor, self.draws, self.seed)
        self.router.update_shares(shares)
        return shares

    def start(self, interval_s: float = 60.0) -> None:
        """Refresh now and then every ``interval_s`` seconds in a daemon thread; a failed refresh is logged and the
        last shares stay."""
        if self._thread is not None:
            return

        def loop() -> None:
            # refresh before the first wait: a new worker should not serve the configured shares for a whole interval
            while True:
                try:
                    self.refresh()
                except Exception:
                    logger.exception("bandit refresh failed; keeping the last shares")
                if self._stop.wait(interval_s):
                    return

        self._thread = threading.Thread(target=loop, name="bandit-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (if started) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
