"""Real-broker helpers for the engine tests (producing, reading topics and committed offsets,
waiting on conditions with deadlines)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from worker.engine.loop import Engine
from worker.kafka.admin import ensure_topics


def broker_reachable(bootstrap: str) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
        return True
    except Exception:
        return False


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    ensure_topics({"bootstrap.servers": bootstrap}, {name: partitions})
    wait_for(lambda: _has_leaders(bootstrap, name, partitions), 20, f"topic {name} ready")


def _has_leaders(bootstrap: str, name: str, partitions: int) -> bool:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(name, timeout=5)
    t = md.topics.get(name)
    return bool(t and t.error is None and len(t.partitions) == partitions
                and all(p.leader >= 0 for p in t.partitions.values()))


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def produce(bootstrap: str, topic: str, records: Iterable[tuple[int, bytes | None, bytes | None]],
            headers: list[tuple[str, str | bytes | None]] | None = None) -> int:
    """Produce (partition, key, value) records and wait for every ack. Returns the count."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    errors: list[str] = []
    n = 0

    def cb(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for part, key, value in records:
        p.produce(topic, value=value, key=key, partition=part, headers=headers, on_delivery=cb)
        n += 1
        if n % 10000 == 0:
            p.poll(0)
    left = p.flush(30)
    assert not errors and left == 0, f"produce failed: {errors[:3]} ({left} unflushed)"
    return n


Txn = tuple[int, int, bool]  # (partition, records, committed: else aborted)


def produce_transactions(bootstrap: str, topic: str, txns: Iterable[Txn],
                         value: Callable[[int], bytes], codec: str = "none"
                         ) -> set[tuple[int, int]]:
    """Write each transaction with a transactional producer, committing or aborting it in turn
    (each ends with a marker on its partition). Returns the (partition, offset) of every
    record of a committed transaction."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": codec,
                  "transactional.id": f"txn-{topic}-{time.time_ns()}"})
    p.init_transactions(30)
    kept: set[tuple[int, int]] = set()
    n = 0
    for part, count, commit in txns:
        offsets: list[tuple[int, int]] = []
        p.begin_transaction()
        for _ in range(count):
            p.produce(topic, value=value(n), partition=part,
                      on_delivery=lambda err, m, into=offsets: (
                          into.append((m.partition(), m.offset())) if err is None else None))
            n += 1
        p.flush(30)
        assert len(offsets) == count, f"{count - len(offsets)} records not acknowledged"
        if commit:
            p.commit_transaction(30)
            kept.update(offsets)
        else:
            p.abort_transaction(30)
    return kept


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (-1001 when none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str, partitions: int, *,
                stable: bool = False) -> dict[int, int]:
    """The high watermark per partition, or with `stable` the last stable offset (a
    read_committed client's end)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{time.time_ns()}",
                  "isolation.level": "read_committed" if stable else "read_uncommitted"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    """Read `expected` records from every partition of `topic` (no group commits)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out: list[Any] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    out.append(m)
        # A moment more to catch records beyond what was expected.
        for m in c.consume(500, 0.5):
            if m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def event_json(i: int, etype: str = "customer.order.paid") -> bytes:
    return (
        f'{{"id":"evcus_{i:020d}","type":"{etype}","group_id":"v-{i:018d}",'
        f'"created_at":"2024-03-11T12:06:34.423Z","data":{{"customer":{{"id":"cust_{i}"}}}}}}'
    ).encode()


class Running:
    """An Engine running on a thread (signals are the main thread's; tests stop it by call)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.engine.run()

    def stop(self, timeout: float = 30) -> int:
        self.engine.stop("test")
        return self.join(timeout)

    def join(self, timeout: float = 30) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "engine did not stop in time"
        assert self.code is not None
        return self.code
