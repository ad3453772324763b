"""Phase 1 of a batch, pure (no I/O): decode each message, route its event to the matching
processors, and make each (event, processor) pair's idempotency key. What cannot be decoded,
matches no processor (with `unmatched="dead_letter"`) or has no key becomes a dead letter here;
the rest is the batch's work for phase 2 (worker.processing.pipeline: ledger + processors).

The routes of each event type are resolved once and kept here (the one route cache: the
router itself resolves afresh each time it is asked)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from worker.errors import EventDecodeError, describe
from worker.events import Event, decode_event
from worker.processing.batch_run import BatchRun
from worker.processors.api import Processor
from worker.processors.keys import event_key, group_key
from worker.types import DeadLetter, Message
from worker.vocabulary import ErrorClass, Outcome

Unmatched = Literal["skip", "dead_letter"]


class Resolver(Protocol):
    def resolve(self, event_type: str) -> tuple[Processor, ...]: ...


#: One (event, processor) pair of a batch, a unit of work for phase 2:
#: (message, event, processor, key, processor_index) — `key` is the idempotency key the ledger
#: claims, `processor_index` the processor's position (per-processor counts). Always unpacked
#: by those names, never indexed. A plain tuple, not a NamedTuple: one is made per event and
#: processor, and making a NamedTuple costs ~3,300 more instructions each (measured with
#: callgrind: +5% on the pipeline's instructions per event).
Work = tuple[Message, Event, Processor, str, int]


KEY_EVENT, KEY_GROUP, KEY_CUSTOM = 0, 1, 2

#: Distinct event types whose routes are kept. The real set is ~74; junk feeds must not grow
#: the cache without bound, so past this, new types are resolved but not kept.
MAX_CACHED_TYPES = 10_000


class WorkPlanner:
    def __init__(self, index: Mapping[str, int], router: Resolver, unmatched: Unmatched) -> None:
        """`index`: each processor's position (for per-processor counts in phase 2)."""
        self._index = index
        self.router = router
        self.unmatched = unmatched
        self._route_cache: dict[str, tuple[tuple[Processor, int, int], ...]] = {}

    def _routes(self, event_type: str) -> tuple[tuple[Processor, int, int], ...]:
        """(processor, key mode, processor index) per matching processor, cached per type."""
        hit = self._route_cache.get(event_type)
        if hit is None:
            hit = tuple((proc, _key_mode(proc), self._index[proc.name])
                        for proc in self.router.resolve(event_type))
            if len(self._route_cache) < MAX_CACHED_TYPES:
                self._route_cache[event_type] = hit
        return hit

    def plan(self, messages: Sequence[Message], run: BatchRun, wanted: Sequence[int] = (),
             found: list[int] | None = None) -> list[Work]:
        """The batch's work; its dead letters and counts go to `run`. `wanted`: positions
        (ascending) of messages whose work the caller wants to find (the sampled events,
        worker.processing.batch_trace): the positions of their work in the list go to `found`
        (without a pass over the work; one int compare per message)."""
        stats, dead = run.stats, run.dead
        points = _bounds(wanted, len(messages)) if wanted else []
        starts: list[int] = []  # len(work) at each of `points`
        nxt = points[0] if points else -1
        work: list[Work] = []
        add = work.append
        consumed: dict[str, int] = {}
        timestamps: list[int] = []
        stamp = timestamps.append
        cache = self._route_cache
        routes = self._routes
        decode = decode_event
        topic: str | None = None
        run_start = 0
        for i, msg in enumerate(messages):
            if i == nxt:
                starts.append(len(work))
                nxt = points[len(starts)] if len(starts) < len(points) else -1
            t = msg.topic() or ""
            if t != topic:  # count per run of one topic, not per message
                if topic is not None:
                    consumed[topic] = consumed.get(topic, 0) + i - run_start
                topic, run_start = t, i
            ts_type, ts_ms = msg.timestamp()
            if ts_type:
                stamp(ts_ms)
            try:
                event = decode(msg.value())
            except EventDecodeError as exc:
                stats.dead_letters[exc.error_class] += 1
                dead.append(DeadLetter(msg, exc.error_class, exc.reason))
                continue
            etype = event.type
            procs = cache.get(etype)
            if procs is None:
                procs = routes(etype)
            if not procs:
                stats.unmatched[etype] += 1
                if self.unmatched == "dead_letter":
                    stats.dead_letters[ErrorClass.UNMATCHED] += 1
                    dead.append(DeadLetter(msg, ErrorClass.UNMATCHED,
                                           f"$.type: no processor matches {etype!r}"))
                continue
            for proc, mode, index in procs:
                if mode == KEY_EVENT:
                    key = event_key(proc.name, event)
                elif mode == KEY_GROUP:
                    key = group_key(proc.name, event)
                else:
                    try:
                        key = proc.idempotency_key(event)
                    except Exception as exc:  # a custom key function failed on this event
                        stats.outcomes[(proc.name, Outcome.DEAD_LETTERED)] += 1
                        stats.dead_letters[ErrorClass.KEY_FAILED] += 1
                        dead.append(DeadLetter(msg, ErrorClass.KEY_FAILED, describe(exc),
                                               proc.name))
                        continue
                add((msg, event, proc, key, index))
        if points:
            if nxt == len(messages):
                starts.append(len(work))
            _found(wanted, dict(zip(points, starts, strict=True)), found)
        if topic is not None:
            consumed[topic] = consumed.get(topic, 0) + len(messages) - run_start
        stats.consumed.update(consumed)
        if timestamps:
            now_ms = time.time() * 1000.0
            # (a clock behind the producer's counts as 0; no max() call per event)
            stats.latency_seconds.extend([(now_ms - t) * 0.001 if t < now_ms else 0.0
                                          for t in timestamps])
        return work


def _bounds(wanted: Sequence[int], n: int) -> list[int]:
    """Each wanted position and the one after it (where its work ends), ascending, at most
    `n` (the end of the batch)."""
    return sorted({p for i in wanted for p in (i, i + 1) if p <= n})


def _found(wanted: Sequence[int], starts: Mapping[int, int], found: list[int] | None) -> None:
    """The work positions of each wanted message: from where its work starts to where the next
    message's starts."""
    if found is None:
        return
    for i in wanted:
        start, end = starts.get(i), starts.get(i + 1)
        if start is not None and end is not None:
            found.extend(range(start, end))


def _key_mode(proc: Processor) -> int:
    if proc.key is not None:
        return KEY_CUSTOM
    return KEY_GROUP if proc.once_per == "group" else KEY_EVENT
