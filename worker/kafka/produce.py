"""Produce (key, value) records to a topic: batched, with delivery checks and a final flush.

Used by `activity-worker generate --topic`. The key is the customer id, so one customer's events
land in one partition and keep their order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from worker.errors import WorkerError
from worker.kafka.clients import new_producer


class ProduceError(WorkerError):
    """Records could not be delivered (broker unreachable, topic missing, timeout...)."""


def produce_records(
    records: Iterable[tuple[bytes | None, bytes]],
    topic: str,
    bootstrap_servers: str,
    *,
    config: Mapping[str, Any] | None = None,
    flush_timeout: float = 60.0,
) -> int:
    """Produce every record and wait until each is acknowledged (acks=all, idempotent).

    Returns the number of records delivered. Raises ProduceError naming the first delivery
    error, or how many records were still unacknowledged after `flush_timeout` seconds.
    """
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "message.timeout.ms": int(flush_timeout * 1000),
    }
    conf.update(config or {})
    producer = new_producer(conf, "producer")
    delivered = 0
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        elif len(errors) < 10:
            errors.append(err)

    produce = producer.produce
    sent = 0
    for key, value in records:
        while True:
            try:
                produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: serve delivery reports, then retry
            except KafkaException as exc:
                producer.purge()
                raise ProduceError(f"cannot produce to {topic!r}: {exc}") from None
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
            if errors:
                break
    remaining = producer.flush(flush_timeout)
    if errors or remaining:
        # Drop what is left so the client's threads stop retrying once this returns.
        producer.purge()
        producer.flush(0)
    if errors:
        raise ProduceError(
            f"{len(errors)}+ records to {topic!r} failed, first: {errors[0].str()}; "
            f"check that {bootstrap_servers} is reachable and the topic exists"
        )
    if remaining:
        raise ProduceError(
            f"{remaining} of {sent} records to {topic!r} were not acknowledged within "
            f"{flush_timeout:g} s; check that the broker at {bootstrap_servers} is reachable"
        )
    return delivered
