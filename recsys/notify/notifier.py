"""Delivery: store first, deduplicate, then send to every channel at once with short, bounded retries.

:class:`Notifier` is what the pipeline holds. :meth:`Notifier.send` never raises and returns a
:class:`~recsys.notify.models.SendOutcome`: the message is written to the store (its per-channel rows claimed by
this sender), each channel gets ``retries`` attempts with exponential backoff (tenacity) in its own thread, so a
slow or dead receiver delays no other channel, and each row ends ``sent``, ``pending`` (transient failures: a
later :meth:`Notifier.replay` sends it) or ``failed`` (the receiver refused it for good). A store that cannot be
reached does not stop delivery: the message is then sent without a record (and logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from tenacity import RetryError, Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from recsys.notify import templates
from recsys.notify.channels import channels as channels_of
from recsys.notify.models import Channel, ChannelOutcome, DeliveryError, Notification, SendOutcome
from recsys.notify.store import NotificationStore
from recsys.settings import Settings

logger = logging.getLogger("recsys.notify")


class _PermanentError(Exception):
    """Wraps a permanent DeliveryError so tenacity stops retrying."""


class ReplayOutcome(BaseModel):
    claimed: int
    sent: int
    pending: int
    failed: int
    skipped: int
    """Deliveries for a channel that is no longer configured, or claimed by another sender meanwhile."""
    channels: dict[str, dict[str, int]]


class Notifier:
    """Sends notifications to channels through the store (see the module docstring).

    ``store=None`` sends without a record (no replay, no dedup): what a caller that passes bare channels gets.
    """

    def __init__(self, channels: Sequence[Channel], store: NotificationStore | None = None, *,
                 retries: int = 3, backoff: float = 0.5, dedup_seconds: float = 0.0,
                 bases: templates.Bases | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.channels = list(channels)
        self.store = store
        self.retries, self.backoff, self.dedup_seconds = retries, backoff, dedup_seconds
        self.bases = bases or templates.Bases()
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings, channels: Sequence[Channel] | None = None) -> Notifier:
        """The configured channels (ValueError / SettingsError naming what is wrong) over the configured store."""
        chosen = channels_of(settings) if channels is None else list(channels)
        return cls(chosen, NotificationStore(settings.notify_db_url), retries=settings.notify_retries,
                   backoff=settings.notify_backoff, dedup_seconds=settings.notify_dedup_seconds,
                   bases=templates.Bases.of(settings))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    # -- building -------------------------------------------------------------------------------------------
    def build(self, event: str, details: dict[str, Any] | None = None, **kwargs: Any) -> Notification:
        """The event's template with this notifier's link bases (see :func:`recsys.notify.templates.build`)."""
        return templates.build(event, details, bases=self.bases, **kwargs)

    def event(self, event: str, details: dict[str, Any] | None = None, **kwargs: Any) -> SendOutcome | None:
        """Build and send; None when even building failed (logged). Never raises."""
        try:
            n = self.build(event, details, **kwargs)
        except Exception:
            logger.warning("could not build the %r notification", event, exc_info=True)
            return None
        return self.send(n)

    # -- sending --------------------------------------------------------------------------------------------
    def _attempt(self, channel: Channel, n: Notification) -> tuple[str, int, str | None]:
        """Up to ``retries`` attempts; (status, attempts made, last error)."""
        attempts = 0

        def once() -> None:
            nonlocal attempts
            attempts += 1
            try:
                channel.send(n)
            except DeliveryError as exc:
                if exc.permanent:
                    raise _PermanentError(str(exc)) from exc
                raise

        retrying = Retrying(stop=stop_after_attempt(self.retries), reraise=False, sleep=self._sleep,
                            wait=wait_exponential(multiplier=self.backoff, min=self.backoff, max=8 * self.backoff),
                            retry=retry_if_not_exception_type(_PermanentError))
        try:
            retrying(once)
        except _PermanentError as exc:
            return "failed", attempts, str(exc)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            return "pending", attempts, f"{type(last).__name__}: {last}"
        except Exception as exc:  # a bug in a channel must not escape either
            return "pending", attempts, f"{type(exc).__name__}: {exc}"
        return "sent", attempts, None

    def _deliver(self, channel: Channel, n: Notification, claim: str | None) -> ChannelOutcome:
        status, attempts, error = self._attempt(channel, n)
        if status != "sent":
            logger.warning("notification %s (%s) via %s: %s after %d attempt(s): %s", n.id, n.event, channel.name,
                           status, attempts, error)
        if claim is not None and self.store is not None:
            try:
                if not self.store.settle(n.id, channel.name, claim, status, attempts, error):  # type: ignore[arg-type]
                    logger.warning("notification %s via %s: the claim was taken over before it settled", n.id,
                                   channel.name)
            except Exception:
                logger.warning("notification %s via %s was %s, but the store could not record it", n.id,
                               channel.name, status, exc_info=True)
        return ChannelOutcome(channel=channel.name, status=status, attempts=attempts,
                              error=error)

    def _fan_out(self, jobs: list[tuple[Channel, Notification, str | None]]) -> list[ChannelOutcome]:
        if len(jobs) <= 1:
            return [self._deliver(*job) for job in jobs]
        with ThreadPoolExecutor(max_workers=min(len(jobs), 8), thread_name_prefix="notify") as pool:
            return list(pool.map(lambda job: self._deliver(*job), jobs))

    def send(self, n: Notification) -> SendOutcome:
        """Store, deduplicate, deliver (see the module docstring). Never raises."""
        try:
            return self._send(n)
        except Exception:  # the last resort: a notification never undoes or blocks the action it reports
            logger.warning("notification %r could not be sent", n.event, exc_info=True)
            return SendOutcome(id=n.id, event=n.event, stored=False)

    def _send(self, n: Notification) -> SendOutcome:
        names = [c.name for c in self.channels]
        claim, suppressed_by, stored = None, None, False
        if self.store is not None:
            try:
                claim, suppressed_by = self.store.add(n, names, self.dedup_seconds)
                stored = True
            except IntegrityError:
                if self.store.get(n.id) is None:
                    raise
                logger.info("notification %s is already stored: not sent again (`recsys notify replay` sends what "
                            "is pending)", n.id)
                return SendOutcome(id=n.id, event=n.event, stored=True, suppressed_by=n.id)
            except Exception:
                logger.warning("notification %s (%s): the store is unreachable; sending without a record",
                               n.id, n.event, exc_info=True)
        if suppressed_by is not None:
            logger.info("notification %s (%s) suppressed: the same alert was sent as %s within %.0f s", n.id,
                        n.event, suppressed_by, self.dedup_seconds)
            return SendOutcome(id=n.id, event=n.event, stored=stored, suppressed_by=suppressed_by,
                               channels=[ChannelOutcome(channel=c, status="suppressed") for c in names])
        outcomes = self._fan_out([(c, n, claim) for c in self.channels])
        return SendOutcome(id=n.id, event=n.event, stored=stored, channels=outcomes)

    def replay(self, *, include_failed: bool = False) -> ReplayOutcome:
        """Send every pending (message, channel) of the store once more (see the module docstring).

        Each row is claimed just before it is sent, so a row another sender holds is skipped, and a claim never
        waits in a queue. Channels run in parallel; a channel whose message stays pending is not tried again for
        the rest of this replay (its other rows stay pending untouched): a hung receiver costs one message's
        retries, not every message's.
        """
        if self.store is None:
            raise ValueError("replay needs a notification store")
        store = self.store
        by_name = {c.name: c for c in self.channels}
        todo: dict[str, list[str]] = {}
        per: dict[str, dict[str, int]] = {}
        skipped = 0
        for nid, name in store.claimable(include_failed=include_failed):
            if name in by_name:
                todo.setdefault(name, []).append(nid)
            else:
                skipped += 1
                per.setdefault(name, {}).setdefault("not configured", 0)
                per[name]["not configured"] += 1

        def run(name: str) -> tuple[list[ChannelOutcome], int]:
            done: list[ChannelOutcome] = []
            lost = 0
            for nid in todo[name]:
                if done and done[-1].status == "pending":
                    break  # the receiver is failing: leave the rest pending for the next replay
                token = store.claim(nid, name, include_failed=include_failed)
                n = store.get(nid) if token else None
                if token is None or n is None:
                    lost += 1  # another sender has it, or it is done
                    continue
                done.append(self._deliver(by_name[name], n, token))
            return done, lost

        results: list[ChannelOutcome] = []
        if todo:
            with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="notify-replay") as pool:
                for done, lost in pool.map(run, list(todo)):
                    results.extend(done)
                    skipped += lost
        for r in results:
            per.setdefault(r.channel, {}).setdefault(r.status, 0)
            per[r.channel][r.status] += 1
        count = {s: sum(1 for r in results if r.status == s) for s in ("sent", "pending", "failed")}
        return ReplayOutcome(claimed=len(results), skipped=skipped, channels=per, **count)


def dispatch(notification: Notification, channels: Sequence[Channel]) -> list[str]:
    """Send to every channel once, without a store or retries; the names of the channels that failed (logged)."""
    failed = []
    for channel in channels:
        try:
            channel.send(notification)
        except Exception:
            logger.warning("notification %r via %s failed", notification.event, channel.name, exc_info=True)
            failed.append(channel.name)
    return failed
