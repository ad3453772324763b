"""What the tests of emitted records share: a processor module that emits one record per event
to the topic named by $EMIT_OUTPUT_TOPIC (keyed by the Kafka message key, the customer; after
$EMIT_PAUSE_S seconds of work, if set), a
read_committed consumer of the output, and the checks (one record per event id, per-key
order)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from devtools.generate import Record
from tests.kafka_helpers import unique_name

EMIT_MODULE = '''
import json
import os
import time

from worker.processors import processor

OUT = os.environ["EMIT_OUTPUT_TOPIC"]
PAUSE = float(os.environ.get("EMIT_PAUSE_S", "0"))


@processor("**", name="emit_one")
def emit_one(event, ctx):
    if PAUSE:
        time.sleep(PAUSE)
    ctx.emit(OUT, json.dumps({"id": event.id, "offset": ctx.offset}).encode(),
             key=ctx.message_key)
'''


REPO = Path(__file__).resolve().parents[1]


def emit_env(workdir: Path, out: str, pause: float = 0.0) -> dict[str, str]:
    """Write the emitting processor module (`emit_one`) into `workdir`; the environment of a
    worker process that loads it (no built-ins), emitting to `out` after `pause` s a call."""
    (workdir / "emit_one.py").write_text(EMIT_MODULE)
    return dict(os.environ, PYTHONPATH=f"{workdir}{os.pathsep}{REPO}",
                WORKER_BUILTIN_PROCESSORS="false", EMIT_OUTPUT_TOPIC=out,
                EMIT_PAUSE_S=str(pause))


def read_output(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0,
                isolation: str = "read_committed") -> list[tuple[bytes | None, str]]:
    """Every record of `topic` (key, event id) up to the high watermark of each partition, per
    partition in offset order (partitions one after another). Under read_committed the read
    ends only once the position passed the high watermark: every transaction written there
    is decided (a commit's markers land a moment after commit_transaction returns)."""
    out: list[tuple[bytes | None, str]] = []
    for p in range(partitions):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("out"),
                             "isolation.level": isolation, "enable.auto.commit": False})
        try:
            tp = TopicPartition(topic, p, 0)
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            consumer.assign([tp])
            deadline = time.monotonic() + timeout
            while consumer.position([TopicPartition(topic, p)])[0].offset < high:
                assert time.monotonic() < deadline, f"{topic}[{p}] not read to {high}"
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error() is not None:
                    raise AssertionError(str(msg.error()))
                out.append((msg.key(), json.loads(msg.value())["id"]))
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
    wrong = [k for k in expected if per_key.get(k) != expected[k]]
    assert not wrong, (f"{len(wrong)} keys out of order, e.g. {wrong[0]!r}: emitted "
                       f"{per_key.get(wrong[0])}, read {expected[wrong[0]]}")
