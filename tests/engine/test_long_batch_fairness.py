"""Long batches do not starve a partition: while a batch runs past `pause_after` the engine keeps
polling and pauses each partition only once its share of the next batch waits, so every
partition with a backlog is in every next batch.

Pausing all partitions at once (the engine before this) let librdkafka purge what it had
prefetched for them, and the next batch was whatever fetch answered first after the resume:
with every batch long, as in a catch-up after a broker's return, a partition whose fetches
answered later lost its records to every pause (docs/cluster.md, the 212 s stall)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.engine.helpers import Running, create_topic, event_json, produce, wait_for
from tests.engine.test_engine_kafka import engine_for
from worker.engine.assignment import Assignment
from worker.types import BatchResult, Message

PARTITIONS = 4
BATCH = 200


class Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class PauseRecorder:
    """The consumer port's pause and resume, recorded."""

    def __init__(self) -> None:
        self.paused_calls: list[list[tuple[str, int]]] = []

    def pause(self, partitions: Any) -> None:
        self.paused_calls.append(sorted(partitions))

    def resume(self, partitions: Any) -> None:
        pass


class SlowBatches:
    """Each batch takes `seconds`; records the partitions of each."""

    window = None

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[dict[int, int]] = []
        self.lock = threading.Lock()

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        counts: dict[int, int] = {}
        for m in messages:
            counts[m.partition() or 0] = counts.get(m.partition() or 0, 0) + 1
        with self.lock:
            self.batches.append(counts)
        time.sleep(self.seconds)
        return BatchResult(completed=True)


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_every_partition_with_a_backlog_is_in_every_batch_while_batches_run_long(
        engine_bootstrap: str) -> None:
    bootstrap = engine_bootstrap
    topic = f"long-batches-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, PARTITIONS)
    produce(bootstrap, topic, [(i % PARTITIONS, None, event_json(i)) for i in range(8_000)])
    handler = SlowBatches(0.5)
    running = Running(engine_for(bootstrap, topic, f"g-{topic}", handler, batch_size=BATCH,
                                 pause_after=0.1))
    try:
        wait_for(lambda: len(handler.batches) >= 12, 60, "12 batches")
    finally:
        running.stop()
    with handler.lock:
        later = handler.batches[2:12]  # (the first ones were read before any long batch)
    assert all(len(b) == PARTITIONS for b in later), later
    # each with its share: no partition crowds the others out
    assert all(min(b.values()) >= BATCH // PARTITIONS // 2 for b in later), later


def test_a_partition_is_paused_once_its_share_waits_and_not_before() -> None:
    consumer = PauseRecorder()
    parts = Assignment(consumer)  # type: ignore[arg-type]
    a, b = ("t", 0), ("t", 1)
    parts.add([a, b], paused=False)
    share = parts.share(4)
    assert share == 2
    parts.keep(Msg(0, 0), a, share)
    assert parts.paused == set()
    parts.keep(Msg(0, 1), a, share)
    assert parts.paused == {a}  # b keeps fetching
    parts.keep(Msg(1, 0), b, share)
    assert parts.paused == {a}
    assert [m.offset() for m in parts.take_pending(2)] == [0, 1]
    parts.resume_all()
    parts.keep(Msg(0, 2), a, share)
    assert parts.paused == set()  # a's count went down with what was taken
    parts.drop_pending([b])
    parts.keep(Msg(1, 1), b, share)
    assert parts.paused == set()
    assert consumer.paused_calls == [[a]]
