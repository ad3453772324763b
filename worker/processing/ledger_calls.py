"""The pipeline's calls to its idempotency ledger: each one timed (the seconds go to the next
batch result, failed calls too), claims that wait out another worker's lease, marking a batch's
finished effects done (retried while the store is away, when the effects already happened
outside it), a cancelled batch's bookkeeping, prunes between batches, and finding which keys a
store refuses (halving the batch)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

from worker.errors import LedgerKeyRejected, LedgerUnavailable
from worker.ledger.base import ClaimState, Ledger, LedgerSession
from worker.outputs import EmittedMarks
from worker.processing.batch_run import BatchCancelled, BatchRun
from worker.types import BatchStats

log = structlog.get_logger(__name__)

Sleep = Callable[[float, Callable[[], bool]], None]

#: How often the pipeline offers the ledger a prune (each backend gates itself too).
PRUNE_CHECK_S = 1.0


class LedgerCalls:
    def __init__(self, ledger: Ledger, sleep: Sleep, *, ledger_backoff: tuple[float, float],
                 busy_backoff: tuple[float, float], prune_every: float = PRUNE_CHECK_S,
                 emitted_marks: EmittedMarks | None = None) -> None:
        """`emitted_marks`: exactly-once mode, where an emitting effect's records commit with
        the Kafka transaction, after the ledger's session: its done mark goes there too (and its
        ledger claim is released), so it commits or aborts with the records."""
        self.ledger = ledger
        self._emitted_marks = emitted_marks
        # False from a failed call until one succeeds: read by /readyz and the ledger_up gauge
        # while a batch is still retrying (it returns only once the ledger is back)
        self.up = True
        self.backoff = ledger_backoff
        self._busy_backoff = busy_backoff
        self._sleep = sleep
        self._seconds: dict[str, list[float]] = {}  # since the last batch result
        self._errors: Counter[str] = Counter()
        self._prune_every = prune_every
        self._next_prune = 0.0

    def timed(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            result = fn(*args)
        except LedgerUnavailable:
            self._errors[op] += 1
            self._record(op, t0, False)
            raise
        self._record(op, t0, True)
        return result

    def _record(self, op: str, t0: float, up: bool) -> None:
        seconds = self._seconds.get(op)
        if seconds is None:
            seconds = self._seconds[op] = []
        seconds.append(time.perf_counter() - t0)
        self.up = up

    def hand_over_timings(self, stats: BatchStats) -> None:
        """Put the timings gathered since the last result (prunes between batches included)
        into `stats`, and start afresh."""
        stats.ledger_seconds, self._seconds = self._seconds, {}
        stats.ledger_errors, self._errors = self._errors, Counter()

    def claim_all(self, session: LedgerSession, keys: list[str], run: BatchRun
                  ) -> list[ClaimState]:
        states: list[ClaimState] = self.timed("claim", session.claim, keys)
        delay, max_delay = self._busy_backoff
        while True:
            busy = [i for i, s in enumerate(states) if s is ClaimState.BUSY]
            if not busy:
                return states
            # Another worker holds a lease (its effect may be in flight): wait for it to finish
            # or for its lease to expire, then claim again.
            run.check()
            self._sleep(delay, run.cancelled)
            delay = min(delay * 2, max_delay)
            again = self.timed("claim", session.claim, [keys[i] for i in busy])
            for i, s in zip(busy, again, strict=True):
                states[i] = s

    def finish(self, session: LedgerSession, run: BatchRun) -> None:
        """Mark the batch's finished effects done and commit the session. On a SQL ledger the
        effects' writes live in the transaction, so an outage here loses them with it and the
        batch runs again. On a store without transactions (Redis, memory) the effects already
        happened outside it: while the store is unreachable, only this bookkeeping is retried,
        so a ledger restart repeats no effect.

        Effects that emitted records (`run.held`) are marked done only once every record of
        the batch is acknowledged (worker.outputs): OutputUnavailable leaves them unmarked (the
        batch runs again), BatchCancelled too (the engine reads the batch again)."""
        effects_outside = session.transaction is None
        delay, max_delay = self.backoff
        while True:
            try:
                if run.done:
                    self.timed("mark_done", session.mark_done, run.done)
                    run.done = []
                if run.held:
                    deliveries = run.deliveries
                    if deliveries is not None and not deliveries.wait(run.cancelled):
                        raise BatchCancelled
                    marks = self._emitted_marks
                    if marks is None:
                        self.timed("mark_done", session.mark_done, run.held)
                    else:  # (the ledger's claims are released by the commit)
                        marks.mark(list(zip(run.held_at, run.held, strict=True)))
                    run.held, run.held_at = [], []
                self.timed("commit", session.commit)
                return
            except LedgerUnavailable as exc:
                if not effects_outside or run.cancelled():
                    raise
                log.warning("ledger unavailable; marking the batch's finished effects done "
                            "again", error=str(exc), retry_in_s=round(delay, 2),
                            keys=len(run.done) + len(run.held))
            self._sleep(delay, run.cancelled)
            delay = min(delay * 2, max_delay)

    def keep_finished(self, session: LedgerSession, done_keys: list[str]) -> None:
        """A cancelled batch: the effects that finished did happen, so their keys are marked
        done (with their writes, on a SQL ledger) and a redelivery skips them; the rest is
        released and runs again, and so are the effects whose emitted records were not all
        acknowledged (`run.held`, never passed here). Offsets stay unstored: the batch is read
        again."""
        try:
            if done_keys:
                self.timed("mark_done", session.mark_done, done_keys)
            self.timed("commit", session.commit)
        except Exception as exc:  # the ledger failed: the effects may repeat, as after a crash
            log.warning("could not mark the finished effects of a cancelled batch done",
                        error=str(exc), keys=len(done_keys))
            quiet_rollback(session)

    def maybe_prune(self) -> None:
        """Between batches, at most once per `prune_every` seconds: let the ledger drop done
        marks older than its retention. Each backend bounds one call's work (see
        PRUNE_CHUNKS_PER_CALL) and gates itself to its prune interval, so this costs a clock
        read almost always and a few ms now and then. A failure is logged and retried later:
        the batch is already committed."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + self._prune_every
        try:
            pruned = self.timed("prune", self.ledger.prune)
        except LedgerUnavailable as exc:
            log.warning("ledger prune failed; trying again later", error=str(exc))
            return
        if pruned:
            log.info("ledger pruned", keys=pruned)

    def refused_keys(self, keys: list[str], run: BatchRun) -> set[str]:
        """The keys whose claim the store refuses (LedgerKeyRejected), found by claiming halves
        of `keys` in sessions that are rolled back. Raises BatchCancelled if cancelled
        meanwhile."""
        bad: set[str] = set()
        parts = [keys]
        while parts:
            run.check()
            part = parts.pop()
            session = self.ledger.session()
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
