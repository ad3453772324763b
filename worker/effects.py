"""Async processors, run concurrently within a batch: effects of different ordering keys at once,
effects of one ordering key one at a time, in offset order; at most `max_in_flight` effects in
flight (and at most a processor's own `max_concurrency` of its calls).

The ordering key of an effect is its processor plus the processor's `order_by(event)` when it
has one, else the Kafka message key (producers key customer activity by customer), else the
partition (events without a key keep partition order). A retry waits in its own chain only: the
other keys flow meanwhile.

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
import itertools
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Hashable, Iterable
from typing import Any

import structlog

from worker.errors import describe
from worker.processors.api import Context, Processor
from worker.retries import GiveUp, Retry, after_failure
from worker.types import BatchStats, DeadLetter, Message
from worker.vocabulary import Outcome
from worker.work import Work

log = structlog.get_logger("worker.pipeline")

#: Effects in flight per worker by default: enough for 100 ms calls to run at 2,500 events/s;
#: raise it (--max-in-flight) for more distinct keys at once, lower it for a fragile endpoint.
DEFAULT_MAX_IN_FLIGHT = 256

CANCEL_CHECK_S = 0.05


class EffectsCancelled(Exception):
    """The engine cancelled the batch while effects were in flight."""


def ordering_key(msg: Message, proc: Processor, event: Any) -> Hashable:
    if proc.order_by is not None:
        return (proc.name, proc.order_by(event))
    key = msg.key()
    if key is not None:
        return (proc.name, key)
    return (proc.name, msg.topic(), msg.partition())


class ConcurrentEffects:
    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 processors: Iterable[str] = ()) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count()
        self._started: dict[int, float] = {}   # effect in flight -> perf_counter() at start
        # processor -> its calls in flight (every async processor shown, at 0 too)
        self._per_processor: Counter[str] = Counter(dict.fromkeys(processors, 0))
        self._queued: Counter[tuple[str, int]] = Counter()  # partition -> effects not started

    # -- read at scrape time (worker.observability.collectors.Effects) -------------------------
    def in_flight(self) -> int:
        return len(self._started)

    def in_flight_by_processor(self) -> dict[str, int]:
        return dict(self._per_processor)

    def queued_by_partition(self) -> dict[tuple[str, int], int]:
        return {tp: n for tp, n in list(self._queued.items()) if n}

    def oldest_age(self) -> float:
        """Seconds the oldest effect in flight has been running; 0.0 when none is."""
        started = list(self._started.values())
        return max(0.0, time.perf_counter() - min(started)) if started else 0.0

    # -- one batch -----------------------------------------------------------------------------
    def run(self, work: list[Work], stats: BatchStats, dead: list[DeadLetter],
            timings: list[list[float]], cancelled: Callable[[], bool]) -> tuple[list[str],
                                                                                list[str]]:
        """Run the batch's async effects; returns (done keys, keys to release). Raises
        EffectsCancelled, or FatalProcessingError from a processor with on_failure='stop'."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._batch(work, stats, dead, timings, cancelled))

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    async def _batch(self, work: list[Work], stats: BatchStats, dead: list[DeadLetter],
                     timings: list[list[float]], cancelled: Callable[[], bool]
                     ) -> tuple[list[str], list[str]]:
        chains: dict[Hashable, list[Work]] = {}
        queued = self._queued
        for item in work:
            chains.setdefault(ordering_key(item[0], item[2], item[1]), []).append(item)
            queued[(item[0].topic() or "", item[0].partition() or 0)] += 1
        slots = asyncio.Semaphore(self.max_in_flight)
        limits = {p.name: asyncio.Semaphore(p.max_concurrency)
                  for _, _, p, _, _ in work if p.max_concurrency is not None}
        done: list[str] = []
        released: list[str] = []

        async def chain(items: list[Work]) -> None:
            for item in items:
                ok = await self._effect(item, slots, limits.get(item[2].name), stats, dead,
                                        timings)
                (done if ok else released).append(item[3])

        tasks = [asyncio.ensure_future(chain(items)) for items in chains.values()]
        try:
            pending: set[asyncio.Future[None]] = set(tasks)
            while pending:
                finished, pending = await asyncio.wait(pending, timeout=CANCEL_CHECK_S,
                                                       return_when=asyncio.FIRST_EXCEPTION)
                for task in finished:
                    task.result()  # a FatalProcessingError stops the batch here
                if pending and cancelled():
                    raise EffectsCancelled
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            queued.clear()
        return done, released

    async def _effect(self, item: Work, slots: asyncio.Semaphore,
                      limit: asyncio.Semaphore | None, stats: BatchStats,
                      dead: list[DeadLetter], timings: list[list[float]]) -> bool:
        msg, event, proc, _key, index = item
        attempt = 1
        while True:
            error: BaseException | None = None
            async with slots:
                if limit is not None:
                    await limit.acquire()
                if attempt == 1:
                    self._queued[(msg.topic() or "", msg.partition() or 0)] -= 1
                effect = next(self._ids)
                t0 = self._started[effect] = time.perf_counter()
                self._per_processor[proc.name] += 1
                try:
                    call: Coroutine[Any, Any, None] = proc.func(  # type: ignore[assignment]
                        event, Context.of_message(proc, event, msg, None, attempt))
                    await call
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # processor code (see worker.retries)
                    error = exc
                finally:
                    timings[index].append(time.perf_counter() - t0)
                    del self._started[effect]
                    self._per_processor[proc.name] -= 1
                    if limit is not None:
                        limit.release()
            if error is None:
                stats.outcomes[(proc.name, Outcome.OK)] += 1
                return True
            decision = after_failure(proc, event, msg, error, attempt)
            if isinstance(decision, Retry):
                stats.outcomes[(proc.name, Outcome.RETRIED)] += 1
                await asyncio.sleep(decision.delay)  # this chain waits; the others flow
                attempt += 1
                continue
            assert isinstance(decision, GiveUp)
            stats.outcomes[(proc.name, Outcome.DEAD_LETTERED)] += 1
            stats.dead_letters[decision.error_class] += 1
            dead.append(DeadLetter(msg, decision.error_class, decision.reason, proc.name,
                                   attempt))
            log.error("processor failed; event dead-lettered", processor=proc.name,
                      event_id=event.id, event_type=event.type, topic=msg.topic(),
                      partition=msg.partition(), offset=msg.offset(), attempts=attempt,
                      error=describe(error))
            return False
