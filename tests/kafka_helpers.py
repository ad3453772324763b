"""Small helpers for tests that talk to a real Kafka broker (the broker comes from the
`kafka_bootstrap` fixture in tests/conftest.py; `kafka_helper` binds these to it).

Every wait here is bounded by a deadline and fails with what was seen so far."""

from __future__ import annotations

import contextlib
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

Value = bytes | str | None


def unique_name(prefix: str = "test") -> str:
    """A topic/group name no other test (or earlier run on the same broker) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses now, picked below the kernel's ephemeral range
    so that client connections (which take ephemeral ports) cannot grab it before a server
    binds it."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = (random.randint(min(10000, low - 1000), low - 1) for _ in range(200))
    return free_port_in(candidates, "below the ephemeral range")


def free_port_in(ports: Iterable[int], where: str = "") -> int:
    """The first of `ports` that a server can bind on 127.0.0.1 now."""
    for port in ports:
        if can_bind(port):
            return port
    raise AssertionError(f"no free TCP port found {where}".strip())


def can_bind(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port` now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class KafkaHelper:
    """Create uniquely named topics, produce to them and consume them back, for one broker."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.created: list[str] = []

    def new_topic(
        self,
        partitions: int = 1,
        prefix: str = "test",
        config: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Create a uniquely named topic and return once its metadata shows every partition
        with a leader (so a producer or consumer started right after sees all of them)."""
        name = unique_name(prefix)
        futures = self.admin.create_topics(
            [NewTopic(name, partitions, 1, config=config or {})],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        futures[name].result(timeout=timeout)
        self.created.append(name)
        deadline = time.monotonic() + timeout
        seen = "nothing"
        while time.monotonic() < deadline:
            md = self.admin.list_topics(topic=name, timeout=5)
            topic = md.topics.get(name)
            if topic is not None and topic.error is None:
                leaders = [p.leader for p in topic.partitions.values()]
                if len(leaders) == partitions and all(leader >= 0 for leader in leaders):
                    return name
                seen = f"partitions/leaders {leaders}"
            elif topic is not None:
                seen = f"error {topic.error}"
            time.sleep(0.05)
        raise AssertionError(f"topic {name} metadata not complete after {timeout}s: {seen}")

    def produce(
        self,
        topic: str,
        values: Iterable[Value],
        key: Value = None,
        partition: int | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        timeout: float = 30.0,
    ) -> list[tuple[int, int]]:
        """Produce every value (all with the same key), flush, and check each was delivered.
        Returns the (partition, offset) of each record, in production order."""
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True}
        )
        results: dict[int, tuple[int, int]] = {}
        errors: list[str] = []

        def on_delivery(i: int) -> Callable[[KafkaError | None, Message], None]:
            def cb(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    errors.append(f"record {i}: {err}")
                else:
                    results[i] = (msg.partition() or 0, msg.offset() or 0)

            return cb

        count = 0
        for i, value in enumerate(values):
            producer.produce(
                topic,
                value=value,
                key=key,
                partition=-1 if partition is None else partition,
                headers=headers,
                on_delivery=on_delivery(i),
            )
            producer.poll(0)
            count += 1
        left = producer.flush(timeout)
        assert left == 0, f"{left} of {count} records not delivered to {topic} within {timeout}s"
        assert not errors, f"delivery to {topic} failed: {errors}"
        assert len(results) == count, f"{count - len(results)} delivery reports missing"
        return [results[i] for i in range(count)]

    def consume_all(
        self, topic: str, n: int, deadline: float = 30.0, group: str | None = None
    ) -> list[Message]:
        """Subscribe with a unique group (from the earliest offset) and return the first `n`
        records, failing if fewer arrive within `deadline` seconds."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": group or unique_name("test-group"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        got: list[Message] = []
        errors: list[str] = []
        end = time.monotonic() + deadline
        try:
            consumer.subscribe([topic])
            while len(got) < n and time.monotonic() < end:
                msg = consumer.poll(min(0.5, max(0.01, end - time.monotonic())))
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise AssertionError(f"consumer of {topic} failed: {err}")
                    errors.append(str(err))
                    continue
                got.append(msg)
        finally:
            consumer.close()
        assert len(got) >= n, (
            f"consumed {len(got)} of {n} records from {topic} within {deadline}s "
            f"(errors: {errors[-3:]})"
        )
        return got

    def delete_created(self, timeout: float = 10.0) -> None:
        """Best-effort removal of the topics this helper made (keeps a shared broker tidy)."""
        if not self.created:
            return
        futures = self.admin.delete_topics(self.created, operation_timeout=timeout)
        for fut in futures.values():
            with contextlib.suppress(Exception):  # already gone, or deletion still running
                fut.result(timeout=timeout)
        self.created.clear()
