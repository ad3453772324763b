"""Async processors, run concurrently within a batch: effects of different ordering keys at once,
effects of one ordering key one at a time, in offset order; at most `max_in_flight` effects in
flight (and at most a processor's own `max_concurrency` of its calls).

The ordering key of an effect is its processor plus the processor's `order_by(event)` when it
has one, else the Kafka message key (producers key customer activity by customer), else the
partition (events without a key keep partition order). A retry waits in its own chain only: the
other keys flow meanwhile.

A destination that is unavailable (worker.processing.retries.unavailable: RetryLater, a timeout, a
connection error) opens its circuit (worker.processing.circuit): its effects wait, each in its
key's chain
(so a key's later effects wait behind it), without spending retry attempts, while other
destinations' effects flow. The batch does not finish meanwhile, so the engine's window fills
and it pauses the partitions (backpressure). With --max-outage, effects that waited that long
become `destination_unavailable` dead letters.

Async processors are external effects: they get no `ctx.transaction` (a processor that writes
through the ledger's transaction stays a sync one and runs serialised inside the batch's
transaction, before the batch's async effects). The ledger claims and marks their keys exactly
as for sync processors: claimed with the batch, marked done with it once every effect of the
batch finished, so a redelivered event's effect runs once.

The event loop runs in the engine's handler thread, one batch at a time; the engine's
cancellation (revoke, shutdown) is checked every 50 ms and cancels every effect in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Hashable, Iterable
from typing import Any

import structlog

from worker.processing.circuit import Circuit, Circuits
from worker.processing.planning import Work
from worker.processing.retries import (
    GiveUp,
    Retry,
    after_failure,
    dead_letter,
    gave_up,
    outage_reason,
    outage_wait,
    unavailable,
)
from worker.processors.api import Context, Processor
from worker.types import BatchStats, DeadLetter, Message
from worker.vocabulary import CircuitState, ErrorClass, Outcome

log = structlog.get_logger("worker.processing.effects")

#: Effects in flight per worker by default: enough for 100 ms calls to run at 2,500 events/s;
#: raise it (--max-in-flight) for more distinct keys at once, lower it for a fragile endpoint.
DEFAULT_MAX_IN_FLIGHT = 256

CANCEL_CHECK_S = 0.05
CLOSED = CircuitState.CLOSED


class CallTimedOut(TimeoutError):
    """An async processor call ran past its timeout and was cancelled: the destination counts
    as unavailable (worker.processing.retries.unavailable), so the effect waits on its circuit."""


class EffectsCancelled(Exception):
    """The engine cancelled the batch while effects were in flight (those that had finished
    are marked done all the same: they happened)."""


def ordering_key(msg: Message, proc: Processor, event: Any) -> Hashable:
    if proc.order_by is not None:
        return (proc.name, proc.order_by(event))
    key = msg.key()
    if key is not None:
        return (proc.name, key)
    return (proc.name, msg.topic(), msg.partition())


class ConcurrentEffects:
    """The async effects of one pipeline, on an event loop of their own (a daemon thread).

    Ordering keys chain across batches: each effect waits for the previous effect of its key,
    wherever that one came from. Batches register their effects in the order the engine read
    them (the `ticket` taken when a batch is handed over), so a key's chain is in offset order
    even when several batches are in flight at once (Pipeline.overlaps)."""

    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 processors: Iterable[Processor] = (),
                 circuits: Circuits | None = None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        procs = list(processors)
        self.max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._tickets = itertools.count()
        self._turn = 0                                    # the next ticket to register
        self._turn_waiters: dict[int, asyncio.Future[None]] = {}
        self._tails: dict[Hashable, asyncio.Future[None]] = {}  # key -> its last effect
        self._slots = asyncio.Semaphore(max_in_flight)
        self._limits = {p.name: asyncio.Semaphore(p.max_concurrency) for p in procs
                        if p.max_concurrency is not None}
        self._started: dict[int, float] = {}   # effect in flight -> perf_counter() at start
        # processor -> its calls in flight (every async processor shown, at 0 too)
        self._per_processor: Counter[str] = Counter(dict.fromkeys((p.name for p in procs), 0))
        # An async processor that is an object with `async aclose()` (e.g. the HTTP forwarder,
        # closing its client session) is closed on this loop when the effects stop.
        self._closers: list[Callable[[], Coroutine[Any, Any, None]]] = [
            getattr(p.func, "aclose") for p in procs  # noqa: B009 (func is a Callable type)
            if callable(getattr(p.func, "aclose", None))]
        self._queued: Counter[tuple[str, int]] = Counter()  # partition -> effects not started
        # What the engine's window counts (pending()): messages of batches handed over and not
        # registered yet, plus effects registered and not finished
        self._handed: dict[int, int] = {}  # ticket -> its batch's messages
        self._waiting = 0
        self._unfinished = 0
        # Each destination's circuit (worker.processing.circuit): an unavailable one holds its
        # effects
        # back, in their key's order, while the other destinations' effects flow
        self._circuits = circuits if circuits is not None else Circuits()
        for p in procs:
            self._circuits.add(p.destination_name, p.max_concurrency or max_in_flight)
        self._wake: dict[str, asyncio.Event] = {}  # destination -> wakes its waiting effects
        self._circuits.listen(self._circuit_changed)

    # -- read at scrape time (worker.observability.collectors.Effects) -------------------------
    def in_flight(self) -> int:
        return len(self._started)

    def in_flight_by_processor(self) -> dict[str, int]:
        return dict(self._per_processor)

    def queued_by_partition(self) -> dict[tuple[str, int], int]:
        # Every partition that has had an async effect, at 0 too: the series exists from the
        # first effect on (a dashboard shows 0, not "no data", between bursts).
        return dict(list(self._queued.items()))

    def oldest_age(self) -> float:
        """Seconds the oldest effect in flight has been running; 0.0 when none is."""
        started = list(self._started.values())
        return max(0.0, time.perf_counter() - min(started)) if started else 0.0

    # -- batches ---------------------------------------------------------------------------------
    def ticket(self, messages: int = 0) -> int:
        """A batch's place in the order of registration; take it when the batch is read."""
        with self._lock:
            ticket = next(self._tickets)
            self._handed[ticket] = messages
            self._waiting += messages
        return ticket

    def pending(self) -> int:
        """Messages handed over but not registered, plus effects not finished: the work still
        to do (done effects of a batch that is not finished yet do not count)."""
        return self._waiting + self._unfinished

    def run(self, ticket: int | None, work: list[Work], stats: BatchStats,
            dead: list[DeadLetter], timings: list[list[float]],
            cancelled: Callable[[], bool], mark: Callable[[list[str]], None]) -> list[str]:
        """Run a batch's async effects (blocking the calling thread); returns the keys to
        release. Finished effects' keys go to `mark` (the batch's ledger session's mark_done)
        as they finish, every CANCEL_CHECK_S, so a crash repeats only the effects of the last
        moments, not of every batch in flight. `ticket` None: registered already (a retry of
        the batch). Raises EffectsCancelled, or FatalProcessingError from a processor with
        on_failure='stop'."""
        return asyncio.run_coroutine_threadsafe(
            self._batch(ticket, work, stats, dead, timings, cancelled, mark), self._running()
        ).result()

    def skip(self, ticket: int) -> None:
        """A batch that runs no async effect gives its turn up (without waiting)."""
        asyncio.run_coroutine_threadsafe(self._skip(ticket), self._running())

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            if self._closers:
                with contextlib.suppress(Exception):  # closing is best effort, bounded
                    asyncio.run_coroutine_threadsafe(self._close_processors(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread, self._thread = self._thread, None
            if thread is not None:
                thread.join(5)
                if not thread.is_alive():
                    loop.close()

    async def _close_processors(self) -> None:
        for close in self._closers:
            try:
                await close()
            except Exception as exc:
                log.warning("an async processor failed to close", error=str(exc))

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="async-effects",
                                                daemon=True)
                self._thread.start()
            return self._loop

    async def _wait_turn(self, ticket: int | None) -> None:
        if ticket is None:
            return
        with self._lock:
            self._waiting -= self._handed.pop(ticket, 0)
        while self._turn < ticket:
            waiter = self._turn_waiters.get(ticket)
            if waiter is None:
                waiter = self._turn_waiters[ticket] = asyncio.get_running_loop().create_future()
            await waiter
        self._turn = max(self._turn, ticket + 1)
        nxt = self._turn_waiters.pop(self._turn, None)
        if nxt is not None and not nxt.done():
            nxt.set_result(None)

    async def _skip(self, ticket: int) -> None:
        await self._wait_turn(ticket)

    async def _batch(self, ticket: int | None, work: list[Work], stats: BatchStats,
                     dead: list[DeadLetter], timings: list[list[float]],
                     cancelled: Callable[[], bool], mark: Callable[[list[str]], None]
                     ) -> list[str]:
        loop = asyncio.get_running_loop()
        await self._wait_turn(ticket)  # earlier batches' effects are in the chains now
        done: list[str] = []
        released: list[str] = []
        tails, queued = self._tails, self._queued
        tasks = []
        for item in work:
            key = ordering_key(item[0], item[2], item[1])
            mine: asyncio.Future[None] = loop.create_future()
            tasks.append(loop.create_task(self._after(tails.get(key), mine, key, item, stats,
                                                      dead, timings, cancelled, done,
                                                      released)))
            tails[key] = mine
            queued[(item[0].topic() or "", item[0].partition() or 0)] += 1
        self._unfinished += len(work)
        every = asyncio.gather(*tasks)
        marked = 0
        try:
            while True:
                finished, _ = await asyncio.wait([every], timeout=CANCEL_CHECK_S)
                if finished:
                    every.result()  # a FatalProcessingError stops the batch here
                    return released
                if len(done) > marked:
                    mark(done[marked:])
                    marked = len(done)
                if cancelled():
                    raise EffectsCancelled
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            every.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await every  # (retrieved, so asyncio does not log it as unhandled)
            if len(done) > marked:
                mark(done[marked:])

    async def _after(self, previous: asyncio.Future[None] | None, mine: asyncio.Future[None],
                     key: Hashable, item: Work, stats: BatchStats, dead: list[DeadLetter],
                     timings: list[list[float]], cancelled: Callable[[], bool],
                     done: list[str], released: list[str]) -> None:
        """One effect, once the previous effect of its key is over."""
        started = [False]
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # (cancelling us does not cancel it)
            if cancelled():
                raise EffectsCancelled
            ok = await self._effect(item, stats, dead, timings, started)
            (done if ok else released).append(item[3])
        finally:
            self._unfinished -= 1
            if not started[0]:
                self._queued[(item[0].topic() or "", item[0].partition() or 0)] -= 1
            if not mine.done():
                mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]

    async def _effect(self, item: Work, stats: BatchStats, dead: list[DeadLetter],
                      timings: list[list[float]], started: list[bool]) -> bool:
        msg, event, proc, _key, index = item
        slots, limit = self._slots, self._limits.get(proc.name)
        circuit = self._circuits[proc.destination_name]
        attempt = 1  # the retry policy's count: a failure of an unavailable destination
        calls = 0    # spends none (it waits on the circuit instead)
        waits = 0
        last: BaseException | None = None
        granted = False  # the circuit let this call through while not closed (a probe)
        while True:
            if circuit.state is not CLOSED and not granted:
                if not await self._admitted(circuit):
                    self._gave_up_waiting(msg, proc, circuit, last, calls, stats, dead,
                                          started)
                    return False
                granted = True
            error: BaseException | None = None
            async with slots:
                if limit is not None:
                    await limit.acquire()
                if circuit.state is not CLOSED and not granted:
                    # It opened while this call waited for a slot: wait on the circuit instead
                    if limit is not None:
                        limit.release()
                    continue
                probe, granted = granted, False
                if not started[0]:
                    self._queued[(msg.topic() or "", msg.partition() or 0)] -= 1
                    started[0] = True
                effect = next(self._ids)
                t0 = self._started[effect] = time.perf_counter()
                self._per_processor[proc.name] += 1
                calls += 1
                try:
                    call: Coroutine[Any, Any, None] = proc.func(  # type: ignore[assignment]
                        event, Context.of_message(proc, event, msg, None, calls))
                    if proc.timeout is None:
                        await call
                    else:
                        try:
                            await asyncio.wait_for(call, proc.timeout)
                        except TimeoutError:
                            raise CallTimedOut(f"processor {proc.name!r} did not return "
                                               f"within {proc.timeout:g} s; cancelled"
                                               ) from None
                except asyncio.CancelledError:
                    if probe:
                        circuit.release_probe()
                    raise
                except BaseException as exc:  # processor code (see worker.processing.retries)
                    error = exc
                finally:
                    timings[index].append(time.perf_counter() - t0)
                    del self._started[effect]
                    self._per_processor[proc.name] -= 1
                    if limit is not None:
                        limit.release()
            if error is None:
                circuit.success()
                stats.outcomes[(proc.name, Outcome.OK)] += 1
                return True
            after = unavailable(error)
            if after is not None:  # the destination's fault, not the event's: wait, no attempt
                circuit.failure(after)
                stats.outcomes[(proc.name, Outcome.RETRIED)] += 1
                last = error
                waits += 1
                if circuit.state is CLOSED:
                    await asyncio.sleep(outage_wait(proc, waits, after))
                continue
            circuit.success()  # it answered: the destination is up
            decision = after_failure(proc, event, msg, error, attempt)
            if isinstance(decision, Retry):
                stats.outcomes[(proc.name, Outcome.RETRIED)] += 1
                await asyncio.sleep(decision.delay)  # this chain waits; the others flow
                attempt += 1
                continue
            assert isinstance(decision, GiveUp)
            gave_up(msg, event, proc, decision, error, calls, stats, dead)
            return False

    async def _admitted(self, circuit: Circuit) -> bool:
        """Wait until `circuit` lets a call through (True), or until the destination has been
        unavailable for --max-outage (False). Cancelled with the batch (revoke, shutdown)."""
        bound, first = self._circuits.max_outage, True
        while (wait := circuit.ask(bound, first)) is not None:
            if wait == 0.0:
                return True
            first = False
            wake = self._wake.get(circuit.name)
            if wake is None:
                wake = self._wake[circuit.name] = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
        return False

    def _gave_up_waiting(self, msg: Message, proc: Processor, circuit: Circuit,
                         last: BaseException | None, calls: int, stats: BatchStats,
                         dead: list[DeadLetter], started: list[bool]) -> None:
        """Past --max-outage: dead-letter it as `destination_unavailable` (replayable)."""
        if not started[0]:
            self._queued[(msg.topic() or "", msg.partition() or 0)] -= 1
            started[0] = True
        dead_letter(msg, proc, ErrorClass.DESTINATION_UNAVAILABLE,
                    outage_reason(proc, circuit.down_seconds(), last), calls, stats, dead)

    def _circuit_changed(self, circuit: Circuit) -> None:
        """(any thread) Wake the effects waiting on `circuit`."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_waiters, circuit.name)

    def _wake_waiters(self, name: str) -> None:
        wake = self._wake.pop(name, None)
        if wake is not None:
            wake.set()
