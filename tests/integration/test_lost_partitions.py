"""On lost partitions the engine never commits: a real partition loss on a real broker.

The private broker (tests/secure_kafka.py, not the shared one) is frozen with SIGSTOP for longer
than the consumer's `session.timeout.ms` (2 s; the broker allows it with
group.min.session.timeout.ms=1000). librdkafka then declares the assignment lost on its own
("Consumer group session timed out ... revoking assignment and rejoining group") and calls the
engine's on_lost. At that moment partition 0 holds a batch that is finished and stored but not
committed (long commit interval), and partition 1 a batch that is in flight.

Checked: the in-flight batch is cancelled; the loss shows in the log and in the
`activity_worker_rebalances_total{kind="lost"}` metric; once the broker runs again, the engine —
switched to commit every 0.2 s — loops through its commit policy until the group gives the
partitions back and redelivers them, and nothing of the old assignment gets committed (the
group's committed offsets, read through a separate consumer, stay empty while the redelivered
batch is held; librdkafka also forgets stored offsets of partitions that leave the assignment,
rdkafka_assignment.c, issue #2782). Then every event is processed again and committed: nothing
lost.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from structlog.testing import capture_logs

from tests.engine.helpers import Running, committed, create_topic, event_json, produce, wait_for
from tests.engine.test_engine_kafka import engine_for
from tests.kafka_helpers import unique_name
from tests.secure_kafka import SecureBroker
from worker.engine.lifecycle import EXIT_OK
from worker.observability.metrics import REBALANCES, WorkerMetrics
from worker.types import BatchResult, Message, TopicPartition

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

PER_PARTITION = 5
NONE = {0: -1001, 1: -1001}  # no committed offset


def stays(cond: Callable[[], bool], seconds: float, what: str) -> None:
    """`cond` holds at every check for `seconds` (a negative property, watched for a while)."""
    end = time.monotonic() + seconds
    while True:
        assert cond(), f"no longer true: {what}"
        if time.monotonic() >= end:
            return
        time.sleep(0.1)


class Held:
    """A handler that records each batch it starts and completes, as (partition, offset) lists,
    and holds a batch that touches a partition in `hold` until `release` is set or the engine
    cancels it."""

    window = None  # one batch at a time (worker.types.BatchHandler)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[list[tuple[int, int]]] = []
        self.completed: list[list[tuple[int, int]]] = []
        self.cancelled = 0
        self.hold: set[int] = set()
        self.release = threading.Event()

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        offsets = [(m.partition() or 0, m.offset() or 0) for m in messages]
        with self.lock:
            self.started.append(offsets)
        if {p for p, _ in offsets} & self.hold:
            while not self.release.wait(0.01):
                if cancelled():
                    with self.lock:
                        self.cancelled += 1
                    return BatchResult(completed=False)
        with self.lock:
            self.completed.append(offsets)
        return BatchResult(completed=True)

    def processed(self, partition: int) -> list[int]:
        with self.lock:
            return [o for batch in self.completed for p, o in batch if p == partition]


class CommitLog(WorkerMetrics):
    """The real metrics, plus every commit the engine saw acknowledged, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[tuple[int, int]] = []

    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        self.commits.append((tp.partition, offset))
        super().record_commit(tp, offset)

    def count(self, kind: str) -> float:
        return self.registry.get_sample_value(REBALANCES + "_total", {"kind": kind}) or 0.0


def test_lost_partitions_are_never_committed_and_their_events_come_back(
        private_kafka: SecureBroker) -> None:
    b, pid = private_kafka.plain_bootstrap, private_kafka.pid
    topic, group = unique_name("lost"), unique_name("lost-group")
    create_topic(b, topic, 2)
    handler, metrics = Held(), CommitLog()
    engine = engine_for(b, topic, group, handler, metrics=metrics, batch_size=100,
                        commit_interval=3600.0, commit_every=1_000_000,
                        overrides={"session.timeout.ms": "2000",
                                   "heartbeat.interval.ms": "300"})
    with capture_logs() as logs:
        run = Running(engine)
        try:
            wait_for(lambda: metrics.count("assigned") >= 1
                     and engine.assigned == {(topic, 0), (topic, 1)}, 30, "both partitions")
            # Partition 0: a batch finished and stored, not committed (commit interval 1 h).
            produce(b, topic, [(0, None, event_json(i)) for i in range(PER_PARTITION)])
            wait_for(lambda: handler.processed(0) == list(range(PER_PARTITION)), 30,
                     "partition 0 processed")
            # Partition 1: a batch in flight.
            handler.hold = {1}
            produce(b, topic, [(1, None, event_json(i)) for i in range(PER_PARTITION)])
            wait_for(lambda: any(p == 1 for batch in handler.started for p, _ in batch), 30,
                     "a partition 1 batch in flight")
            assert committed(b, group, topic, 2) == NONE

            os.kill(pid, signal.SIGSTOP)
            try:
                wait_for(lambda: metrics.count("lost") >= 1, 30, "the assignment declared lost")
                assert handler.cancelled == 1  # the in-flight batch was cancelled at once
                # From now on the engine commits every 0.2 s: a stale stored offset of the old
                # assignment would be committed now if anything kept it.
                engine.config.commit_interval = 0.2
                handler.hold = {0, 1}
                batches_before = len(handler.started)
            finally:
                os.kill(pid, signal.SIGCONT)

            def redelivered() -> list[tuple[int, int]]:
                with handler.lock:
                    return sorted(o for batch in handler.started[batches_before:] for o in batch)

            # The group gives the partitions back; their first batch is held.
            wait_for(redelivered, 30, "the partitions reassigned and a batch redelivered")
            # Whatever the commit policy sent between the rejoin and now has landed within
            # 1 s (5 commit intervals): the group still has no committed offset.
            stays(lambda: committed(b, group, topic, 2) == NONE, 1.0, "no committed offset")
            assert metrics.commits == []

            handler.release.set()
            wait_for(lambda: committed(b, group, topic, 2) == {0: PER_PARTITION,
                                                               1: PER_PARTITION},
                     30, "the redelivered events committed")
        finally:
            handler.release.set()
            code = run.stop()
    assert code == EXIT_OK
    everything = [(p, o) for p in (0, 1) for o in range(PER_PARTITION)]
    assert redelivered() == everything  # both partitions again from their first offset
    # Partition 0 was processed twice (before the loss and after), partition 1 once (its first
    # batch was cancelled): nothing lost; in the worker the ledger makes the repeat a duplicate.
    assert handler.processed(0) == list(range(PER_PARTITION)) * 2
    assert handler.processed(1) == list(range(PER_PARTITION))
    assert metrics.count("lost") == 1
    lost_lines = [e for e in logs if e["event"].startswith("partitions lost")]
    assert len(lost_lines) == 1, logs
    assert lost_lines[0]["event"] == "partitions lost; nothing committed for them"
    assert lost_lines[0]["partitions"] == [f"{topic}[0]", f"{topic}[1]"]
    # The only commits the engine saw are the ones after the redelivery.
    assert set(metrics.commits) == {(0, PER_PARTITION), (1, PER_PARTITION)}
