"""What the tests of emitted records share: a processor module that emits one record per event
to the topic named by $EMIT_OUTPUT_TOPIC (keyed by the Kafka message key, the customer), a
read_committed consumer of the output, and the checks (one record per event id, per-key
order)."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from confluent_kafka import Consumer, TopicPartition

from devtools.generate import Record
from tests.kafka_helpers import unique_name

EMIT_MODULE = '''
import json
import os

from worker.processors import processor

OUT = os.environ["EMIT_OUTPUT_TOPIC"]


@processor("**", name="emit_one")
def emit_one(event, ctx):
    ctx.emit(OUT, json.dumps({"id": event.id, "offset": ctx.offset}).encode(),
             key=ctx.message_key)
'''


def read_output(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0,
                isolation: str = "read_committed") -> list[tuple[bytes | None, str]]:
    """Every record of `topic` (key, event id) up to the end of each partition, per partition
    in offset order (partitions one after another)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("out"),
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True})
    out: list[tuple[bytes | None, str]] = []
    try:
        for p in range(partitions):
            tp = TopicPartition(topic, p, 0)
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            consumer.assign([tp])
            deadline = time.monotonic() + timeout
            while high > 0:
                msg = consumer.poll(0.5)
                assert time.monotonic() < deadline, f"{topic}[{p}] not read to {high}"
                if msg is None:
                    continue
                if msg.error() is not None:
                    if msg.error().code() == -191:  # _PARTITION_EOF
                        break
                    raise AssertionError(str(msg.error()))
                out.append((msg.key(), json.loads(msg.value())["id"]))
            consumer.unassign()
    finally:
        consumer.close()
    return out


def expected_order(records: Sequence[Record]) -> dict[bytes, list[str]]:
    """Per key, the event ids in the order they were first produced (duplicates dropped)."""
    seen: set[str] = set()
    order: dict[bytes, list[str]] = defaultdict(list)
    for r in records:
        if r.kind not in ("ok", "duplicate"):
            continue
        eid = json.loads(r.value)["id"]
        if eid not in seen:
            seen.add(eid)
            order[r.key].append(eid)
    return order


def check_once_in_order(got: list[tuple[bytes | None, str]], records: Sequence[Record]) -> None:
    """One output record per event id, none missing, keyed like its event, in per-key order."""
    expected = expected_order(records)
    counts = Counter(eid for _, eid in got)
    repeated = {k: n for k, n in counts.items() if n != 1}
    assert repeated == {}, f"{len(repeated)} event ids emitted more than once"
    all_ids = {e for ids in expected.values() for e in ids}
    assert set(counts) == all_ids, (f"missing {len(all_ids - set(counts))}, "
                                    f"unexpected {len(set(counts) - all_ids)}")
    per_key: dict[bytes | None, list[str]] = defaultdict(list)
    for key, eid in got:
        per_key[key].append(eid)
    assert {k: v for k, v in per_key.items()} == dict(expected)
