"""A batch's sync processors: called one after another in offset order, inside the batch's ledger
session (on a SQL ledger each call in a savepoint of its transaction, so a failed call's writes
go and the batch's stay). A failure retries per the processor's policy (worker.processing.retries)
or, while its destination is unavailable, waits on the destination's circuit without spending
attempts; then the event is dead-lettered for that processor, or the worker stops.

The loop over the batch's work is the worker's hot path: locals instead of attribute lookups,
one clock read per call, counts in per-processor lists folded into the stats once per batch."""

from __future__ import annotations

import time
from collections.abc import Sequence

from worker.errors import LedgerUnavailable
from worker.events import Event
from worker.ledger.base import ClaimState, LedgerSession
from worker.outputs import OutputRecord
from worker.processing.batch_run import BatchCancelled, BatchRun
from worker.processing.batch_trace import BatchTracer
from worker.processing.circuit import CLOSED, Circuit, Circuits
from worker.processing.ledger_calls import LedgerCalls, Sleep
from worker.processing.planning import Work
from worker.processing.retries import (
    GiveUp,
    after_failure,
    outage_reason,
    outage_wait,
    unavailable,
)
from worker.processors.api import Context, Processor
from worker.types import Message
from worker.vocabulary import ErrorClass, Outcome


class SyncCalls:
    def __init__(self, processors: Sequence[Processor], concurrent: frozenset[int],
                 circuits: Circuits, ledger: LedgerCalls, sleep: Sleep,
                 tracer: BatchTracer | None = None) -> None:
        """`concurrent`: the indexes of the async processors, whose work is handed back;
        `tracer`: told of each failed call (worker.processing.batch_trace), None: off."""
        self._tracer = tracer
        self._names = [p.name for p in processors]
        self._destinations = [p.destination_name for p in processors]
        self._concurrent = concurrent
        self._circuits = circuits
        self._ledger = ledger
        self._sleep = sleep
        # perf_counter() when the processor call in progress began (None between calls): read
        # by the metrics at scrape time, so a processor that never returns shows within seconds
        self.call_t0: float | None = None

    def run(self, work: list[Work], states: list[ClaimState], session: LedgerSession,
            run: BatchRun) -> list[Work]:
        """Call the sync processors on the claimed work, in order; return the async
        processors' work (claimed, not done yet). Finished keys go to `run.done`."""
        n = len(self._names)
        ok = [0] * n
        duplicate = [0] * n
        timings = run.timings
        done = run.done.append
        cancelled = run.cancelled
        transaction = session.transaction
        perf = time.perf_counter
        DONE = ClaimState.DONE
        make_ctx = Context.of_message
        concurrent = self._concurrent  # empty (falsy) unless some processor is async
        deferred: list[Work] = []
        blocked = self._circuits.not_closed  # empty (falsy) unless a destination is down
        destinations = self._destinations
        # A key seen twice in one batch (a redelivery that landed in the same batch) is claimed
        # once: the session answers DONE for its later copies, counted as duplicates.
        # One clock read per call: a call's time runs from the end of the previous one, so it
        # includes the loop's own per-call work (~0.2 us).
        t0 = perf()
        try:
            for item, state in zip(work, states, strict=True):
                msg, event, proc, key, index = item
                if state is DONE:
                    duplicate[index] += 1
                    continue
                if concurrent and index in concurrent:
                    deferred.append(item)
                    continue
                if cancelled():
                    raise BatchCancelled
                if blocked and destinations[index] in blocked:
                    error: BaseException | None = None  # its destination is down: not called
                else:
                    ctx = make_ctx(proc, event, msg, transaction)
                    self.call_t0 = t0
                    try:
                        if transaction is None:
                            proc.func(event, ctx)
                        else:
                            with session.savepoint():
                                proc.func(event, ctx)
                    except LedgerUnavailable:
                        raise
                    except BaseException as exc:  # see worker.processing.retries
                        error = exc
                        timings[index].append(perf() - t0)
                    else:
                        t1 = perf()
                        timings[index].append(t1 - t0)
                        t0 = t1
                        ok[index] += 1
                        if ctx._emitted is None:
                            done(key)
                        else:
                            run.emitted(key, ctx._emitted, msg)
                        continue
                # The slow path: wait for the destination, retries with backoff, then a dead
                # letter (or a stop).
                if self._retry(item, error, session, run):
                    ok[index] += 1
                t0 = perf()
        finally:
            self.call_t0 = None
        outcomes = run.stats.outcomes
        circuits = self._circuits
        for i, name in enumerate(self._names):
            if ok[i]:
                outcomes[(name, Outcome.OK)] += ok[i]
                circuits[destinations[i]].count_successes(ok[i])  # for its failure share
            if duplicate[i]:
                outcomes[(name, Outcome.DUPLICATE)] += duplicate[i]
        return deferred

    def _retry(self, item: Work, first_error: BaseException | None, session: LedgerSession,
               run: BatchRun) -> bool:
        """Attempt 1 raised `first_error` (None: not called, its destination is down): retry
        per the processor's policy, or, while the destination is unavailable, wait on its
        circuit without spending attempts. True when the effect is finally done (its key in
        `run.done`, or held with its records); False when it was dead-lettered (its key
        released)."""
        msg, event, proc, key, index = item
        circuit = self._circuits[proc.destination_name]
        outcomes, timings = run.stats.outcomes, run.timings[index]
        exc: BaseException | None = first_error
        tracer = self._tracer
        if tracer is not None and first_error is not None:
            tracer.failed(msg, event, proc, 1, first_error)
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
                    outcomes[(proc.name, Outcome.RETRIED)] += 1
                    last, waits = exc, waits + 1
                    if circuit.state is CLOSED:
                        self._sleep(outage_wait(proc, waits, after), run.cancelled)
                if not self._admitted(circuit, run):
                    run.dead_letter(msg, proc, ErrorClass.DESTINATION_UNAVAILABLE,
                                    outage_reason(proc, circuit.down_seconds(), last), calls)
                    self._ledger.timed("release", session.release, [key])
                    return False
            else:
                circuit.success()  # it answered: the destination is up
                decision = after_failure(proc, event, msg, exc, attempt)
                if isinstance(decision, GiveUp):
                    run.gave_up(msg, event, proc, decision.error_class, decision.reason, exc,
                                calls)
                    self._ledger.timed("release", session.release, [key])
                    return False
                outcomes[(proc.name, Outcome.RETRIED)] += 1
                self._sleep(decision.delay, run.cancelled)
                attempt += 1
            if run.cancelled():
                if circuit.state is not CLOSED:
                    circuit.release_probe()  # (granted above, and now not called)
                raise BatchCancelled
            calls += 1
            t0 = self.call_t0 = time.perf_counter()
            try:
                emitted = _call_in_session(proc, event, msg, session, calls)
            except LedgerUnavailable:
                raise
            except BaseException as again:  # processor code (see above)
                timings.append(time.perf_counter() - t0)
                exc = again
                if tracer is not None:
                    tracer.failed(msg, event, proc, calls, again)
                continue
            timings.append(time.perf_counter() - t0)
            circuit.success()
            if emitted is None:
                run.done.append(key)
            else:
                run.emitted(key, emitted, msg)
            return True

    def _admitted(self, circuit: Circuit, run: BatchRun) -> bool:
        """Wait (in the handler thread) until `circuit` lets a call through: True; False once
        the destination has been unavailable for --max-outage. Raises BatchCancelled when the
        engine cancels the batch (revoke, shutdown): the batch is read again later."""
        bound, first = self._circuits.max_outage, True
        while (wait := circuit.ask(bound, first)) is not None:
            if wait == 0.0:
                return True
            first = False
            self._sleep(min(wait, 1.0), run.cancelled)
            run.check()
        return False


def _call_in_session(proc: Processor, event: Event, msg: Message, session: LedgerSession,
                     calls: int) -> list[OutputRecord] | None:
    """One call of a sync processor (the retry path; the hot loop above inlines it); returns
    the records it emitted (None: none)."""
    ctx = Context.of_message(proc, event, msg, session.transaction, calls)
    if session.transaction is None:
        proc.func(event, ctx)
    else:
        with session.savepoint():
            proc.func(event, ctx)
    return ctx._emitted
