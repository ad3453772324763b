"""The emitted marks' bookkeeping without a broker (a partition counted as restored, a recording
producer, a fake clock): marks of the open transaction count at once, commit or vanish with it,
and count for the retention only (then pruned). The restore from the changelog and the marks'
life through real transactions are tested on the broker (tests/integration/
test_exactly_once_outputs.py, test_kill9_exactly_once_outputs.py, test_exactly_once_zombie.py)."""

from __future__ import annotations

from worker.kafka.emitted_marks import KafkaEmittedMarks, changelog_topic

TP = ("in", 2)


class Producer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes, partition: int) -> None:
        self.records.append((topic, value, key, partition))


def marks(now: list[float], retention: float = 100.0) -> tuple[KafkaEmittedMarks, Producer]:
    m = KafkaEmittedMarks({"bootstrap.servers": "127.0.0.1:1"}, "g", retention=retention,
                          clock=lambda: now[0])
    m._marks[TP] = {}  # restored, empty
    producer = Producer()
    m.producer = producer
    return m, producer


def test_marks_count_in_their_transaction_and_after_its_commit_not_after_an_abort() -> None:
    now = [1000.0]
    m, producer = marks(now)
    m.mark([(TP, "k1")])
    assert producer.records == [(changelog_topic("g", "in"), b"1", b"k1", 2)]
    assert m.emitted(TP, "k1") and not m.emitted(TP, "k2")
    m.aborted()
    assert not m.emitted(TP, "k1")
    m.mark([(TP, "k1"), (TP, "k2")])
    m.committed()
    assert m.emitted(TP, "k1") and m.emitted(TP, "k2")
    m.forget([TP])
    assert TP not in m._marks  # a revoked partition is restored afresh when it comes back


def test_marks_count_for_the_retention_then_are_pruned() -> None:
    now = [1000.0]
    m, _ = marks(now, retention=100.0)
    m.mark([(TP, "old")])
    m.committed()
    now[0] = 1050.0
    m.mark([(TP, "new")])
    m.committed()
    now[0] = 1120.0
    assert not m.emitted(TP, "old") and m.emitted(TP, "new")
    assert m.prune(now[0]) == 1
    assert m._marks[TP] == {"new": 1050.0}


