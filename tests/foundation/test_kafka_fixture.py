"""The session broker fixture and the test helpers work against a real broker."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.kafka_helpers import KafkaHelper

pytestmark = pytest.mark.kafka


def test_produce_consume_round_trip(kafka_helper: KafkaHelper) -> None:
    topic = kafka_helper.new_topic(partitions=3)
    values = [f"event-{i}".encode() for i in range(30)]
    placed = kafka_helper.produce(topic, values[:15], key=b"customer-1")
    placed += kafka_helper.produce(topic, values[15:])

    got = kafka_helper.consume_all(topic, len(values), deadline=30)

    assert sorted(m.value() or b"" for m in got) == sorted(values)
    # One key -> one partition, read back in produced order.
    keyed = [m for m in got if m.key() == b"customer-1"]
    assert [m.value() for m in keyed] == values[:15]
    assert len({m.partition() for m in keyed}) == 1
    # Offsets reported at delivery are the ones consumed.
    by_partition: dict[int, set[int]] = defaultdict(set)
    for partition, offset in placed:
        by_partition[partition].add(offset)
    consumed: dict[int, set[int]] = defaultdict(set)
    for m in got:
        consumed[m.partition() or 0].add(m.offset() or 0)
    assert consumed == by_partition


def test_new_topic_is_unique_and_has_its_partitions(kafka_helper: KafkaHelper) -> None:
    a = kafka_helper.new_topic(partitions=4)
    b = kafka_helper.new_topic(partitions=1)
    assert a != b
    md = kafka_helper.admin.list_topics(timeout=10)
    assert len(md.topics[a].partitions) == 4
    assert len(md.topics[b].partitions) == 1


def test_consume_all_fails_clearly_when_records_are_missing(kafka_helper: KafkaHelper) -> None:
    topic = kafka_helper.new_topic()
    kafka_helper.produce(topic, [b"only-one"])
    with pytest.raises(AssertionError, match="consumed 1 of 2 records"):
        kafka_helper.consume_all(topic, 2, deadline=3)
