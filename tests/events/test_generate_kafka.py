"""`generate --topic` against a real broker: every record arrives, keyed by customer id, one
customer's events in one partition and in order.

Needs KAFKA_BOOTSTRAP_SERVERS (e.g. 127.0.0.1:9092); skipped without it. (To be switched to the
shared broker fixture of tests/conftest.py.)
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.generate import EventGenerator
from worker.kafka.produce import ProduceError, produce_records

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def bootstrap(kafka_bootstrap: str) -> str:
    return kafka_bootstrap


@pytest.fixture
def topic(bootstrap: str) -> Iterator[str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = f"test-generate-{uuid.uuid4().hex[:12]}"
    futures = admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    futures[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of every record, in partition order; waits up to 60 s."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-generate-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[int, bytes, bytes]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    raise AssertionError(msg.error())
                out.append((msg.partition(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


def test_generate_to_topic_delivers_every_record_keyed_by_customer(
    bootstrap: str, topic: str
) -> None:
    count, seed = 1500, 21
    result = subprocess.run(
        [sys.executable, "-m", "worker", "generate", "-n", str(count), "--seed", str(seed),
         "--duplicate-share", "0.05", "--topic", topic, "--bootstrap-servers", bootstrap],
        cwd=ROOT, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"to topic '{topic}'".encode() in result.stderr

    expected = list(EventGenerator(seed, 0.05, 0.0).records(count))
    got = _consume_all(bootstrap, topic, count)
    assert len(got) == count
    assert sorted((k, v) for _, k, v in got) == sorted((r.key, r.value) for r in expected)

    partition_of: dict[bytes, int] = {}
    per_key_order: dict[bytes, list[bytes]] = {}
    for partition, key, value in got:
        assert partition_of.setdefault(key, partition) == partition  # one partition per customer
        per_key_order.setdefault(key, []).append(value)
    for key, values in per_key_order.items():
        assert values == [r.value for r in expected if r.key == key]  # and in order
    assert len(set(partition_of.values())) > 1  # customers spread over the partitions


def test_produce_to_unreachable_broker_fails_with_a_clear_error() -> None:
    with pytest.raises(ProduceError) as info:
        produce_records([(b"k", b"v")], "nowhere", "127.0.0.1:1", flush_timeout=2.0)
    assert "127.0.0.1:1" in str(info.value)
