"""The processing half of the worker: decode → route → claim in the ledger → run processors
(with retries) → mark done. The engine (worker.engine.loop) hands it batches and stores offsets
only when it returns `BatchResult(completed=True)`.

One batch is one ledger session: a single claim round trip for every (event, processor) key, the
processors' effects, a single mark-done round trip, one commit. On SQL ledgers all of it is one
transaction, so a crash anywhere leaves either every effect of the batch with its done marks, or
none of them (and the events come back from Kafka).

Who does what: planning (worker.processing.planning: decode, route, keys), the ledger calls
(worker.processing.ledger_calls), the sync processors (worker.processing.sync_calls), the async
ones (worker.processing.effects), the batch window (worker.processing.batch_window); what one
batch counted travels in a worker.processing.batch_run.BatchRun.

Outcomes per (event, processor): `worker.vocabulary.Outcome` (ok, duplicate, retried,
dead_lettered); why an event was dead-lettered: `worker.vocabulary.ErrorClass`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from worker.errors import LedgerKeyRejected, LedgerUnavailable
from worker.ledger.base import ClaimState, Ledger
from worker.outputs import EmittedMarks, OutputSink, OutputUnavailable
from worker.processing.batch_run import BatchCancelled, BatchRun
from worker.processing.batch_trace import BatchSpans, BatchTracer
from worker.processing.batch_window import OverlappingBatches
from worker.processing.circuit import Circuits
from worker.processing.effects import DEFAULT_MAX_IN_FLIGHT, ConcurrentEffects, EffectsCancelled
from worker.processing.ledger_calls import (
    PRUNE_CHECK_S,
    LedgerCalls,
    Sleep,
    interruptible_sleep,
    quiet_rollback,
)
from worker.processing.planning import Resolver, Unmatched, Work, WorkPlanner
from worker.processing.sync_calls import SyncCalls
from worker.processors.api import Processor
from worker.types import BatchResult, BatchStats, Message
from worker.vocabulary import ErrorClass

log = structlog.get_logger(__name__)


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
        sleep: Sleep | None = None,
        prune_every: float = PRUNE_CHECK_S,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_outage: float | None = None,
        park_after: float | None = None,
        circuits: Circuits | None = None,
        outputs: OutputSink | None = None,
        emitted_marks: EmittedMarks | None = None,
        tracer: BatchTracer | None = None,
    ) -> None:
        """`max_outage`: seconds a destination may be unavailable before the events waiting
        for it are dead-lettered (`destination_unavailable`); None waits as long as it takes.
        `park_after`: seconds a destination may be unavailable before the async effects
        waiting for it park (worker.processing.parking: their partition is held and read
        again later); only when batches overlap (`window`); None: they wait.
        `circuits`: the destinations' circuit breakers (worker.processing.circuit; tests pass
        one with a fake clock). `outputs`: where records emitted by processors go
        (worker.outputs; None: a processor that emits stops the worker). `emitted_marks`:
        exactly-once mode, each batch one Kafka transaction (worker.engine.transactions):
        batches never overlap, records not acknowledged end the batch (the engine aborts its
        transaction and reads it again) instead of running it again here, and emitting
        effects are marked done in `emitted_marks`, inside the transaction, not in the ledger
        (docs/processors.md, "Exactly-once mode"). `tracer`: spans per batch, ledger call and
        sampled processor call (worker.processing.batch_trace; None: tracing is off)."""
        if router is None:
            from worker.processing.routing import Router

            router = Router(list(processors))
        self.processors = list(processors)
        self.router = router
        self.ledger = ledger
        self.outputs = outputs
        self.emitted_marks = emitted_marks
        self.exactly_once = exactly_once = emitted_marks is not None
        self.unmatched = unmatched
        self.tracer = tracer
        self._sleep = sleep or interruptible_sleep
        self._ledger = LedgerCalls(ledger, self._sleep, ledger_backoff=ledger_backoff,
                                   busy_backoff=busy_backoff, prune_every=prune_every,
                                   emitted_marks=emitted_marks)
        names = [p.name for p in self.processors]
        self._names = names
        self._planner = WorkPlanner({name: i for i, name in enumerate(names)}, router,
                                    unmatched)
        # A circuit per destination (worker.processing.circuit), sync and async processors
        self.circuits = circuits if circuits is not None else Circuits(max_outage=max_outage)
        if max_outage is not None:
            self.circuits.max_outage = max_outage
        for p in self.processors:
            self.circuits.add(p.destination_name, p.max_concurrency or
                              (max_in_flight if p.is_async else 1))
        # Async processors' effects run concurrently, after the batch's sync ones
        concurrent = frozenset(i for i, p in enumerate(self.processors) if p.is_async)
        # Several batches in flight at once: only when every processor is async and the
        # ledger takes concurrent sessions (worker.processing.batch_window); only then do
        # effects park (a batch that waits holds nothing else back)
        overlap = (not exactly_once and bool(concurrent)
                   and len(concurrent) == len(self.processors) and ledger.concurrent_sessions)
        self.effects = (ConcurrentEffects(max_in_flight,
                                          [self.processors[i] for i in concurrent],
                                          self.circuits, park_after if overlap else None,
                                          tracer)
                        if concurrent else None)
        self._sync = SyncCalls(self.processors, concurrent, self.circuits, self._ledger,
                               self._sleep, tracer)
        self.window: OverlappingBatches | None = None
        if overlap and self.effects is not None:
            self.window = OverlappingBatches(self._handle, self.effects)

    @property
    def overlaps(self) -> bool:
        """Whether batches overlap (the engine reads on while earlier ones run)."""
        return self.window is not None

    @property
    def ledger_up(self) -> bool:
        """False from a failed ledger call until one succeeds (/readyz, the ledger_up gauge)."""
        return self._ledger.up

    def close(self) -> None:
        """Stop the async effects' loop and the batch threads (after the engine stopped)."""
        if self.effects is not None:
            self.effects.close()
        if self.window is not None:
            self.window.close()

    def call_age(self) -> float:
        """Seconds the sync processor call in progress has been running; 0.0 when none is."""
        t0 = self._sync.call_t0
        return 0.0 if t0 is None else max(0.0, time.perf_counter() - t0)

    # -- the BatchHandler entry point -------------------------------------------------------
    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        return self._handle(messages, cancelled,
                            self.effects.ticket() if self.effects is not None else None)

    def _handle(self, messages: Sequence[Message], cancelled: Callable[[], bool],
                turn: int | None) -> BatchResult:
        """`turn`: the batch's turn to register async effects (None without async ones)."""
        run = BatchRun(len(messages), len(self._names), cancelled, turn, self.outputs)
        if self.tracer is not None:
            run.trace = self.tracer.begin(messages)
        try:
            if run.trace is None:
                return self._attempts(messages, run)
            return _traced(self._attempts, messages, run, run.trace)
        finally:
            unused = run.take_turn()
            if unused is not None and self.effects is not None:
                self.effects.skip(unused)

    def _attempts(self, messages: Sequence[Message], run: BatchRun) -> BatchResult:
        tracer = self.tracer
        if tracer is None:
            work = self._planner.plan(messages, run)
        else:
            work = _plan_traced(self._planner, tracer, messages, run)
        delay, max_delay = self._ledger.backoff
        while True:
            if run.cancelled():
                return self._cancelled()
            run.new_attempt()
            try:
                self._run(work, run)
            except BatchCancelled:
                return self._cancelled()
            except LedgerKeyRejected as exc:
                try:
                    work = self._drop_rejected(work, run, exc)
                except BatchCancelled:
                    return self._cancelled()
                continue
            except OutputUnavailable as exc:
                if self.exactly_once:  # the transaction is doomed: the engine aborts it
                    log.warning("emitted records not acknowledged; the batch's transaction is "
                                "aborted and the batch read again", error=str(exc))
                    return self._cancelled()
                log.warning("emitted records not acknowledged; retrying the batch",
                            error=str(exc), retry_in_s=round(delay, 2),
                            batch_size=len(messages))
                self._sleep(delay, run.cancelled)
                delay = min(delay * 2, max_delay)
                continue
            except LedgerUnavailable as exc:
                log.warning("ledger unavailable; retrying the batch", error=str(exc),
                            retry_in_s=round(delay, 2), batch_size=len(messages))
                self._sleep(delay, run.cancelled)
                delay = min(delay * 2, max_delay)
                continue
            self._ledger.maybe_prune()
            stats = run.stats
            for i, seconds in enumerate(run.timings):
                if seconds:
                    stats.processing_seconds.setdefault(self._names[i], []).extend(seconds)
            self._ledger.hand_over_timings(stats)
            return BatchResult(True, run.dead, stats, run.parked or None)

    def _cancelled(self) -> BatchResult:
        """A cancelled batch's result: nothing but the ledger timings gathered so far."""
        stats = BatchStats()
        self._ledger.hand_over_timings(stats)
        return BatchResult(False, [], stats)

    def _run(self, work: list[Work], run: BatchRun) -> None:
        """Phase 2, one ledger session: claim every key, the sync processors, the async ones,
        mark done and commit."""
        if not work:
            return
        ledger = self._ledger
        session = ledger.timed("session", self.ledger.session)
        if run.trace is not None:
            session = run.trace.session(session)
        try:
            states = ledger.claim_all(session, [key for _, _, _, key, _ in work], run)
            if self.emitted_marks is not None:
                _skip_emitted(self.emitted_marks, work, states)
            deferred = self._sync.run(work, states, session, run)
            if deferred:
                assert self.effects is not None
                try:
                    released = self.effects.run(
                        deferred, run, lambda keys: ledger.timed("mark_done", session.mark_done,
                                                                 keys))
                except EffectsCancelled:
                    raise BatchCancelled from None
                if released:
                    ledger.timed("release", session.release, released)
            ledger.finish(session, run)
        except BatchCancelled:
            ledger.keep_finished(session, run.done)
            raise
        except BaseException:
            quiet_rollback(session)
            raise

    def _drop_rejected(self, work: list[Work], run: BatchRun, exc: LedgerKeyRejected
                       ) -> list[Work]:
        """The store refused some key's data: find which keys (halving the batch, claims
        rolled back), dead-letter those (event, processor) pairs and return the rest of the
        work. The refusal is the event's fault, not an outage: the batch goes on."""
        bad = self._ledger.refused_keys([key for _, _, _, key, _ in work], run)
        if not bad:  # refused as a whole, by no single key: treat it as an outage
            raise LedgerUnavailable(str(exc)) from exc
        kept: list[Work] = []
        for item in work:
            msg, event, proc, key, _ = item
            if key in bad:
                run.dead_letter(msg, proc, ErrorClass.LEDGER_REJECTED, f"{exc}; key {key[:80]!r}",
                                every_attempt=True)
                log.error("ledger refused a key; event dead-lettered for this processor",
                          processor=proc.name, event_id=event.id[:200], topic=msg.topic(),
                          partition=msg.partition(), offset=msg.offset(), error=str(exc))
            else:
                kept.append(item)
        return kept


def _traced(attempts: Callable[[Sequence[Message], BatchRun], BatchResult],
            messages: Sequence[Message], run: BatchRun, spans: BatchSpans) -> BatchResult:
    try:
        result = attempts(messages, run)
    except BaseException as exc:
        spans.end(False, exc)
        raise
    spans.end(result.completed)
    return result


def _plan_traced(planner: WorkPlanner, tracer: BatchTracer, messages: Sequence[Message],
                 run: BatchRun) -> list[Work]:
    """The batch's work, the sampled events' with a traced twin of their processor: all of
    it when every event is sampled, else the work planning found for them."""
    chosen = tracer.choose(messages)
    if not chosen:
        return planner.plan(messages, run)
    if len(chosen) == len(messages):
        work = planner.plan(messages, run)
        tracer.trace(work, range(len(work)))
        return work
    found: list[int] = []
    work = planner.plan(messages, run, chosen, found)
    tracer.trace(work, found)
    return work


def _skip_emitted(marks: EmittedMarks, work: list[Work], states: list[ClaimState]) -> None:
    """Exactly-once mode: an effect that emitted in a committed transaction is a duplicate,
    though the ledger (which never marks emitting effects done in this mode) answered NEW."""
    new, done = ClaimState.NEW, ClaimState.DONE
    for i, state in enumerate(states):
        if state is new:
            msg, _, _, key, _ = work[i]
            if marks.emitted((msg.topic() or "", msg.partition() or 0), key):
                states[i] = done
