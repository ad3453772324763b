"""Async processors, run concurrently within a batch: effects of different ordering keys at once,
effects of one ordering key one at a time, in offset order; at most `max_in_flight` effects in
flight (and at most a processor's own `max_concurrency` of its calls).

The ordering key of an effect is its processor plus the processor's `order_by(event)` when it
has one, else the Kafka message key (producers key customer activity by customer), else the
partition (events without a key keep partition order). A retry waits in its own chain only: the
other keys flow meanwhile.

One effect's calls (slots, circuit, timeout, retries) are worker.processing.effect_calls. An
effect waiting on its destination's circuit waits in its key's chain (so a key's later effects
wait behind it); the batch does not finish meanwhile, so the engine's window fills and it
pauses the partitions (backpressure). With --park-after (batches that overlap), it waits that
long at most, then parks (worker.processing.parking): its batch finishes, the engine holds the
partition at it and reads it again later.

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
from collections import Counter
from collections.abc import Callable, Coroutine, Hashable, Iterable
from typing import Any

import structlog

from worker.processing.batch_run import BatchRun
from worker.processing.batch_trace import BatchTracer
from worker.processing.circuit import Circuits
from worker.processing.effect_calls import TP, EffectCalls, Ended
from worker.processing.parking import Parking
from worker.processing.planning import Work
from worker.processors.api import Processor
from worker.types import Message

log = structlog.get_logger(__name__)

#: Effects in flight per worker by default: enough for 100 ms calls to run at 2,500 events/s;
#: raise it (--max-in-flight) for more distinct keys at once, lower it for a fragile endpoint.
DEFAULT_MAX_IN_FLIGHT = 256

CANCEL_CHECK_S = 0.05


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
    even when several batches are in flight at once (worker.processing.batch_window)."""

    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 processors: Iterable[Processor] = (),
                 circuits: Circuits | None = None, park_after: float | None = None,
                 tracer: BatchTracer | None = None) -> None:
        """`park_after`: seconds a destination may be down before its waiting effects park
        (worker.processing.parking); None: they wait. `tracer`: told of each failed call
        (worker.processing.batch_trace), None: off."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        procs = list(processors)
        self.max_in_flight = max_in_flight
        self._circuits = circuits if circuits is not None else Circuits()
        self.parking = Parking(self._circuits, park_after)
        self.calls = EffectCalls(max_in_flight, procs, self._circuits, self.parking, tracer)
        self._live: set[int] = set()  # tickets of the batches whose effects run
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._tickets = itertools.count()
        self._turn = 0                                    # the next ticket to register
        self._turn_waiters: dict[int, asyncio.Future[None]] = {}
        self._tails: dict[Hashable, asyncio.Future[None]] = {}  # key -> its last effect
        # An async processor that is an object with `async aclose()` (e.g. the HTTP forwarder,
        # closing its client session) is closed on this loop when the effects stop.
        self._closers: list[Callable[[], Coroutine[Any, Any, None]]] = [
            getattr(p.func, "aclose") for p in procs  # noqa: B009 (func is a Callable type)
            if callable(getattr(p.func, "aclose", None))]
        # What the engine's window counts (pending()): messages of batches handed over and not
        # registered yet, plus effects registered and not finished
        self._handed: dict[int, int] = {}  # ticket -> its batch's messages
        self._waiting = 0
        self._unfinished = 0
        # ... by destination: the effects parked on a circuit that is not closed do not count
        # (a down destination must not stop the others while the engine's window has room)
        self._unfinished_by: Counter[str] = Counter()

    # -- read at scrape time (worker.observability.collectors.Effects) -------------------------
    def in_flight(self) -> int:
        return self.calls.in_flight()

    def in_flight_by_processor(self) -> dict[str, int]:
        return self.calls.in_flight_by_processor()

    def queued_by_partition(self) -> dict[TP, int]:
        return self.calls.queued_by_partition()

    def oldest_age(self) -> float:
        """Seconds the oldest effect in flight has been running; 0.0 when none is."""
        return self.calls.oldest_age()

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
        to do (done effects of a batch that is not finished yet do not count; nor do the
        effects waiting for a destination that is down: only the window of events in flight
        bounds those)."""
        blocked = self._circuits.not_closed  # empty (falsy) unless a destination is down
        parked = sum(self._unfinished_by[d] for d in list(blocked)) if blocked else 0
        return self._waiting + self._unfinished - parked

    def run(self, work: list[Work], run: BatchRun, mark: Callable[[list[str]], None]
            ) -> list[str]:
        """Run a batch's async effects (blocking the calling thread); returns the keys to
        release. Finished effects' keys go to `mark` (the batch's ledger session's mark_done)
        as they finish, every CANCEL_CHECK_S, so a crash repeats only the effects of the last
        moments, not of every batch in flight. The batch registers at its turn
        (`run.take_turn()`; None: registered already, a retry of the batch). Raises
        EffectsCancelled, or FatalProcessingError from a processor with on_failure='stop'."""
        return asyncio.run_coroutine_threadsafe(
            self._batch(run.take_turn(), work, run, mark), self._running()).result()

    def skip(self, ticket: int) -> None:
        """A batch that runs no async effect gives its turn up (without waiting)."""
        asyncio.run_coroutine_threadsafe(self._wait_turn(ticket), self._running())

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
                loop = self._loop = self.calls.loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="async-effects",
                                                daemon=True)
                self._thread.start()
                self.calls.lateness.start(loop)
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

    async def _batch(self, ticket: int | None, work: list[Work], run: BatchRun,
                     mark: Callable[[list[str]], None]) -> list[str]:
        loop = asyncio.get_running_loop()
        await self._wait_turn(ticket)  # earlier batches' effects are in the chains now
        parking = self.parking
        if ticket is not None and parking.at:
            parking.reread_from(work, ticket)
        live = run.ticket
        if live is not None:
            self._live.add(live)
        done: list[str] = []
        released: list[str] = []
        tails, queue = self._tails, self.calls.queue
        tasks = []
        by = self._unfinished_by
        for item in work:
            msg, event, proc, _, _ = item
            by[proc.destination_name] += 1
            key = ordering_key(msg, proc, event)
            mine: asyncio.Future[None] = loop.create_future()
            tasks.append(loop.create_task(self._after(tails.get(key), mine, key, item, run,
                                                      done, released)))
            tails[key] = mine
            queue(msg)
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
                if run.cancelled():
                    raise EffectsCancelled
        finally:
            if live is not None:
                self._live.discard(live)
            if parking.fences:
                parking.drop_fences(min(self._live, default=None))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            every.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await every  # (retrieved, so asyncio does not log it as unhandled)
            if len(done) > marked:
                mark(done[marked:])

    async def _after(self, previous: asyncio.Future[None] | None, mine: asyncio.Future[None],
                     key: Hashable, item: Work, run: BatchRun, done: list[str],
                     released: list[str]) -> None:
        """One effect, once the previous effect of its key is over."""
        started = [False]
        msg, _, proc, idempotency_key, _ = item
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # (cancelling us does not cancel it)
            if run.cancelled():
                raise EffectsCancelled
            ended = await self.calls.call(item, run, started)
            if ended is Ended.DONE:
                done.append(idempotency_key)
            elif ended is Ended.GAVE_UP or ended is Ended.PARKED:
                released.append(idempotency_key)
        finally:
            self._unfinished -= 1
            self._unfinished_by[proc.destination_name] -= 1
            if not started[0]:
                self.calls.unqueue(msg)
            if not mine.done():
                mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]
