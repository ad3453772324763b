"""The pipeline's ledger calls that are more than one call: finding which keys a store refuses
(halving the batch), rolling back when the store may be gone, and the sleep between retries
that a cancellation cuts short."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from worker.errors import LedgerKeyRejected
from worker.ledger.base import Ledger, LedgerSession

log = structlog.get_logger("worker.processing.pipeline")


def refused_keys(ledger: Ledger, keys: list[str], cancelled: Callable[[], bool]
                 ) -> set[str] | None:
    """The keys whose claim the store refuses (LedgerKeyRejected), found by claiming halves
    of `keys` in sessions that are rolled back; None if cancelled meanwhile."""
    bad: set[str] = set()
    parts = [keys]
    while parts:
        if cancelled():
            return None
        part = parts.pop()
        session = ledger.session()
        try:
            session.claim(part)
            continue
        except LedgerKeyRejected:
            pass
        finally:
            quiet_rollback(session)
        if len(part) == 1:
            bad.add(part[0])
        else:
            parts += [part[: len(part) // 2], part[len(part) // 2 :]]
    return bad


def quiet_rollback(session: LedgerSession) -> None:
    try:
        session.rollback()
    except Exception as exc:  # the store may be gone; the transaction dies with it
        log.debug("ledger rollback failed", error=str(exc))


def interruptible_sleep(seconds: float, cancelled: Callable[[], bool]) -> None:
    """Sleep in small steps, returning early once `cancelled()` (noticed within ~50 ms)."""
    deadline = time.monotonic() + seconds
    while not cancelled():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))
