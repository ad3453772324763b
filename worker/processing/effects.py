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
from collections import Counter, deque
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
from worker.vocabulary import EffectWait

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
        # ordering key -> its effects registered and not started, run by a drain of its own
        self._chains: dict[Hashable, deque[tuple[_Batch, int]]] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._ready: deque[tuple[Hashable, deque[tuple[_Batch, int]]]] = deque()  # no drain yet
        self._draining = 0  # drains running
        self.calls.on_blocked = self._start_drains
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

    def keys_active(self) -> int:
        """Ordering keys with an effect running or waiting."""
        return len(self._chains)

    def waiting_by_reason(self) -> dict[EffectWait, int]:
        """Effects registered and not started, by what holds them back (worker.vocabulary.
        EffectWait): behind an earlier effect of their key, for a slot, or for their
        destination."""
        calls, ready = self.calls, len(self._ready)  # (a ready key's first effect is in
        queued = sum(len(chain) for chain in list(self._chains.values()))  # its chain still)
        return {EffectWait.KEY_ORDER: max(0, queued - ready),
                EffectWait.SLOT: ready + calls.waiting_for_slot(),
                EffectWait.DESTINATION: calls.waiting_for_destination}

    def free_slots(self) -> int:
        """Slots of --max-in-flight no effect holds: idle capacity."""
        return self.calls.free_slots()

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
        batch = _Batch(run, work, loop.create_future())
        chains, queue, by, ready = self._chains, self.calls.queue, self._unfinished_by, self._ready
        for i, item in enumerate(work):
            msg, event, proc, _, _ = item
            by[proc.destination_name] += 1
            key = ordering_key(msg, proc, event)
            chain = chains.get(key)
            if chain is None:  # the key's first effect in flight: it waits for a drain
                chain = chains[key] = deque(((batch, i),))
                ready.append((key, chain))
            else:
                chain.append((batch, i))
            queue(msg)
        self._unfinished += len(work)
        self._start_drains()
        if not work:
            batch.over.set_result(None)
        done = batch.done
        marked = 0
        try:
            while True:
                finished, _ = await asyncio.wait([batch.over], timeout=CANCEL_CHECK_S)
                if finished:
                    if batch.error is not None:
                        raise batch.error  # a FatalProcessingError stops the batch here
                    return batch.released
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
            if batch.left:
                await self._cancel(batch)
            if len(done) > marked:
                mark(done[marked:])

    def _start_drains(self) -> None:
        """Start a drain for each key waiting for one, while fewer drains than --max-in-flight
        are free to call (a drain blocked on its destination or a retry's backoff does not
        count, so a destination that is down holds no other's keys back)."""
        ready, calls, bound = self._ready, self.calls, self.max_in_flight
        while ready and self._draining - calls.blocked < bound:
            key, chain = ready.popleft()
            self._draining += 1
            drain = asyncio.get_running_loop().create_task(self._drain(key, chain))
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)

    async def _drain(self, key: Hashable, chain: deque[tuple[_Batch, int]]) -> None:
        """Run one ordering key's effects, one at a time in the order they were registered,
        until none is left; then the next key waiting for a drain, if there is room. One
        task per key in flight at most (not one per effect), and no more tasks than that:
        with 10,000 keys ready and --max-in-flight 1,000, 1,000 drains go from key to key
        instead of 10,000 tasks waiting for a slot."""
        ready, calls = self._ready, self.calls
        try:
            while True:
                await self._drain_key(key, chain)
                if not ready or self._draining - calls.blocked > self.max_in_flight:
                    return
                key, chain = ready.popleft()
        finally:
            self._draining -= 1

    async def _drain_key(self, key: Hashable, chain: deque[tuple[_Batch, int]]) -> None:
        calls, task = self.calls, asyncio.current_task()
        try:
            while chain:
                batch, i = chain.popleft()
                state = batch.state
                if state[i] != _QUEUED:
                    continue  # its batch was cancelled meanwhile (and counted it over)
                item, run = batch.work[i], batch.run
                state[i] = _RUNNING
                started = [False]
                ended: Ended | None = None
                if batch.cancelled or run.cancelled():
                    if batch.error is None:  # not done: the batch must not count as finished
                        batch.error = EffectsCancelled()
                else:
                    batch.running[i] = task
                    try:
                        ended = await calls.call(item, run, started)
                    except asyncio.CancelledError:
                        # Its batch was cancelled (_cancel): the key goes on with the next.
                        # Any other cancellation fails the batch, so it is read again.
                        if not batch.cancelled and batch.error is None:
                            batch.error = EffectsCancelled()
                    except BaseException as exc:  # FatalProcessingError, or a bug
                        if batch.error is None:
                            batch.error = exc
                    finally:
                        batch.running.pop(i, None)
                        # (a cancellation the call swallowed must not hit a later effect)
                        while task is not None and task.cancelling():
                            task.uncancel()
                self._over(batch, i, ended, started[0])
        finally:
            if self._chains.get(key) is chain:
                del self._chains[key]

    def _over(self, batch: _Batch, i: int, ended: Ended | None, started: bool) -> None:
        """Effect `i` of `batch` will not run (again): count it out."""
        msg, _, proc, idempotency_key, _ = batch.work[i]
        batch.state[i] = _OVER
        if ended is Ended.DONE:
            batch.done.append(idempotency_key)
        elif ended is Ended.GAVE_UP or ended is Ended.PARKED:
            batch.released.append(idempotency_key)
        self._unfinished -= 1
        self._unfinished_by[proc.destination_name] -= 1
        if not started:
            self.calls.unqueue(msg)
        batch.left -= 1
        if batch.left == 0:
            if batch.emptied is not None and not batch.emptied.done():
                batch.emptied.set_result(None)
        elif batch.error is None:
            return
        if not batch.over.done():
            batch.over.set_result(None)

    async def _cancel(self, batch: _Batch) -> None:
        """Cancel the effects of `batch` not over yet (the batch ended early: cancelled,
        or an effect raised) and wait until they are: those queued are dropped from their
        chains, those running are cancelled in their drains."""
        batch.cancelled = True
        for i, state in enumerate(batch.state):
            if state == _QUEUED:
                self._over(batch, i, None, False)
        for drain in list(batch.running.values()):
            if drain is not None:
                drain.cancel()
        while batch.left:
            batch.emptied = asyncio.get_running_loop().create_future()
            await batch.emptied


_QUEUED, _RUNNING, _OVER = 0, 1, 2


class _Batch:
    """One batch's async effects while they run: where each is (`state`, by index in
    `work`), the drains running them, and what they ended in."""

    __slots__ = ("cancelled", "done", "emptied", "error", "left", "over", "released",
                 "run", "running", "state", "work")

    def __init__(self, run: BatchRun, work: list[Work], over: asyncio.Future[None]) -> None:
        self.run = run
        self.work = work
        self.state = bytearray(len(work))  # _QUEUED, _RUNNING or _OVER per effect
        self.left = len(work)
        self.over = over  # set when every effect is over, or one raised
        self.emptied: asyncio.Future[None] | None = None  # set when every effect is over
        self.error: BaseException | None = None
        self.cancelled = False
        self.running: dict[int, asyncio.Task[Any] | None] = {}
        self.done: list[str] = []      # idempotency keys of the effects that finished
        self.released: list[str] = []  # ... that were dead-lettered or parked
