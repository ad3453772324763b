"""One async effect's calls, on the effects' event loop (worker.processing.effects): its
destination's circuit, its turn at the destination's pace and room under its adaptive
concurrency limit (worker.processing.adaptive_limit; waited for holding no slot), a slot of
`max_in_flight` (and of the processor's own `max_concurrency`), the processor's timeout, then
retries per its policy (worker.processing.retries) or a dead letter.

A destination that is unavailable (RetryLater, a timeout, a connection error) opens its circuit
(worker.processing.circuit): the effect waits, woken when the circuit changes, without spending
retry attempts, while other destinations' effects flow. With --max-outage, an effect that waited
that long becomes a `destination_unavailable` dead letter. With --park-after (a pipeline whose
batches overlap), an effect whose destination has been down that long parks instead of waiting
(worker.processing.parking: PARKED, its key released, its event read again later).

What is in flight is read at scrape time (worker.observability.collectors.Effects)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from worker.outputs import OutputRecord
from worker.processing.adaptive_limit import AdaptiveLimit
from worker.processing.batch_run import BatchRun
from worker.processing.batch_trace import BatchTracer
from worker.processing.call_deadlines import CallDeadlines
from worker.processing.call_slots import CallSlots
from worker.processing.circuit import Circuit, Circuits
from worker.processing.loop_lateness import LoopLateness
from worker.processing.parking import Parking
from worker.processing.planning import Work
from worker.processing.retries import (
    GiveUp,
    Retry,
    after_failure,
    outage_reason,
    outage_wait,
    unavailable,
)
from worker.processors.api import Context, Processor
from worker.types import Message
from worker.vocabulary import CircuitState, ErrorClass, Outcome

CLOSED = CircuitState.CLOSED
TP = tuple[str, int]


class Ended(enum.Enum):
    """How an async effect ended."""

    DONE = "done"        # finished: its key is marked done with the next mark
    HELD = "held"        # finished and emitted records: marked done once they are acknowledged
    GAVE_UP = "gave_up"  # dead-lettered: its key is released
    PARKED = "parked"    # neither done nor dead-lettered: its key is released, its event is
    #                      read again (worker.processing.parking)


class Admission(enum.Enum):
    """What waiting on a circuit ended in."""

    CALL = "call"        # the circuit lets the call through
    GIVE_UP = "give_up"  # down longer than --max-outage: a dead letter
    PARK = "park"        # down longer than --park-after: park


class EffectCalls:
    def __init__(self, max_in_flight: int, processors: Iterable[Processor],
                 circuits: Circuits, parking: Parking | None = None,
                 tracer: BatchTracer | None = None) -> None:
        procs = list(processors)
        self.parking = parking if parking is not None else Parking(circuits)
        self._tracer = tracer  # told of each failed call; None: tracing is off
        self._slots = CallSlots(max_in_flight)
        self._limits = {p.name: CallSlots(p.max_concurrency) for p in procs
                        if p.max_concurrency is not None}
        # Timeouts of the calls (CallTimedOut: the destination counts as unavailable,
        # worker.processing.retries.unavailable, so the effect waits on its circuit)
        self._deadlines = CallDeadlines()
        self._ids = itertools.count()
        self._started: dict[int, float] = {}   # effect in flight -> perf_counter() at start
        # processor -> its calls in flight (every async processor shown, at 0 too)
        self._per_processor: Counter[str] = Counter(dict.fromkeys((p.name for p in procs), 0))
        self._queued: Counter[TP] = Counter()  # partition -> effects not started
        self._circuits = circuits
        for p in procs:
            circuits.add(p.destination_name, p.max_concurrency or max_in_flight)
        self.lateness = LoopLateness()  # the effects' loop's own (started with the loop)
        # destination -> its adaptive limit (concurrency and pace) and the calls waiting for room
        self._gates: dict[str, tuple[AdaptiveLimit, deque[asyncio.Future[None]]]] = {}
        for name in dict.fromkeys(p.destination_name for p in procs):
            circuit = circuits[name]
            gate = circuit.adaptive = AdaptiveLimit(
                min(max_in_flight, circuit.concurrency_limit), lateness=self.lateness)
            self._gates[name] = (gate, deque())
        self._wake: dict[str, asyncio.Event] = {}  # destination -> wakes its waiting effects
        # effects waiting on their destination: its circuit, its pace or its adaptive limit
        # cut below its cap; and those waiting on an adaptive limit at its cap
        self.waiting_for_destination = 0
        self._waiting_at_cap = 0
        # calls waiting for anything but a slot of --max-in-flight (_block), and who to tell
        self.blocked = 0
        self.on_blocked: Callable[[], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the effects' loop, once it runs
        circuits.listen(self._circuit_changed)

    # -- read at scrape time -----------------------------------------------------------------
    def in_flight(self) -> int:
        return len(self._started)

    def in_flight_by_processor(self) -> dict[str, int]:
        return dict(self._per_processor)

    def queued_by_partition(self) -> dict[TP, int]:
        # Every partition that has had an async effect, at 0 too: the series exists from the
        # first effect on (a dashboard shows 0, not "no data", between bursts).
        return dict(list(self._queued.items()))

    def oldest_age(self) -> float:
        """Seconds the oldest effect in flight has been running; 0.0 when none is."""
        started = list(self._started.values())
        return max(0.0, time.perf_counter() - min(started)) if started else 0.0

    def waiting_for_slot(self) -> int:
        """Effects ready to call that wait for a slot of --max-in-flight (or of their
        processor's max_concurrency): more in flight would help."""
        return (self._slots.waiting + sum(s.waiting for s in self._limits.values())
                + self._waiting_at_cap)

    def free_slots(self) -> int:
        return self._slots.free

    # -- one effect ----------------------------------------------------------------------------
    def queue(self, msg: Message) -> None:
        """An effect of `msg`'s partition waits for its turn."""
        self._queued[(msg.topic() or "", msg.partition() or 0)] += 1

    def unqueue(self, msg: Message) -> None:
        self._queued[(msg.topic() or "", msg.partition() or 0)] -= 1

    async def call(self, item: Work, run: BatchRun, started: list[bool]) -> Ended:
        """Run the effect until it is done (DONE, or HELD: it emitted records, produced now,
        and its key waits in `run.held` for their acknowledgement), dead-lettered (GAVE_UP) or
        parked (PARKED). `started[0]` turns True once it left the queue (its first call began,
        or it gave up or parked)."""
        msg, event, proc, key, index = item
        slots, limit = self._slots, self._limits.get(proc.name)
        circuit = self._circuits[proc.destination_name]
        gate, waiters = self._gates[proc.destination_name]
        outcomes, timings = run.stats.outcomes, run.timings[index]
        attempt = 1  # the retry policy's count: a failure of an unavailable destination
        calls = 0    # spends none (it waits on the circuit instead)
        waits = 0
        last: BaseException | None = None
        granted = False  # the circuit let this call through while not closed (a probe)
        parking = self.parking
        while True:
            if parking.active and not granted and self._park_at_once(msg, proc, run):
                self._left_queue(msg, started)
                return Ended.PARKED
            if circuit.state is not CLOSED and not granted:
                self.waiting_for_destination += 1
                self._block()
                try:
                    admission = await self._admitted(circuit)
                finally:
                    self.waiting_for_destination -= 1
                    self.blocked -= 1
                if admission is Admission.GIVE_UP:
                    self._left_queue(msg, started)
                    run.dead_letter(msg, proc, ErrorClass.DESTINATION_UNAVAILABLE,
                                    outage_reason(proc, circuit.down_seconds(), last), calls)
                    return Ended.GAVE_UP
                if admission is Admission.PARK:
                    self._left_queue(msg, started)
                    tp, offset = (msg.topic() or "", msg.partition() or 0), msg.offset() or 0
                    parking.parked(tp, proc.destination_name, offset)
                    run.park(tp, offset)
                    return Ended.PARKED
                if parking.active and self._park_at_once(msg, proc, run):
                    circuit.release_probe()  # parked meanwhile behind an earlier event
                    self._left_queue(msg, started)
                    return Ended.PARKED
                granted = True
            if (pace := gate.pace()) > 0.0 or not gate.may_enter():
                # Its destination's adaptive limit at its cap (--max-in-flight, or the
                # processor's max_concurrency) is the worker's own bound, not the destination's
                at_cap = pace <= 0.0 and gate.limit >= gate.cap
                if at_cap:
                    self._waiting_at_cap += 1
                else:
                    self.waiting_for_destination += 1
                self._block()
                try:
                    await self._enter(gate, waiters, pace)  # its destination has room (holds
                    #                                          no slot)
                finally:
                    if at_cap:
                        self._waiting_at_cap -= 1
                    else:
                        self.waiting_for_destination -= 1
                    self.blocked -= 1
            else:
                gate.in_flight += 1
            error: BaseException | None = None
            emitted: list[OutputRecord] | None = None
            took = 0.0
            try:
                await slots.acquire()
                try:
                    if limit is not None:
                        if limit.free > 0:
                            await limit.acquire()
                        else:
                            self._block()
                            try:
                                await limit.acquire()
                            finally:
                                self.blocked -= 1
                    if circuit.state is not CLOSED and not granted:
                        # It opened while this call waited for a slot: wait on the circuit
                        if limit is not None:
                            limit.release()
                        continue
                    probe, granted = granted, False
                    if not started[0]:
                        self.unqueue(msg)
                        started[0] = True
                    effect = next(self._ids)
                    t0 = self._started[effect] = time.perf_counter()
                    self._per_processor[proc.name] += 1
                    calls += 1
                    try:
                        emitted = await self._call_once(proc, event, msg, calls)
                    except asyncio.CancelledError:
                        if probe:
                            circuit.release_probe()
                        raise
                    except BaseException as exc:  # processor code (worker.processing.retries)
                        error = exc
                        if self._tracer is not None:
                            self._tracer.failed(msg, event, proc, calls, exc)
                    finally:
                        took = time.perf_counter() - t0
                        timings.append(took)
                        del self._started[effect]
                        self._per_processor[proc.name] -= 1
                        if limit is not None:
                            limit.release()
                finally:
                    slots.release()
            finally:
                self._leave(gate, waiters)
            if error is None:
                circuit.success()
                gate.success(took)
                outcomes[(proc.name, Outcome.OK)] += 1
                if emitted is None:
                    return Ended.DONE
                run.emitted(key, emitted, msg)
                return Ended.HELD
            after = unavailable(error)
            if after is not None:  # the destination's fault, not the event's: wait, no attempt
                circuit.failure(after)
                gate.failure(after)
                outcomes[(proc.name, Outcome.RETRIED)] += 1
                last = error
                waits += 1
                if circuit.state is CLOSED:
                    await self._sleep(outage_wait(proc, waits, after))
                continue
            circuit.success()  # it answered: the destination is up
            gate.success()
            decision = after_failure(proc, event, msg, error, attempt)
            if isinstance(decision, Retry):
                outcomes[(proc.name, Outcome.RETRIED)] += 1
                await self._sleep(decision.delay)  # this chain waits; the others flow
                attempt += 1
                continue
            assert isinstance(decision, GiveUp)
            run.gave_up(msg, event, proc, decision.error_class, decision.reason, error, calls)
            return Ended.GAVE_UP

    def _block(self) -> None:
        """A call is about to wait for something other than a slot of --max-in-flight: its
        destination (circuit, pace, adaptive limit), its processor's max_concurrency, or a
        retry's backoff. The effects' scheduler may start another key meanwhile."""
        self.blocked += 1
        if self.on_blocked is not None:
            self.on_blocked()

    async def _sleep(self, seconds: float) -> None:
        self._block()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.blocked -= 1

    def _park_at_once(self, msg: Message, proc: Processor, run: BatchRun) -> bool:
        """The order rule (worker.processing.parking): an earlier event of the partition is
        parked for this destination, or the effect is stale; then it parks, without a call."""
        tp, offset = (msg.topic() or "", msg.partition() or 0), msg.offset() or 0
        destination = proc.destination_name
        parking = self.parking
        if not parking.must_park(tp, destination, offset, run.ticket):
            return False
        parking.parked(tp, destination, offset, record=False)
        run.park(tp, offset)
        return True

    def _left_queue(self, msg: Message, started: list[bool]) -> None:
        if not started[0]:
            self.unqueue(msg)
            started[0] = True

    async def _call_once(self, proc: Processor, event: Any, msg: Message, calls: int
                         ) -> list[OutputRecord] | None:
        """One call; returns the records it emitted (None: none)."""
        ctx = Context.of_message(proc, event, msg, None, calls)
        call: Coroutine[Any, Any, None] = proc.func(event, ctx)  # type: ignore[assignment]
        if proc.timeout is None:
            await call
        else:
            await self._deadlines.call_within(call, proc.timeout, proc.name)
        return ctx._emitted

    @staticmethod
    async def _enter(gate: AdaptiveLimit, waiters: deque[asyncio.Future[None]],
                     pace: float = 0.0) -> None:
        """Wait `pace` seconds (the call's turn at its destination's pace, reserved), then for
        room under its adaptive concurrency limit (worker.processing.adaptive_limit), first
        come first in."""
        if pace > 0.0:
            await asyncio.sleep(pace)
        while not gate.may_enter():
            room = asyncio.get_running_loop().create_future()
            waiters.append(room)
            try:
                await room
            except asyncio.CancelledError:
                if room.done() and not room.cancelled():
                    EffectCalls._make_room(gate, waiters)  # pass the room it was given on
                raise
        gate.in_flight += 1

    @staticmethod
    def _leave(gate: AdaptiveLimit, waiters: deque[asyncio.Future[None]]) -> None:
        gate.in_flight -= 1
        EffectCalls._make_room(gate, waiters)

    @staticmethod
    def _make_room(gate: AdaptiveLimit, waiters: deque[asyncio.Future[None]]) -> None:
        room = gate.concurrency - gate.in_flight
        while room > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    async def _admitted(self, circuit: Circuit) -> Admission:
        """Wait until `circuit` lets a call through (CALL), or until the destination has been
        unavailable for --max-outage (GIVE_UP) or, first, for --park-after (PARK). Cancelled
        with the batch (revoke, shutdown)."""
        bound, first = self._circuits.max_outage, True
        park_after = self.parking.park_after
        while (wait := circuit.ask(bound, first)) is not None:
            if wait == 0.0:
                return Admission.CALL
            first = False
            if park_after is not None:
                left = park_after - circuit.down_seconds()
                if left <= 0.0:
                    return Admission.PARK
                wait = min(wait, left)
            wake = self._wake.get(circuit.name)
            if wake is None:
                wake = self._wake[circuit.name] = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
        return Admission.GIVE_UP

    def _circuit_changed(self, circuit: Circuit) -> None:
        """(any thread) Wake the effects waiting on `circuit`."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_waiters, circuit.name)

    def _wake_waiters(self, name: str) -> None:
        wake = self._wake.pop(name, None)
        if wake is not None:
            wake.set()
