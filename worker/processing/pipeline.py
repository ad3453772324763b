"""The processing half of the worker: decode → route → claim in the ledger → run processors
(with retries) → mark done. The Kafka half (worker.engine.loop) hands it batches and stores
offsets only when it returns `BatchResult(completed=True)`.

One batch is one ledger session: a single claim round trip for every (event, processor) key, the
processors' effects, a single mark-done round trip, one commit. On SQL ledgers all of it is one
transaction, so a crash anywhere leaves either every effect of the batch with its done marks, or
none of them (and the events come back from Kafka).

Outcomes per (event, processor): `worker.vocabulary.Outcome` (ok, duplicate, retried,
dead_lettered); why an event was dead-lettered: `worker.vocabulary.ErrorClass`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog

from worker.errors import (
    LedgerKeyRejected,
    LedgerUnavailable,
)
from worker.ledger.base import ClaimState, Ledger, LedgerSession
from worker.processing.circuit import CLOSED, Circuit, Circuits
from worker.processing.effects import DEFAULT_MAX_IN_FLIGHT, ConcurrentEffects, EffectsCancelled
from worker.processing.ledger_calls import interruptible_sleep, quiet_rollback, refused_keys
from worker.processing.planning import Resolver, Unmatched, Work, WorkPlanner
from worker.processing.retries import (
    GiveUp,
    after_failure,
    dead_letter,
    gave_up,
    outage_reason,
    outage_wait,
    unavailable,
)
from worker.processors.api import Context, Processor
from worker.types import BatchResult, BatchStats, DeadLetter, Message
from worker.vocabulary import ErrorClass, Outcome

log = structlog.get_logger("worker.processing.pipeline")

class _Cancelled(Exception):
    """Internal: the engine asked us to stop this batch (revoke or shutdown)."""


_PRUNE_CHECK_S = 1.0  # how often the pipeline offers the ledger a prune (it gates itself too)


class Pipeline:
    """Implements worker.types.BatchHandler."""

    def __init__(
        self,
        processors: Sequence[Processor],
        ledger: Ledger,
        *,
        unmatched: Unmatched = "skip",
        router: Resolver | None = None,
        ledger_backoff: tuple[float, float] = (0.2, 10.0),
        busy_backoff: tuple[float, float] = (0.05, 2.0),
        sleep: Callable[[float, Callable[[], bool]], None] | None = None,
        prune_every: float = _PRUNE_CHECK_S,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_outage: float | None = None,
        circuits: Circuits | None = None,
    ) -> None:
        """`max_outage`: seconds a destination may be unavailable before the events waiting
        for it are dead-lettered (`destination_unavailable`); None waits as long as it takes.
        `circuits`: the destinations' circuit breakers (worker.processing.circuit; tests pass one
        with a
        fake clock)."""
        if router is None:
            from worker.processing.routing import Router

            router = Router(list(processors))
        self.processors = list(processors)
        self.router = router
        self.ledger = ledger
        # False from a failed ledger call until one succeeds: read by /readyz and the
        # ledger_up gauge while a batch is still retrying (it returns only once the ledger is
        # back)
        self.ledger_up = True
        # ledger calls' timings since the last result (prunes between batches included)
        self._ledger_seconds: dict[str, list[float]] = {}
        self._ledger_errors: Counter[str] = Counter()
        self.unmatched = unmatched
        self._ledger_backoff = ledger_backoff
        self._busy_backoff = busy_backoff
        self._sleep = sleep or interruptible_sleep
        self._names = [p.name for p in self.processors]
        self._index = {name: i for i, name in enumerate(self._names)}
        self._planner = WorkPlanner(self._index, router, unmatched)
        # A circuit per destination (worker.processing.circuit), sync and async processors alike
        self.circuits = circuits if circuits is not None else Circuits(max_outage=max_outage)
        if max_outage is not None:
            self.circuits.max_outage = max_outage
        for p in self.processors:
            self.circuits.add(p.destination_name, p.max_concurrency or
                              (max_in_flight if p.is_async else 1))
        self._destinations = [p.destination_name for p in self.processors]
        # Async processors' effects run concurrently, after the batch's sync ones
        self._async = frozenset(i for i, p in enumerate(self.processors) if p.is_async)
        self.effects = (ConcurrentEffects(max_in_flight,
                                          [self.processors[i] for i in self._async],
                                          self.circuits)
                        if self._async else None)
        # Several batches in flight at once (worker.engine.inflight.InFlight): only when every
        # processor is async (sync ones run in batch order) and the ledger takes concurrent
        # sessions (memory, Redis; a SQL ledger's session is one transaction at a time).
        self.overlaps = (bool(self.processors) and len(self._async) == len(self.processors)
                         and bool(getattr(ledger, "concurrent_sessions", False)))
        # The engine's window (worker.engine.inflight.InFlight): work not done (pending()) up to
        # 16 x max_in_flight, so that nearly every key has its next effect queued when one
        # ends (measured: 4x leaves ~20% of 1,000 keys idle at any time, 16x ~10% with
        # partitions of uneven key counts); events of batches not finished yet up to 4 times
        # that (a batch finishes once its slowest key got to it), so memory stays bounded.
        self.max_pending = 16 * max_in_flight
        self.max_events_in_flight = 64 * max_in_flight
        self._pool: ThreadPoolExecutor | None = None
        self._next_prune = 0.0
        self._prune_every = prune_every
        # perf_counter() when the processor call in progress began (None between calls): read
        # by the metrics at scrape time, so a processor that never returns shows within seconds
        self._call_t0: float | None = None

    def close(self) -> None:
        """Stop the async effects' loop and the batch threads (after the engine stopped)."""
        if self.effects is not None:
            self.effects.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def call_age(self) -> float:
        """Seconds the processor call in progress has been running; 0.0 when none is."""
        t0 = self._call_t0
        return 0.0 if t0 is None else max(0.0, time.perf_counter() - t0)

    # -- the BatchHandler entry point -------------------------------------------------------
    def submit(self, messages: Sequence[Message], cancelled: Callable[[], bool]
               ) -> Future[BatchResult]:
        """Handle a batch in the background (only when `overlaps`); call in the order the
        batches were read."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="batch")
        assert self.effects is not None
        return self._pool.submit(self._handle, messages, cancelled,
                                 [self.effects.ticket(len(messages))])

    def pending(self) -> int:
        """Work handed over and not done, in messages and effects (the engine's window)."""
        return self.effects.pending() if self.effects is not None else 0

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        ticket: list[int | None] = [self.effects.ticket() if self.effects is not None else None]
        return self._handle(messages, cancelled, ticket)

    def _handle(self, messages: Sequence[Message], cancelled: Callable[[], bool],
                ticket: list[int | None]) -> BatchResult:
        """`ticket`: the batch's turn to register async effects, None once used."""
        try:
            return self._attempts(messages, cancelled, ticket)
        finally:
            if ticket[0] is not None and self.effects is not None:
                self.effects.skip(ticket[0])

    def _attempts(self, messages: Sequence[Message], cancelled: Callable[[], bool],
                  ticket: list[int | None]) -> BatchResult:
        stats = BatchStats(batch_size=len(messages))
        dead: list[DeadLetter] = []
        work = self._planner.plan(messages, stats, dead)
        delay, max_delay = self._ledger_backoff
        while True:
            if cancelled():
                return self._result(False, BatchStats(), [])
            run_stats = _fresh_run_stats(stats)
            run_dead = list(dead)
            try:
                self._run(work, run_stats, run_dead, cancelled, ticket)
            except _Cancelled:
                return self._result(False, BatchStats(), [])
            except LedgerKeyRejected as exc:
                work = self._drop_rejected(work, stats, dead, exc, cancelled)
                continue
            except LedgerUnavailable as exc:
                log.warning("ledger unavailable; retrying the batch", error=str(exc),
                            retry_in_s=round(delay, 2), batch_size=len(messages))
                self._sleep(delay, cancelled)
                delay = min(delay * 2, max_delay)
                continue
            self._maybe_prune()
            return self._result(True, run_stats, run_dead)

    def _result(self, completed: bool, stats: BatchStats, dead: list[DeadLetter]) -> BatchResult:
        """The result, carrying the ledger timings gathered since the last one."""
        stats.ledger_seconds, self._ledger_seconds = self._ledger_seconds, {}
        stats.ledger_errors, self._ledger_errors = self._ledger_errors, Counter()
        return BatchResult(completed, dead, stats)

    def _drop_rejected(self, work: list[Work], stats: BatchStats, dead: list[DeadLetter],
                       exc: LedgerKeyRejected, cancelled: Callable[[], bool]) -> list[Work]:
        """The store refused some key's data: find which keys (halving the batch, claims
        rolled back), dead-letter those (event, processor) pairs and return the rest of the
        work. The refusal is the event's fault, not an outage: the batch goes on."""
        bad = refused_keys(self.ledger, [w[3] for w in work], cancelled)
        if bad is None:
            raise _Cancelled
        if not bad:  # refused as a whole, by no single key: treat it as an outage
            raise LedgerUnavailable(str(exc)) from exc
        kept: list[Work] = []
        for item in work:
            msg, event, proc, key, _ = item
            if key in bad:
                dead_letter(msg, proc, ErrorClass.LEDGER_REJECTED,
                                  f"{exc}; key {key[:80]!r}", 1, stats, dead)
                log.error("ledger refused a key; event dead-lettered for this processor",
                          processor=proc.name, event_id=event.id[:200], topic=msg.topic(),
                          partition=msg.partition(), offset=msg.offset(), error=str(exc))
            else:
                kept.append(item)
        return kept

    def _maybe_prune(self) -> None:
        """Between batches, at most once per `prune_every` seconds: let the ledger drop done marks
        older than its retention. Each backend bounds one call's work (see
        PRUNE_CHUNKS_PER_CALL) and gates itself to its prune interval, so this costs a clock
        read almost always and a few ms now and then. A failure is logged and retried later:
        the batch is already committed."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + self._prune_every
        try:
            pruned = self._timed("prune", self.ledger.prune)
        except LedgerUnavailable as exc:
            log.warning("ledger prune failed; trying again later", error=str(exc))
            return
        if pruned:
            log.info("ledger pruned", keys=pruned)

    # -- phase 2: ledger + processors ------------------------------------------------------------
    def _run(self, work: list[Work], stats: BatchStats, dead: list[DeadLetter],
             cancelled: Callable[[], bool], ticket: list[int | None]) -> None:
        if not work:
            return
        n = len(self._names)
        ok = [0] * n
        duplicate = [0] * n
        timings: list[list[float]] = [[] for _ in range(n)]
        # A key seen twice in one batch (a redelivery that landed in the same batch) is claimed
        # once: the session answers DONE for its later copies, counted as duplicates below.
        keys = [w[3] for w in work]

        done_keys: list[str] = []
        session = self._timed("session", self.ledger.session)
        try:
            states = self._claim_all(session, keys, cancelled)
            done = done_keys.append
            transaction = session.transaction
            perf = time.perf_counter
            DONE = ClaimState.DONE
            make_ctx = Context.of_message
            concurrent = self._async  # empty (falsy) unless some processor is async
            deferred: list[Work] = []
            blocked = self.circuits.not_closed  # empty (falsy) unless a destination is down
            destinations = self._destinations
            # One clock read per call: a call's time runs from the end of the previous one, so
            # it includes the pipeline's own per-call work (~0.2 us).
            t0 = perf()
            for (msg, event, proc, key, index), state in zip(work, states, strict=True):
                if state is DONE:
                    duplicate[index] += 1
                    continue
                if concurrent and index in concurrent:
                    deferred.append((msg, event, proc, key, index))
                    continue
                if cancelled():
                    raise _Cancelled
                if blocked and destinations[index] in blocked:
                    error: BaseException | None = None  # its destination is down: not called
                else:
                    ctx = make_ctx(proc, event, msg, transaction)
                    self._call_t0 = t0
                    try:
                        if transaction is None:
                            proc.func(event, ctx)
                        else:
                            with session.savepoint():
                                proc.func(event, ctx)
                    except LedgerUnavailable:
                        raise
                    except BaseException as exc:  # see _retry
                        error = exc
                        timings[index].append(perf() - t0)
                    else:
                        t1 = perf()
                        timings[index].append(t1 - t0)
                        t0 = t1
                        ok[index] += 1
                        done(key)
                        continue
                # The slow path: wait for the destination, retries with backoff, then a dead
                # letter (or a stop).
                if self._retry((msg, event, proc, key, index), error, session, stats, dead,
                               timings, cancelled):
                    ok[index] += 1
                    done(key)
                t0 = perf()
            self._call_t0 = None
            if deferred:
                self._run_concurrent(deferred, session, stats, dead, timings, cancelled,
                                     ticket)
            self._finish_session(session, done_keys, transaction is None, cancelled)
        except _Cancelled:
            self._call_t0 = None
            self._keep_finished(session, done_keys)
            raise
        except BaseException:
            self._call_t0 = None
            quiet_rollback(session)
            raise
        outcomes = stats.outcomes
        for i, name in enumerate(self._names):
            if ok[i]:
                outcomes[(name, Outcome.OK)] += ok[i]
            if duplicate[i]:
                outcomes[(name, Outcome.DUPLICATE)] += duplicate[i]
            if timings[i]:
                stats.processing_seconds.setdefault(name, []).extend(timings[i])

    def _finish_session(self, session: LedgerSession, done_keys: list[str],
                        effects_outside: bool, cancelled: Callable[[], bool]) -> None:
        """Mark the batch's finished effects done and commit the session. On a SQL ledger the
        effects' writes live in the transaction, so an outage here loses them with it and the
        batch runs again. On a store without transactions (Redis, memory) the effects already
        happened outside it: while the store is unreachable, only this bookkeeping is retried,
        so a ledger restart repeats no effect."""
        delay, max_delay = self._ledger_backoff
        unmarked = done_keys
        while True:
            try:
                if unmarked:
                    self._timed("mark_done", session.mark_done, unmarked)
                    unmarked = []
                self._timed("commit", session.commit)
                return
            except LedgerUnavailable as exc:
                if not effects_outside or cancelled():
                    raise
                log.warning("ledger unavailable; marking the batch's finished effects done "
                            "again", error=str(exc), retry_in_s=round(delay, 2),
                            keys=len(done_keys))
            self._sleep(delay, cancelled)
            delay = min(delay * 2, max_delay)

    def _keep_finished(self, session: LedgerSession, done_keys: list[str]) -> None:
        """A cancelled batch: the effects that finished did happen, so their keys are marked
        done (with their writes, on a SQL ledger) and a redelivery skips them; the rest is
        released and runs again. Offsets stay unstored: the batch is read again."""
        try:
            if done_keys:
                self._timed("mark_done", session.mark_done, done_keys)
            self._timed("commit", session.commit)
        except Exception as exc:  # the ledger failed: the effects may repeat, as after a crash
            log.warning("could not mark the finished effects of a cancelled batch done",
                        error=str(exc), keys=len(done_keys))
            quiet_rollback(session)

    def _run_concurrent(self, work: list[Work], session: LedgerSession,
                        stats: BatchStats, dead: list[DeadLetter], timings: list[list[float]],
                        cancelled: Callable[[], bool], ticket: list[int | None]) -> None:
        """The batch's async effects (worker.processing.effects), claimed with the batch above."""
        assert self.effects is not None
        turn, ticket[0] = ticket[0], None
        try:
            released = self.effects.run(
                turn, work, stats, dead, timings, cancelled,
                lambda keys: self._timed("mark_done", session.mark_done, keys))
        except EffectsCancelled:
            raise _Cancelled from None
        if released:
            self._timed("release", session.release, released)

    def _claim_all(self, session: LedgerSession, keys: list[str],
                   cancelled: Callable[[], bool]) -> list[ClaimState]:
        states: list[ClaimState] = self._timed("claim", session.claim, keys)
        delay, max_delay = self._busy_backoff
        while True:
            busy = [i for i, s in enumerate(states) if s is ClaimState.BUSY]
            if not busy:
                return states
            # Another worker holds a lease (its effect may be in flight): wait for it to finish
            # or for its lease to expire, then claim again.
            if cancelled():
                raise _Cancelled
            self._sleep(delay, cancelled)
            delay = min(delay * 2, max_delay)
            again = self._timed("claim", session.claim, [keys[i] for i in busy])
            for i, s in zip(busy, again, strict=True):
                states[i] = s

    def _retry(self, item: Work, first_error: BaseException | None, session: LedgerSession,
               stats: BatchStats, dead: list[DeadLetter], timings: list[list[float]],
               cancelled: Callable[[], bool]) -> bool:
        """Attempt 1 raised `first_error` (None: not called, its destination is down): retry
        per the processor's policy (worker.processing.retries), or, while the destination is
        unavailable,
        wait on its circuit without spending attempts. True when the effect is finally done;
        False when it was dead-lettered (its key released)."""
        msg, event, proc, key, index = item
        transaction = session.transaction
        circuit = self.circuits[proc.destination_name]
        exc: BaseException | None = first_error
        attempt = 1  # the retry policy's count (an unavailable destination spends none)
        calls = 0 if first_error is None else 1
        waits = 0
        last: BaseException | None = None
        while True:
            after = None if exc is None else unavailable(exc)
            if exc is None or after is not None:
                if exc is not None:
                    assert after is not None
                    circuit.failure(after)
                    stats.outcomes[(proc.name, Outcome.RETRIED)] += 1
                    last, waits = exc, waits + 1
                    if circuit.state is CLOSED:
                        self._sleep(outage_wait(proc, waits, after), cancelled)
                if not self._admitted(circuit, cancelled):
                    dead_letter(msg, proc, ErrorClass.DESTINATION_UNAVAILABLE,
                                outage_reason(proc, circuit.down_seconds(), last), calls,
                                stats, dead)
                    self._timed("release", session.release, [key])
                    return False
            else:
                circuit.success()  # it answered: the destination is up
                decision = after_failure(proc, event, msg, exc, attempt)
                if isinstance(decision, GiveUp):
                    gave_up(msg, event, proc, decision, exc, calls, stats, dead)
                    self._timed("release", session.release, [key])
                    return False
                stats.outcomes[(proc.name, Outcome.RETRIED)] += 1
                self._sleep(decision.delay, cancelled)
                attempt += 1
            if cancelled():
                if circuit.state is not CLOSED:
                    circuit.release_probe()  # (granted above, and now not called)
                raise _Cancelled
            calls += 1
            ctx = Context.of_message(proc, event, msg, transaction, calls)
            t0 = self._call_t0 = time.perf_counter()
            try:
                if transaction is None:
                    proc.func(event, ctx)
                else:
                    with session.savepoint():
                        proc.func(event, ctx)
            except LedgerUnavailable:
                raise
            except BaseException as again:  # processor code (see above)
                timings[index].append(time.perf_counter() - t0)
                exc = again
                continue
            timings[index].append(time.perf_counter() - t0)
            circuit.success()
            return True

    def _admitted(self, circuit: Circuit, cancelled: Callable[[], bool]) -> bool:
        """Wait (in the handler thread) until `circuit` lets a call through: True; False once
        the destination has been unavailable for --max-outage. Raises _Cancelled when the
        engine cancels the batch (revoke, shutdown): the batch is read again later."""
        bound, first = self.circuits.max_outage, True
        while (wait := circuit.ask(bound, first)) is not None:
            if wait == 0.0:
                return True
            first = False
            self._sleep(min(wait, 1.0), cancelled)
            if cancelled():
                raise _Cancelled
        return False

    def _timed(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            result = fn(*args)
        except LedgerUnavailable:
            self._ledger_errors[op] += 1
            self._record_op(op, t0, False)
            raise
        self._record_op(op, t0, True)
        return result

    def _record_op(self, op: str, t0: float, up: bool) -> None:
        seconds = self._ledger_seconds.get(op)
        if seconds is None:
            seconds = self._ledger_seconds[op] = []
        seconds.append(time.perf_counter() - t0)
        self.ledger_up = up


def _fresh_run_stats(decoded: BatchStats) -> BatchStats:
    """Counts from decoding stay; counts from a failed ledger attempt are thrown away."""
    stats = BatchStats(batch_size=decoded.batch_size)
    stats.consumed.update(decoded.consumed)
    stats.unmatched.update(decoded.unmatched)
    stats.dead_letters.update(decoded.dead_letters)
    stats.outcomes.update(decoded.outcomes)
    stats.latency_seconds.extend(decoded.latency_seconds)
    return stats
