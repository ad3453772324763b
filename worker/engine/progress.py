"""How far along the worker is, looked at every few seconds by the engine's loop (never per
event): drain mode's end offsets, lag per partition, the periodic progress line."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

import structlog

from worker.engine.consumer_port import CommitFailed, ConsumerPort
from worker.engine.offsets import OffsetTracker
from worker.observer import WorkerObserver
from worker.types import TP, TopicPartition

log = structlog.get_logger(__name__)

DRAIN_CHECK_S = 0.5
COMMITTED_TIMEOUT_S = 2.0  # asking the broker where an idle partition's group stands


class DrainTarget:
    """Drain mode: the end offsets when the run started; reached once the group's committed
    offsets are there."""

    def __init__(self, consumer: ConsumerPort, offsets: OffsetTracker,
                 topics: Sequence[str]) -> None:
        self._consumer = consumer
        self._offsets = offsets
        parts = consumer.partitions_of(topics)
        self.targets = consumer.watermarks(parts)
        self._next_check = 0.0
        log.info("drain mode: consuming up to the current end offsets", partitions=len(parts),
                 events=sum(h - lo for lo, h in self.targets.values()))

    def reached(self, now: float, commit: Callable[[], None]) -> bool:
        """Checked at most every DRAIN_CHECK_S; `commit` commits what is stored first."""
        if now < self._next_check:
            return False
        self._next_check = now + DRAIN_CHECK_S
        targets = self.targets
        for tp, (low, high) in targets.items():
            if self._offsets.behind(tp, high) and low < high:
                return False  # ours, consuming, not there yet: no need to ask the broker
        if self._offsets.uncommitted:
            commit()
        try:
            committed = self._consumer.committed(list(targets), timeout=COMMITTED_TIMEOUT_S)
        except CommitFailed as exc:
            # e.g. the coordinator is still waiting out a killed member's session: ask again
            # on the next check instead of failing the run (or blocking the loop for long).
            log.debug("drain check: committed offsets not available yet", error=str(exc))
            return False
        return all(low >= high or committed.get(tp, -1) >= high
                   for tp, (low, high) in targets.items())


class LagRecorder:
    """Lag in offsets and seconds per assigned partition, from cached watermarks, counted up to
    what can be read: the last stable offset under read_committed. A partition whose last
    stable offset stays below its high watermark is held by a transaction left open upstream;
    that is told apart (`record_open_transaction`, seconds since it was first seen there), not
    counted as lag."""

    def __init__(self) -> None:
        self._held: dict[TP, tuple[int, float]] = {}  # last stable offset, first seen (epoch s)

    def record(self, consumer: ConsumerPort, offsets: OffsetTracker,
               assigned: Collection[TP], observer: WorkerObserver) -> None:
        if not assigned:
            return
        try:
            parts = sorted(assigned)
            marks = consumer.watermarks(parts, cached=True)
            stable = consumer.stable_offsets(parts)
            unknown = [tp for tp in parts if tp not in offsets.stored
                       and tp not in offsets.committed]
            if unknown:  # assigned and idle since: where the group stands is the broker's
                offsets.committed.update((tp, off) for tp, off in consumer.committed(
                    unknown, timeout=COMMITTED_TIMEOUT_S).items() if off >= 0)
        except Exception:
            return
        now = time.time()
        now_ms = now * 1000
        for tp, (low, high) in marks.items():
            if high < 0:
                continue
            end = high
            lso, hw = stable.get(tp, (high, high))
            if lso < hw:  # a transaction open there when the client last looked
                end = min(high, lso)
                seen = self._held.get(tp)
                since = seen[1] if seen is not None and seen[0] == lso else now
                self._held[tp] = (lso, since)
                observer.record_open_transaction(TopicPartition(*tp), now - since)
            elif self._held.pop(tp, None) is not None:
                observer.record_open_transaction(TopicPartition(*tp), 0.0)
            pos = offsets.position(tp, low)
            lag = max(0, end - max(pos, low))
            ts = offsets.last_ts.get(tp)
            secs = max(0.0, (now_ms - ts) / 1000) if lag and ts else 0.0
            observer.record_lag(TopicPartition(*tp), lag, secs)
        for tp in set(self._held) - set(marks):
            del self._held[tp]


class ProgressLog:
    """One INFO line per interval while events flow: how many, how fast (never per event)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        now = clock()
        self.next = now + interval
        self._mark = (now, 0)

    def maybe_log(self, now: float, events: int, **fields: int) -> None:
        if now < self.next:
            return
        self.next = now + self.interval
        since, count = self._mark
        self._mark = (now, events)
        if events > count:
            log.info("progress", events=events,
                     events_per_s=round((events - count) / max(now - since, 1e-9), 1), **fields)
